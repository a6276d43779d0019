#!/usr/bin/env bash
# One Synod member on the loopback interface, etcd's usual ports.
# Data in ./m1.synod. Metrics, /health and /version on :2381.
exec "${SYNOD:-./build/backend/synod}" \
  --name m1 --data-dir m1.synod \
  --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 \
  --listen-metrics-urls http://127.0.0.1:2381 \
  --auto-compaction-mode periodic --auto-compaction-retention 1h \
  --quota-backend-bytes 8589934592 "$@"
