#!/usr/bin/env bash
# Enables auth on a running cluster and gives one service its own prefix:
#   ENDPOINTS=127.0.0.1:2379 ROOT_PASSWORD=... bash configs/enable-auth.sh
# Afterwards every call needs credentials: etcdctl --user name:password, or a
# client certificate's CN under --client-cert-auth.
set -euo pipefail
export ETCDCTL_API=3
E=(--endpoints="${ENDPOINTS:-127.0.0.1:2379}")
ROOT_PASSWORD=${ROOT_PASSWORD:?set ROOT_PASSWORD}
etcdctl "${E[@]}" user add "root:${ROOT_PASSWORD}"
etcdctl "${E[@]}" user grant-role root root
# One role per service, read-write on its own prefix only.
etcdctl "${E[@]}" role add svc-a
etcdctl "${E[@]}" role grant-permission svc-a readwrite /svc-a/ --prefix
etcdctl "${E[@]}" user add "svc-a:${SVC_A_PASSWORD:-svc-a}"
etcdctl "${E[@]}" user grant-role svc-a svc-a
# synod-proxy's own identity (--user synod-proxy:...): read on every key its
# clients read or watch through it.
etcdctl "${E[@]}" role add proxy-read
etcdctl "${E[@]}" role grant-permission proxy-read read --from-key ''
etcdctl "${E[@]}" user add "synod-proxy:${PROXY_PASSWORD:-synod-proxy}"
etcdctl "${E[@]}" user grant-role synod-proxy proxy-read
etcdctl "${E[@]}" auth enable
