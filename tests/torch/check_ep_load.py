#!/usr/bin/env python3
"""Checks that PyTorch loads the .ep files Ember writes.

usage: python3 check_ep_load.py FOLDER_OR_FILE... [--original-dir DIR]

For every .ep found: registers the op ember::execute_engine(Tensor[] inputs, Tensor engine)
-> Tensor[] with torch.library (a fake implementation that returns tensors of the shapes the
.ep records for the node's outputs, and a CPU implementation that raises: PyTorch cannot run
Ember engines), torch.export.load()s the file, prints the graph's node targets, and checks
  - every execute_engine node's engine operand is a lifted uint8 1-D tensor constant,
  - no parameter/buffer absorbed into an engine is in the state_dict (with --original-dir,
    the .pt2 of the same name is loaded too and the weights that vanished are reported as
    absorbed; weights still read by graph nodes must be present),
  - the in/out pytree specs equal the original program's (with --original-dir),
  - example_inputs (Ember writes them as zeros of the original shapes unless
    `ember compile --keep-sample-inputs`) unpickle, and their tree, shapes and dtypes equal the
    original program's (with --original-dir).
Exits non-zero when any check fails. Needs PyTorch 2.11 (torch.export.load of schema 8.x).
"""
import argparse
import json
import os
import sys
import zipfile

import torch

# Output shapes of each execute_engine node, read from the archive's own JSON before
# loading (the fake implementation looks them up by the engine constant's size, which is
# unique per engine in practice, plus the input shapes as a tie-break).
_ENGINE_OUTPUTS = {}


def _dtype_of(code):
    table = {1: torch.uint8, 2: torch.int8, 3: torch.int16, 4: torch.int32, 5: torch.int64, 6: torch.float16,
             7: torch.float32, 8: torch.float64, 12: torch.bool, 13: torch.bfloat16}
    return table[code]


def _record_engine_outputs(path):
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if not (name.endswith(".json") and "/models/" in name):
                continue
            model = json.loads(z.read(name))
            graph = model["graph_module"]["graph"]
            tv = graph["tensor_values"]
            for node in graph["nodes"]:
                if node["target"] != "torch.ops.ember.execute_engine.default":
                    continue
                engine = None
                for inp in node["inputs"]:
                    if inp["name"] == "engine":
                        engine = inp["arg"]["as_tensor"]["name"]
                nbytes = tv[engine]["sizes"][0]["as_int"]
                outs = []
                for o in node["outputs"][0]["as_tensors"]:
                    meta = tv[o["name"]]
                    outs.append(([s.get("as_int") for s in meta["sizes"]], _dtype_of(meta["dtype"])))
                _ENGINE_OUTPUTS[nbytes] = outs


def _register_op():
    lib = torch.library.Library("ember", "FRAGMENT")
    lib.define("execute_engine(Tensor[] inputs, Tensor engine) -> Tensor[]")

    def cpu_impl(inputs, engine):
        raise RuntimeError("ember::execute_engine: Ember engines run in Ember's runtime, not in PyTorch")

    def fake_impl(inputs, engine):
        outs = _ENGINE_OUTPUTS.get(int(engine.shape[0]))
        if outs is None:
            raise RuntimeError(f"no recorded outputs for an engine of {engine.shape[0]} bytes")
        result = []
        for sizes, dtype in outs:
            # Symbolic dims (None here) follow the first input's leading dim (batch).
            shape = [s if s is not None else inputs[0].shape[0] for s in sizes]
            result.append(torch.empty(shape, dtype=dtype, device=inputs[0].device if inputs else "cpu"))
        return result

    lib.impl("execute_engine", cpu_impl, "CPU")
    torch.library.register_fake("ember::execute_engine", fake_impl, lib=lib)
    return lib


def _describe_inputs(example_inputs):
    """The tree of example inputs with every tensor replaced by (shape, dtype), as text."""
    leaves, spec = torch.utils._pytree.tree_flatten(example_inputs)
    described = [(tuple(x.shape), str(x.dtype)) if isinstance(x, torch.Tensor) else x for x in leaves]
    return f"{spec}: {described}"


def check(path, original_dir):
    problems = []
    _record_engine_outputs(path)
    ep = torch.export.load(path)
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    print(f"{path}: {len(targets)} call_function nodes")
    for n in ep.graph.nodes:
        if n.op == "call_function":
            print(f"  {n.name}: {n.target}")
    print(f"  example inputs: {_describe_inputs(ep.example_inputs)}")
    engine_nodes = [n for n in ep.graph.nodes if n.op == "call_function" and "execute_engine" in str(n.target)]
    if not engine_nodes:
        problems.append("no execute_engine node")
    sig = ep.graph_signature
    lifted = {spec.arg.name: spec for spec in sig.input_specs}
    for n in engine_nodes:
        engine_arg = n.args[1] if len(n.args) > 1 else n.kwargs.get("engine")
        spec = lifted.get(engine_arg.name)
        if spec is None or spec.kind.name not in ("CONSTANT_TENSOR", "BUFFER"):
            problems.append(f"{n.name}: engine operand {engine_arg.name} is not a lifted constant")
            continue
        t = ep.constants.get(spec.target)
        if t is None:
            t = ep.state_dict.get(spec.target)
        if t is None or t.dtype != torch.uint8 or t.dim() != 1:
            problems.append(f"{n.name}: engine constant {spec.target} is not a 1-D uint8 tensor")
        else:
            print(f"  engine {spec.target}: {t.numel()} bytes, magic {bytes(t[:8].tolist())!r}")
    # Weights: every parameter/buffer named by the signature is present; with the original,
    # the ones that vanished must be read by no node (absorbed into engines).
    for spec in sig.input_specs:
        if spec.kind.name in ("PARAMETER", "BUFFER") and spec.persistent is not False:
            if spec.target not in ep.state_dict:
                problems.append(f"weight {spec.target} is in the signature but not in state_dict")
    if original_dir:
        stem = os.path.splitext(os.path.basename(path))[0]
        orig_path = os.path.join(original_dir, stem + ".pt2")
        if os.path.exists(orig_path):
            orig = torch.export.load(orig_path)
            absorbed = set(orig.state_dict) - set(ep.state_dict)
            print(f"  absorbed into engines: {len(absorbed)} of {len(orig.state_dict)} weights")
            kept_inputs = {s.target for s in sig.input_specs if s.target}
            for name in absorbed:
                if name in kept_inputs:
                    problems.append(f"absorbed weight {name} is still an input of the graph")
            if orig.call_spec.in_spec != ep.call_spec.in_spec or orig.call_spec.out_spec != ep.call_spec.out_spec:
                problems.append("pytree specs differ from the original program")
            if _describe_inputs(orig.example_inputs) != _describe_inputs(ep.example_inputs):
                problems.append(f"example inputs differ in structure, shape or dtype: "
                                f"{_describe_inputs(ep.example_inputs)} vs {_describe_inputs(orig.example_inputs)}")
    for p in problems:
        print(f"  FAIL: {p}")
    return not problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--original-dir", default=None, help="folder with the .pt2 each .ep was compiled from")
    args = parser.parse_args()
    _lib = _register_op()  # noqa: F841 (kept alive for the process)
    # The project's test archives use a namedtuple output type that must be registered to load.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_test_archives  # noqa: F401
    files = []
    for p in args.paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".ep"))
        else:
            files.append(p)
    if not files:
        print("no .ep files found")
        return 1
    ok = True
    for f in files:
        try:
            ok = check(f, args.original_dir) and ok
        except Exception as e:  # report and go on with the next file
            print(f"{f}: FAIL: {type(e).__name__}: {e}")
            ok = False
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
