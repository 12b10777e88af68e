#!/usr/bin/env bash
# The main job on the bundled example model, from a fresh machine:
# install dependencies, build the `ember` CLI, then inspect the example .pt2 and run it
# against PyTorch's own reference outputs with a latency report.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ember

EMBER=build/release/tools/ember
MODEL=examples/models/tiny_resnet.pt2
REFERENCE=examples/models/tiny_resnet.io.safetensors

echo
echo "== ember inspect $MODEL"
"$EMBER" inspect "$MODEL"
echo
echo "== ember run $MODEL --compare $REFERENCE (PyTorch 2.11's outputs)"
"$EMBER" run "$MODEL" --compare "$REFERENCE" --iterations 50 --warmup 5
