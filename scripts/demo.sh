#!/usr/bin/env bash
# The main job on the bundled example model, from a fresh machine: install dependencies,
# build the `ember` CLI, then
#   1. inspect the example .pt2 (written by PyTorch 2.11's torch.export.save),
#   2. compile it into CPU engines and save model.ep,
#   3. check the saved engines against this host (no kernel is built),
#   4. load model.ep (no recompilation) and run it on PyTorch's reference inputs, comparing
#      with PyTorch's own outputs, with a latency report,
#   5. package model.ep as model.so (needs only libember_runtime.so) and run it from the plain
#      C program examples/c/run_model.c, which dlopens it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target ember ember_runtime run_model

EMBER=build/release/tools/ember
MODEL=examples/models/tiny_resnet.pt2
REFERENCE=examples/models/tiny_resnet.io.safetensors
OUT=build/demo
mkdir -p "$OUT"

echo
echo "== 1. ember inspect $MODEL"
"$EMBER" inspect "$MODEL"
echo
echo "== 2. ember compile $MODEL -o $OUT/tiny_resnet.ep"
"$EMBER" compile "$MODEL" -o "$OUT/tiny_resnet.ep"
echo
echo "== 3. ember check $OUT/tiny_resnet.ep"
"$EMBER" check "$OUT/tiny_resnet.ep"
echo
echo "== 4. ember run $OUT/tiny_resnet.ep --compare $REFERENCE (PyTorch 2.11's outputs)"
"$EMBER" run "$OUT/tiny_resnet.ep" --compare "$REFERENCE" --iterations 200 --warmup 20
echo
echo "== 5. ember package $OUT/tiny_resnet.ep -o $OUT/tiny_resnet.so, then run it from C"
"$EMBER" package "$OUT/tiny_resnet.ep" -o "$OUT/tiny_resnet.so"
build/release/examples/c/run_model "$OUT/tiny_resnet.so" "$REFERENCE" "$OUT/tiny_resnet.outputs.safetensors" 0
"$EMBER" run "$OUT/tiny_resnet.so" --compare "$REFERENCE" --iterations 200 --warmup 20 | tail -n 12
