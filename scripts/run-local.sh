#!/usr/bin/env bash
# Sets up, builds and runs a local Synod cluster in the foreground: three
# members and a synod-proxy in front of them, all on 127.0.0.1, with their
# data under ./default.synod (kept across runs). Ready for etcdctl:
#   export ETCDCTL_API=3
#   etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 put foo bar
#   etcdctl --endpoints=127.0.0.1:23790 get foo          # through the proxy
# The ports follow etcd's own Procfile: clients 2379/22379/32379, peers
# 2380/22380/32380, metrics 2381/22381/32381, proxy 23790 (metrics 23791).
# Ctrl-C stops everything. SKIP_BUILD=1 runs what is already built. Extra arguments go to every member. A member's
# identity lives in its data dir, so later runs restart the same cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  bash scripts/setup.sh
  bash scripts/build.sh
fi

DATA=default.synod
mkdir -p "$DATA"
CLUSTER="m1=http://127.0.0.1:2380,m2=http://127.0.0.1:22380,m3=http://127.0.0.1:32380"
pids=()
stop() {
  trap - INT TERM EXIT
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

i=0
for port in 2379 22379 32379; do
  i=$((i + 1))
  peer=$((port + 1)); metrics=$((port + 2))
  ./build/backend/synod --name "m$i" --data-dir "$DATA/m$i" \
    --listen-client-urls "http://127.0.0.1:$port" \
    --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --listen-metrics-urls "http://127.0.0.1:$metrics" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    --initial-cluster-token synod-local "$@" \
    > >(sed -u "s/^/m$i | /") 2>&1 &
  pids+=($!)
done

if [[ -x ./build/proxy/synod-proxy ]]; then
  ./build/proxy/synod-proxy \
    --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 \
    --listen-addr=127.0.0.1:23790 --metrics-addr=http://127.0.0.1:23791 \
    > >(sed -u "s/^/proxy | /") 2>&1 &
  pids+=($!)
fi

echo "synod: members on 127.0.0.1:2379,22379,32379; proxy on 127.0.0.1:23790 (Ctrl-C stops)" >&2
wait
