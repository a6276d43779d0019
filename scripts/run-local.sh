#!/usr/bin/env bash
# Sets up, builds and runs a local Synod cluster in the foreground: three
# members and a synod-proxy in front of them, all on 127.0.0.1, with their
# data under ./default.synod (kept across runs). Ready for etcdctl:
#   export ETCDCTL_API=3
#   etcdctl --endpoints=127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 put foo bar
#   etcdctl --endpoints=127.0.0.1:23790 get foo          # through the proxy
# The ports follow etcd's own Procfile: clients 2379/22379/32379, peers
# 2380/22380/32380, metrics 2381/22381/32381, proxy 23790 (metrics 23791).
# Ctrl-C stops everything. SKIP_BUILD=1 runs what is already built; SYNOD_DATA=dir keeps the data elsewhere; TLS=1 runs with TLS (below). Extra arguments go to every member. A member's
# identity lives in its data dir, so later runs restart the same cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  bash scripts/setup.sh
  bash scripts/build.sh
fi

DATA=${SYNOD_DATA:-default.synod}
mkdir -p "$DATA"
# TLS=1: TLS between clients and members and between members. A throwaway
# CA and one certificate for 127.0.0.1/localhost (CN synod-member) are made
# once in $DATA/pki; use them with etcdctl:
#   etcdctl --endpoints=https://127.0.0.1:2379 --cacert=default.synod/pki/ca.crt \
#     --cert=default.synod/pki/member.crt --key=default.synod/pki/member.key get foo
# (A data dir started with TLS=1 keeps https:// peer URLs: use a fresh one.)
SCHEME=http
TLS_ARGS=()
PROXY_TLS_ARGS=()
if [[ "${TLS:-0}" == 1 ]]; then
  PKI=$DATA/pki
  if [[ ! -f $PKI/member.crt ]]; then
    mkdir -p "$PKI"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
      -subj "/CN=synod-local-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=synod-member" \
      -keyout "$PKI/member.key" -out "$PKI/member.csr" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' \
      >"$PKI/ext.cnf"
    openssl x509 -req -in "$PKI/member.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
      -CAcreateserial -days 365 -extfile "$PKI/ext.cnf" -out "$PKI/member.crt" 2>/dev/null
    # The proxy's certificate towards the members has no CN (etcd's
    # grpc-proxy refuses one that has: it would be taken as a user name).
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=synod-proxy" \
      -keyout "$PKI/proxy.key" -out "$PKI/proxy.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/proxy.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
      -CAcreateserial -days 365 -extfile "$PKI/ext.cnf" -out "$PKI/proxy.crt" 2>/dev/null
  fi
  SCHEME=https
  TLS_ARGS=(--cert-file "$PKI/member.crt" --key-file "$PKI/member.key"
            --trusted-ca-file "$PKI/ca.crt" --client-cert-auth
            --peer-cert-file "$PKI/member.crt" --peer-key-file "$PKI/member.key"
            --peer-trusted-ca-file "$PKI/ca.crt" --peer-client-cert-auth
            --peer-cert-allowed-cn synod-member)
  PROXY_TLS_ARGS=(--cert-file="$PKI/member.crt" --key-file="$PKI/member.key"
                  --trusted-ca-file="$PKI/ca.crt"
                  --cert="$PKI/proxy.crt" --key="$PKI/proxy.key" --cacert="$PKI/ca.crt")
fi
CLUSTER="m1=$SCHEME://127.0.0.1:2380,m2=$SCHEME://127.0.0.1:22380,m3=$SCHEME://127.0.0.1:32380"
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
    --listen-client-urls "$SCHEME://127.0.0.1:$port" \
    --advertise-client-urls "$SCHEME://127.0.0.1:$port" \
    --listen-peer-urls "$SCHEME://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "$SCHEME://127.0.0.1:$peer" \
    --listen-metrics-urls "$SCHEME://127.0.0.1:$metrics" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    --initial-cluster-token synod-local "${TLS_ARGS[@]}" "$@" \
    > >(sed -u "s/^/m$i | /") 2>&1 &
  pids+=($!)
done

if [[ -x ./build/proxy/synod-proxy ]]; then
  ./build/proxy/synod-proxy \
    --endpoints=$SCHEME://127.0.0.1:2379,$SCHEME://127.0.0.1:22379,$SCHEME://127.0.0.1:32379 \
    --listen-addr=127.0.0.1:23790 --metrics-addr=http://127.0.0.1:23791 "${PROXY_TLS_ARGS[@]}" \
    > >(sed -u "s/^/proxy | /") 2>&1 &
  pids+=($!)
fi

echo "synod: members on 127.0.0.1:2379,22379,32379; proxy on 127.0.0.1:23790 (Ctrl-C stops)" >&2
wait
