"""Checks, in real PyTorch, that archives Ember wrote load with torch.export.load and
compute what the originals compute.

usage: python3 tests/torch/check_torch_load.py ORIGINALS_DIR WRITTEN_DIR
For every NAME.pt2 in WRITTEN_DIR: torch.export.load it and the original ORIGINALS_DIR/NAME.pt2,
compare the IR (graph code, signature, state dict bytes, constants, range constraints), run
both on every case of ORIGINALS_DIR/NAME.io.safetensors (case{K}.in.{I}) and compare outputs
with each other (exactly) and with the stored PyTorch reference (case{K}.out.{J},
rtol=atol=1e-4). Prints one line per archive and exits non-zero if any check failed.
"""
import glob
import os
import sys

import torch
from safetensors.torch import load_file
from torch.utils._pytree import tree_flatten


def cases(io_path):
    t = load_file(io_path)
    out = {}
    for key, v in t.items():
        c, kind, idx = key.split(".")
        out.setdefault(int(c[4:]), {"in": {}, "out": {}})[kind][int(idx)] = v
    return [([d["in"][i] for i in sorted(d["in"])], [d["out"][j] for j in sorted(d["out"])]) for _, d in sorted(out.items())]


def call(ep, inputs):
    mod = ep.module()
    spec = ep.call_spec.in_spec
    # in_spec is ((args...), {kwargs}): rebuild kwargs from the flat inputs.
    args_spec, kwargs_spec = spec.children_specs
    n_args = args_spec.num_leaves
    kw_names = kwargs_spec.context or []
    args = inputs[:n_args]
    kwargs = dict(zip(kw_names, inputs[n_args:]))
    with torch.no_grad():
        return mod(*args, **kwargs)


def define_engine_op():
    """Archives holding ember::execute_engine nodes need the op to exist to deserialize."""
    if hasattr(torch.ops, "ember") and hasattr(torch.ops.ember, "execute_engine"):
        return

    @torch.library.custom_op("ember::execute_engine", mutates_args=())
    def execute_engine(inputs: list[torch.Tensor], engine: torch.Tensor) -> list[torch.Tensor]:
        raise RuntimeError("Ember engines run in Ember, not in PyTorch")

    @execute_engine.register_fake
    def _(inputs, engine):
        return [torch.empty_like(inputs[0])]


def register_test_types():
    """The project's test archives use a namedtuple output; PyTorch needs the type registered to load them."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import make_test_archives  # noqa: F401  (registers ember_test.Pair)


def main():
    define_engine_op()
    register_test_types()
    originals, written = sys.argv[1], sys.argv[2]
    failures = 0
    for path in sorted(glob.glob(os.path.join(written, "*.pt2"))):
        name = os.path.basename(path)[:-4]
        try:
            ep_new = torch.export.load(path)
            original = os.path.join(originals, name + ".pt2")
            ep_old = torch.export.load(original) if os.path.exists(original) else None
            io = os.path.join(originals, name + ".io.safetensors")
            if ep_old is None:
                # Only the written copy travelled (size limits): check it against the reference outputs.
                worst = 0.0
                for k, (inputs, refs) in enumerate(cases(io)):
                    got = [g for g in tree_flatten(call(ep_new, inputs))[0] if g is not None]
                    assert len(got) == len(refs), f"case {k}: {len(got)} outputs, expected {len(refs)}"
                    for g, r in zip(got, refs):
                        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
                        worst = max(worst, (g.double() - r.double()).abs().max().item() if g.numel() else 0.0)
                print(f"PASS {name}: torch.export.load ok, outputs match the reference (max abs err {worst:.2e})")
                continue
            assert str(ep_new.graph) == str(ep_old.graph), "graphs differ"
            assert str(ep_new.graph_signature) == str(ep_old.graph_signature), "signatures differ"
            assert ep_new.range_constraints.keys() == ep_old.range_constraints.keys(), "range constraints differ"
            sd_new, sd_old = ep_new.state_dict, ep_old.state_dict
            assert sd_new.keys() == sd_old.keys(), "state_dict keys differ"
            for k in sd_old:
                assert torch.equal(sd_new[k], sd_old[k]), f"state_dict[{k}] differs"
                assert sd_new[k].stride() == sd_old[k].stride(), f"state_dict[{k}] strides differ"
            for k in ep_old.constants:
                a, b = ep_new.constants[k], ep_old.constants[k]
                if isinstance(b, torch.Tensor):
                    assert torch.equal(a, b), f"constant {k} differs"
            if not os.path.exists(io):
                print(f"PASS {name}: torch.export.load ok, IR and weights equal (no reference cases)")
                continue
            worst = 0.0
            for k, (inputs, refs) in enumerate(cases(io)):
                got, _ = tree_flatten(call(ep_new, inputs))
                want, _ = tree_flatten(call(ep_old, inputs))
                got = [g for g in got if g is not None]
                want = [w for w in want if w is not None]
                assert len(got) == len(want) == len(refs), f"case {k}: output counts {len(got)}/{len(want)}/{len(refs)}"
                for g, w, r in zip(got, want, refs):
                    assert torch.equal(g, w), f"case {k}: output differs from the original archive's"
                    torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
                    worst = max(worst, (g.double() - r.double()).abs().max().item() if g.numel() else 0.0)
            print(f"PASS {name}: torch.export.load ok, IR and weights equal, outputs equal (max abs err vs reference {worst:.2e})")
        except Exception as e:  # report every archive, then fail
            failures += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"torch {torch.__version__}: {failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
