#!/usr/bin/env python3
"""Packaged model (.so) against the .ep it was made from: time to first result and steady
latency, side by side in one run.

usage: python3 bench/package.py [--model resnet18] [--rounds 5] [--iterations 50] [--threads 2]
                                [--build build/release] [--json OUT]

  1. `ember compile` the fixture MODEL.pt2 to an .ep, then `ember package` it to a .so
     (compile and package times and file sizes are reported),
  2. alternates, --rounds times, two fresh processes of build/.../bench/startup: one
     dlopen()s MODEL.so and creates the model with its ember_package_create(); the other
     dlopen()s libember_runtime.so and ember_model_create()s MODEL.ep. Each measures the time
     from before dlopen to the first result, then the median of --iterations runs,
  3. prints the medians over rounds and the ratios .so / .ep.
Both go through the same runtime library and the same C ABI, so the difference is the
container: data sections of a loaded library against a mapped zip archive.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args()

    ember = os.path.join(a.build, "tools", "ember")
    startup = os.path.join(a.build, "bench", "startup")
    runtime = os.path.join(a.build, "src", "capi", "libember_runtime.so")
    for p in (ember, startup, runtime):
        if not os.path.exists(p):
            sys.exit(f"package.py: {p} not found (build the release preset first)")
    pt2 = os.path.join(SHARED, "fixtures", a.model + ".pt2")
    work = os.path.join(a.build, "bench-package")
    os.makedirs(work, exist_ok=True)
    ep = os.path.join(work, a.model + ".ep")
    so = os.path.join(work, a.model + ".so")
    env = dict(os.environ, EMBER_NUM_THREADS=str(a.threads))

    t = time.monotonic()
    subprocess.run([ember, "compile", pt2, "-o", ep, "--threads", str(a.threads), "--quiet"], check=True, env=env)
    compile_s = time.monotonic() - t
    t = time.monotonic()
    subprocess.run([ember, "package", ep, "-o", so, "--quiet"], check=True, env=env)
    package_s = time.monotonic() - t

    samples = {"so": [], "ep": []}
    for r in range(a.rounds):
        for kind, path in (("so", so), ("ep", ep)):
            out = subprocess.run([startup, path, runtime, str(a.iterations)], check=True, capture_output=True,
                                 text=True, env=env).stdout
            samples[kind].append(json.loads(out.strip().splitlines()[-1]))

    def med(kind, key):
        return statistics.median(s[key] for s in samples[kind])

    rows = ["open_ms", "create_ms", "first_run_ms", "to_first_result_ms", "median_ms"]
    print(f"{a.model}: {a.rounds} rounds x {a.iterations} iterations, {a.threads} threads "
          f"(compile {compile_s:.1f} s, package {package_s:.1f} s; "
          f".ep {os.path.getsize(ep):,} B, .so {os.path.getsize(so):,} B)")
    print(f"{'median over rounds':<22}{'.so':>12}{'.ep':>12}{'.so / .ep':>12}")
    result = {"model": a.model, "threads": a.threads, "rounds": a.rounds, "iterations": a.iterations,
              "compile_s": compile_s, "package_s": package_s, "ep_bytes": os.path.getsize(ep),
              "so_bytes": os.path.getsize(so), "runtime_bytes": os.path.getsize(runtime), "samples": samples}
    for key in rows:
        so_v, ep_v = med("so", key), med("ep", key)
        print(f"{key:<22}{so_v:>12.2f}{ep_v:>12.2f}{so_v / ep_v if ep_v else float('nan'):>12.2f}")
        result[key] = {"so": so_v, "ep": ep_v}
    print(f"libember_runtime.so: {os.path.getsize(runtime):,} B")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
