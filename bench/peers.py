#!/usr/bin/env python3
"""Ember's CPU engines side by side with ONNX Runtime (CPU) and, optionally, PyTorch eager,
in one run on one machine.

usage: python3 bench/peers.py [--model resnet18] [--rounds 3] [--iterations 100] [--threads 2]
                              [--max-weight-growth F] [--also-growth F]
                              [--torch] [--torch-python PYTHON]

For the fixture MODEL (../shared/fixtures/MODEL.pt2 and MODEL.onnx, same weights):
  1. `ember compile` it to an .ep (tactic timing on) and records compile time and .ep size,
  2. alternates, --rounds times: `ember run MODEL.ep` (steady-state latency, load time; on the
     fixture's case-0 input, checked against PyTorch's reference output), ONNX Runtime through
     ../shared/peers/ort_bench.js (2 intra-op threads) and, with --torch, PyTorch eager, so all
     see the same machine state,
  3. prints a table and the ratios the project tracks: latency Ember / ORT and Ember / PyTorch
     (lower is better), compile time / load time, .ep size / weight bytes.
ONNX Runtime's npm package is installed into build/peers/ on first use (npm, no scripts run).
Needs build/release/tools/ember (cmake --preset release && cmake --build --preset release).

PyTorch eager (--torch, resnet18 only): the peer is Debian's PyTorch 1.13 CPU build, installed
by hand (never by CI): `sudo apt-get install -y python3-torch python3-numpy`. It has no
torch.export and no torchvision, so ResNet-18 is built here from torch.nn modules with
torchvision's module names, and its weights are read straight from the .pt2 (data/weights/ +
the weights config: names, dtypes, shapes, strides). Each round runs in a fresh interpreter
(--torch-python, default: this one if it can import torch, else /usr/bin/python3) with
torch.set_num_threads(THREADS) under torch.inference_mode(); before timing, its output on the
fixture's case-0 input must match PyTorch 2.11's reference output (rtol = atol = 1e-4), and
the timed input is that same tensor.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
EMBER = os.environ.get("EMBER_BIN", os.path.join(ROOT, "build", "release", "tools", "ember"))
PEERS = os.path.join(ROOT, "build", "peers")


def ensure_ort():
    if not os.path.isdir(os.path.join(PEERS, "node_modules", "onnxruntime-node")):
        os.makedirs(PEERS, exist_ok=True)
        subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund", "onnxruntime-node@1.30.0"],
                       cwd=PEERS, check=True, stdout=subprocess.DEVNULL)


def ort(onnx, shape, iterations):
    env = dict(os.environ, NODE_PATH=os.path.join(PEERS, "node_modules"))
    out = subprocess.run(["node", os.path.join(SHARED, "peers", "ort_bench.js"), onnx, shape, str(iterations)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ember_run(model, iterations, threads, io=None):
    cmd = [EMBER, "run", model, "--iterations", str(iterations), "--warmup", "10", "--threads", str(threads), "--json"]
    if io:  # time on the reference input, after checking the outputs against PyTorch's
        cmd += ["--compare", io]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    if io and not out.get("passed"):
        sys.exit(f"ember run {model}: outputs differ from {io}")
    return out


def find_torch_python(requested):
    candidates = [requested] if requested else [sys.executable, "/usr/bin/python3"]
    for py in candidates:
        if py and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    sys.exit("--torch: no Python with PyTorch found (install: sudo apt-get install -y python3-torch python3-numpy, "
             "or pass --torch-python)")


def torch_eager(python, pt2, io, iterations, threads):
    out = subprocess.run([python, os.path.abspath(__file__), "--torch-worker", pt2, io, str(iterations), str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# ---- PyTorch eager worker (runs in its own interpreter; imports torch only here)

def _read_pt2_state_dict(torch, pt2):
    """{fqn: tensor} of the parameters and buffers of the single model in a .pt2."""
    dtypes = {1: torch.uint8, 2: torch.int8, 4: torch.int32, 5: torch.int64, 6: torch.float16, 7: torch.float32,
              8: torch.float64, 12: torch.bool, 13: torch.bfloat16}
    state = {}
    with zipfile.ZipFile(pt2) as z:
        root = z.namelist()[0].split("/")[0]
        config = json.loads(z.read(f"{root}/data/weights/model_weights_config.json"))["config"]
        blobs = {}
        for fqn, entry in config.items():
            meta = entry["tensor_meta"]
            path = entry["path_name"]
            if path not in blobs:
                blobs[path] = bytearray(z.read(f"{root}/data/weights/{path}"))
            flat = torch.frombuffer(blobs[path], dtype=dtypes[meta["dtype"]])
            state[fqn] = flat.as_strided([d["as_int"] for d in meta["sizes"]], [d["as_int"] for d in meta["strides"]],
                                         meta["storage_offset"]["as_int"])
    return state


def _read_case0(torch, io):
    """(input, expected output) of case 0 of a reference .io.safetensors file."""
    with open(io, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]

    def tensor(key):
        h = header[key]
        assert h["dtype"] == "F32", h
        b, e = h["data_offsets"]
        return torch.frombuffer(bytearray(body[b:e]), dtype=torch.float32).reshape(h["shape"])

    return tensor("case0.in.0"), tensor("case0.out.0")


def _resnet18(torch):
    """torchvision's ResNet-18 architecture (same module names), from torch.nn only."""
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            out += identity
            return self.relu(out)

    class ResNet18(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
            self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
            self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
            self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18()


def torch_worker(pt2, io, iterations, threads):
    t0 = time.perf_counter()
    import torch
    torch.set_num_threads(threads)
    model = _resnet18(torch)
    model.load_state_dict(_read_pt2_state_dict(torch, pt2), strict=True)
    model.eval()
    build_ms = (time.perf_counter() - t0) * 1000
    x, expected = _read_case0(torch, io)
    with torch.inference_mode():
        got = model(x)
        err = (got - expected).abs().max().item()
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4):
            sys.exit(f"PyTorch eager output differs from the reference output: max abs err {err}")
        for _ in range(10):
            model(x)
        times = []
        for _ in range(iterations):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(json.dumps({"torch_version": torch.__version__, "threads": torch.get_num_threads(), "build_ms": build_ms,
                      "max_abs_err": err, "median_ms": statistics.median(times),
                      "p90_ms": times[int(len(times) * 0.9)], "min_ms": times[0]}))
    return 0


def weight_bytes(pt2):
    with zipfile.ZipFile(pt2) as z:
        return sum(i.file_size for i in z.infolist() if "/data/weights/" in i.filename and not i.filename.endswith(".json"))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-worker":
        pt2, io, iterations, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        return torch_worker(pt2, io, iterations, threads)
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--shape", default="1x3x224x224")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-weight-growth", type=float, default=None,
                    help="ember compile --max-weight-growth for the .ep (default: the compiler's)")
    ap.add_argument("--also-growth", type=float, default=None,
                    help="also compile an .ep with this --max-weight-growth and run it in every round")
    ap.add_argument("--torch", action="store_true", help="add PyTorch eager (Debian python3-torch) as a peer")
    ap.add_argument("--torch-python", default=None, help="Python interpreter that has PyTorch")
    args = ap.parse_args()
    pt2 = os.path.join(SHARED, "fixtures", args.model + ".pt2")
    onnx = os.path.join(SHARED, "fixtures", args.model + ".onnx")
    io = os.path.join(SHARED, "fixtures", args.model + ".io.safetensors")
    io = io if os.path.exists(io) else None
    ep = os.path.join(PEERS, args.model + ".ep")
    ensure_ort()
    torch_python = None
    if args.torch:
        if args.model != "resnet18" or io is None:
            sys.exit("--torch: the PyTorch eager peer builds resnet18 only (and needs its .io.safetensors)")
        torch_python = find_torch_python(args.torch_python)

    def compile_ep(path, growth):
        cmd = [EMBER, "compile", pt2, "-o", path, "--threads", str(args.threads), "-q"]
        if growth is not None:
            cmd += ["--max-weight-growth", str(growth)]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    compile_s = compile_ep(ep, args.max_weight_growth)
    alt_ep = None
    if args.also_growth is not None:
        alt_ep = os.path.join(PEERS, f"{args.model}.growth{args.also_growth:g}.ep")
        alt_compile_s = compile_ep(alt_ep, args.also_growth)
    alt_med, alt_loads = [], []

    ember_med, ort_med, torch_med, loads, ort_create, torch_build = [], [], [], [], [], []
    torch_info = {}
    for r in range(args.rounds):
        e = ember_run(ep, args.iterations, args.threads, io)
        o = ort(onnx, args.shape, args.iterations)
        ember_med.append(e["latency_ms"]["median"])
        loads.append(e["load_ms"])
        ort_med.append(o["median_ms"])
        ort_create.append(o["session_create_ms"])
        line = (f"round {r + 1}: ember median {e['latency_ms']['median']:.2f} ms (p90 {e['latency_ms']['p90']:.2f}), "
                f"load {e['load_ms']:.1f} ms | onnxruntime median {o['median_ms']:.2f} ms (p90 {o['p90_ms']:.2f}), "
                f"session create {o['session_create_ms']:.0f} ms")
        if torch_python:
            t = torch_eager(torch_python, pt2, io, args.iterations, args.threads)
            torch_med.append(t["median_ms"])
            torch_build.append(t["build_ms"])
            torch_info = {"torch_version": t["torch_version"], "torch_threads": t["threads"],
                          "torch_max_abs_err": t["max_abs_err"]}
            line += (f" | pytorch {t['torch_version']} eager median {t['median_ms']:.2f} ms (p90 {t['p90_ms']:.2f}), "
                     f"build + weights {t['build_ms']:.0f} ms")
        if alt_ep:
            a = ember_run(alt_ep, args.iterations, args.threads, io)
            alt_med.append(a["latency_ms"]["median"])
            alt_loads.append(a["load_ms"])
            line += (f" | ember (growth {args.also_growth:g}) median {a['latency_ms']['median']:.2f} ms "
                     f"(p90 {a['latency_ms']['p90']:.2f}), load {a['load_ms']:.1f} ms")
        print(line, flush=True)

    em, om, load = statistics.median(ember_med), statistics.median(ort_med), statistics.median(loads)
    ep_bytes, w_bytes = os.path.getsize(ep), weight_bytes(pt2)
    report = {
        "model": args.model, "threads": args.threads, "rounds": args.rounds, "iterations": args.iterations,
        "ember_median_ms": em, "ort_median_ms": om, "latency_ratio_ember_over_ort": em / om,
        "compile_s": compile_s, "load_ms": load, "compile_over_load": compile_s * 1000 / load,
        "ort_session_create_ms": statistics.median(ort_create),
        "ep_bytes": ep_bytes, "weight_bytes": w_bytes, "ep_over_weights": ep_bytes / w_bytes,
    }
    if alt_ep:
        am, al = statistics.median(alt_med), statistics.median(alt_loads)
        report["also"] = {"max_weight_growth": args.also_growth, "ember_median_ms": am,
                          "latency_ratio_ember_over_ort": am / om, "compile_s": alt_compile_s, "load_ms": al,
                          "compile_over_load": alt_compile_s * 1000 / al, "ep_bytes": os.path.getsize(alt_ep),
                          "ep_over_weights": os.path.getsize(alt_ep) / w_bytes}
    if torch_python:
        tm = statistics.median(torch_med)
        report.update({"torch_median_ms": tm, "latency_ratio_ember_over_torch": em / tm,
                       "torch_build_ms": statistics.median(torch_build), **torch_info})
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
