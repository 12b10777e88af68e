#!/usr/bin/env bash
# Installs every Debian package Ember's build, tests, benchmarks and fuzzers need.
# Idempotent: packages already present are skipped. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  clang libclang-rt-14-dev          # libFuzzer + sanitizer runtimes
  libomp-dev                        # clang's OpenMP runtime (ThreadSanitizer build)
  zlib1g-dev                        # inflate + CRC-32 for zip entries
  nlohmann-json3-dev                # JSON (schema 8.x programs, configs, engine metadata)
  libsimdjson-dev                   # fast JSON reader for the CPU engine plan (load path)
  libcli11-dev                      # the ember CLI
  libgtest-dev libgmock-dev         # tests
  libbenchmark-dev                  # benchmarks
  libdnnl-dev                       # oneDNN CPU kernels
  ocl-icd-opencl-dev                # oneDNN's CMake package looks for OpenCL (only a Recommends)
  libxxhash-dev                     # section checksums
  python3                           # small helper scripts (no third-party modules)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
