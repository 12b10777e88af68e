#!/usr/bin/env bash
# Installs dependencies, builds Ember (release preset) and runs the whole test suite.
# With EMBER_ASAN=1 (the default under CI) the suite also runs once more under
# AddressSanitizer + UndefinedBehaviorSanitizer (debug-asan preset), and with EMBER_TSAN=1
# (also the default under CI) the suites that start threads run under ThreadSanitizer (tsan
# preset, clang).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
jobs=$(nproc)

cmake --preset release >/dev/null
cmake --build --preset release -j "$jobs"
ctest --preset release -j "$jobs"

if [ "${EMBER_ASAN:-${CI:-0}}" != "0" ] && [ "${EMBER_ASAN:-1}" != "0" ]; then
  cmake --preset debug-asan >/dev/null
  cmake --build --preset debug-asan -j "$jobs" --target asan_suite
  ctest --preset debug-asan -j "$jobs" -L '^(core_test|archive_test|program_test|engine_test|runtime_.*|ops_.*)$'
  # Ember's own CPU kernels among the backend tests (Winograd convolutions), the
  # multi-threaded load (kernels + weights checksum, damaged engines), the plan reader on
  # damaged plans and the run buffers' own mappings run there too.
  cmake --build --preset debug-asan -j "$jobs" --target backends_cpu_backend_test
  ctest --preset debug-asan -j "$jobs" -L '^backends_cpu_backend_test$' -R 'Winograd|WeightGrowth|CpuBackendLoad|Corrupt|RunBuffers'
fi

if [ "${EMBER_TSAN:-${CI:-0}}" != "0" ]; then
  # The engine load's helper threads, the thread pool, concurrent runs of one program / model
  # and the logger (tests/CMakeLists.txt, tsan_suite; suppressions in tests/tsan.supp).
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan -j "$jobs" --target tsan_suite
  ctest --preset tsan -j "$jobs" -L '^(backends_cpu_backend_test|ops_nn_matmul_test|runtime_fixtures_test|capi_test|engine_test)$'
fi
