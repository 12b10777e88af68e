#!/usr/bin/env python3
"""Ember's CPU engines side by side with ONNX Runtime (CPU), in one run on one machine.

usage: python3 bench/peers.py [--model resnet18] [--rounds 3] [--iterations 100] [--threads 2]

For the fixture MODEL (../shared/fixtures/MODEL.pt2 and MODEL.onnx, same weights):
  1. `ember compile` it to an .ep (tactic timing on) and records compile time and .ep size,
  2. alternates, --rounds times: `ember run MODEL.ep` (steady-state latency, load time) and
     ONNX Runtime through ../shared/peers/ort_bench.js (2 intra-op threads), so both see the
     same machine state,
  3. prints a table and the ratios the project tracks: latency Ember / ORT (lower is better),
     compile time / load time, .ep size / weight bytes.
ONNX Runtime's npm package is installed into build/peers/ on first use (npm, no scripts run).
Needs build/release/tools/ember (cmake --preset release && cmake --build --preset release).
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


def ember_run(model, iterations, threads):
    out = subprocess.run([EMBER, "run", model, "--iterations", str(iterations), "--warmup", "10", "--threads",
                          str(threads), "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def weight_bytes(pt2):
    with zipfile.ZipFile(pt2) as z:
        return sum(i.file_size for i in z.infolist() if "/data/weights/" in i.filename and not i.filename.endswith(".json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--shape", default="1x3x224x224")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    pt2 = os.path.join(SHARED, "fixtures", args.model + ".pt2")
    onnx = os.path.join(SHARED, "fixtures", args.model + ".onnx")
    ep = os.path.join(PEERS, args.model + ".ep")
    ensure_ort()

    t0 = time.perf_counter()
    subprocess.run([EMBER, "compile", pt2, "-o", ep, "--threads", str(args.threads), "-q"], check=True,
                   stdout=subprocess.DEVNULL)
    compile_s = time.perf_counter() - t0

    ember_med, ort_med, loads, ort_create = [], [], [], []
    for r in range(args.rounds):
        e = ember_run(ep, args.iterations, args.threads)
        o = ort(onnx, args.shape, args.iterations)
        ember_med.append(e["latency_ms"]["median"])
        loads.append(e["load_ms"])
        ort_med.append(o["median_ms"])
        ort_create.append(o["session_create_ms"])
        print(f"round {r + 1}: ember median {e['latency_ms']['median']:.2f} ms (p90 {e['latency_ms']['p90']:.2f}), "
              f"load {e['load_ms']:.1f} ms | onnxruntime median {o['median_ms']:.2f} ms (p90 {o['p90_ms']:.2f}), "
              f"session create {o['session_create_ms']:.0f} ms", flush=True)

    em, om, load = statistics.median(ember_med), statistics.median(ort_med), statistics.median(loads)
    ep_bytes, w_bytes = os.path.getsize(ep), weight_bytes(pt2)
    report = {
        "model": args.model, "threads": args.threads, "rounds": args.rounds, "iterations": args.iterations,
        "ember_median_ms": em, "ort_median_ms": om, "latency_ratio_ember_over_ort": em / om,
        "compile_s": compile_s, "load_ms": load, "compile_over_load": compile_s * 1000 / load,
        "ort_session_create_ms": statistics.median(ort_create),
        "ep_bytes": ep_bytes, "weight_bytes": w_bytes, "ep_over_weights": ep_bytes / w_bytes,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
