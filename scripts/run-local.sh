#!/usr/bin/env bash
# Sets up, builds and runs a local Synod member in the foreground, with its
# data in ./default.synod, ready for etcdctl:
#   ETCDCTL_API=3 etcdctl --endpoints=127.0.0.1:2379 put foo bar
# Ctrl-C stops it; the data stays for the next run.
# (The cluster and the proxy join this script as their issues land.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
exec ./build/backend/synod --name default --data-dir default.synod \
  --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 \
  --listen-metrics-urls http://127.0.0.1:2381 "$@"
