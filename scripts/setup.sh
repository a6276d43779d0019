#!/usr/bin/env bash
# Installs Synod's build and test dependencies from Debian 12 packages.
# Idempotent: re-running it installs nothing new. Needs root (or sudo).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libleveldb-dev libsnappy-dev zlib1g-dev libssl-dev
  libabsl-dev libuv1-dev libyaml-cpp-dev libcrypt-dev libjwt-dev
  libgtest-dev libgmock-dev libbenchmark-dev libhttp-parser-dev
  prometheus-cpp-dev
  etcd-client etcd-server curl
  golang-go golang-etcd-server-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
