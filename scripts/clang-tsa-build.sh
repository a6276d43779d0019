#!/usr/bin/env bash
# Builds the whole tree (libraries, binaries, tests, benchmarks) once with
# Clang and its thread-safety analysis as an error: GCC ignores
# -Wthread-safety, so this is the only build that checks the ABSL_GUARDED_BY /
# ABSL_EXCLUSIVE_LOCKS_REQUIRED annotations. -Wthread-safety-beta adds the
# lock-order check (ABSL_ACQUIRED_BEFORE / ABSL_ACQUIRED_AFTER, which plain
# -Wthread-safety parses but ignores). Only thread-safety findings fail the
# build; other Clang warnings are printed and tolerated. Nothing is run.
#
# Usage: bash scripts/clang-tsa-build.sh [build-dir]   (default: build-clang)
# Installs Debian's clang (with the rest of setup.sh's packages) if missing.
# Optimisation is off and there is no debug info: the build exists for the
# compiler's checks, and -O0 roughly halves its time on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${1:-build-clang}"

if ! command -v clang++ >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "clang-tsa: installing clang"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends clang </dev/null
fi

launcher=()
if command -v ccache >/dev/null 2>&1; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

cmake -S . -B "$BUILD_DIR" -G Ninja \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_CXX_FLAGS="-O0 -Wthread-safety -Wthread-safety-beta -Werror=thread-safety -Werror=thread-safety-beta" \
  "${launcher[@]}" >/dev/null
start=$(date +%s)
ninja -C "$BUILD_DIR" -j"$(nproc)"
echo "clang-tsa: built with -Werror=thread-safety in $(( $(date +%s) - start )) s"
