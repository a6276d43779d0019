#!/usr/bin/env bash
# Synod and etcd side by side on this machine, driven by the same tool
# (synod-bench), and bench/RESULTS.md written from the medians.
#
#   bash bench/compare.sh
#
# Shapes, each on 127.0.0.1 with free ports picked here and every data dir
# under one temp dir (same disk):
#   1 member   put, range, watch-latency; then, on a fresh member, RSS and
#              data dir size after 100k keys of 256 B;
#   3 members  --initial-cluster of three local members, the same flags for
#              both systems (--heartbeat-interval=100 --election-timeout=1000,
#              the defaults): put (to the leader and spread over all three)
#              and linearizable range;
#   proxy      one member with a proxy in front (synod-proxy for Synod,
#              `etcd grpc-proxy start` for etcd; same --endpoints and
#              --listen-addr): cached serializable reads, and 10,000 watchers
#              on one key (proxy memory per idle watcher, fan-out latency);
#   tls        client TLS: one member serving https:// with a server
#              certificate (--cert-file, --key-file; no client certificates,
#              peers in plaintext) and, back to back with it, the same member
#              in plaintext, each running put and range; the order of the
#              pair alternates between rounds. The CA and the certificate
#              (ECDSA P-256, SAN 127.0.0.1 and localhost) are made with the
#              openssl CLI in the temp dir; synod-bench dials with --cacert.
#              The rest of RESULTS.md is left as it is when only this shape
#              runs (SHAPES=tls): its section is replaced in place.
#   auth       auth on: one member with auth enabled (root, and a user
#              "bench" whose role has READWRITE on [0, :), the range of
#              every decimal key synod-bench writes; simple tokens, bcrypt
#              cost 10, both systems' defaults) and, back to back with it,
#              the same member without auth, each running put and range as
#              in the tls shape; synod-bench authenticates once with --user
#              and sends the token with every call. Like tls, SHAPES=auth
#              (or SHAPES="tls auth") replaces only its own section.
#   prefix     issue 15: 10,000 services, each reading and watching its own
#              key under /cfg/, through a proxy in front of one member, with
#              100 puts/s to those keys (synod-bench --watch-keys=distinct
#              --watch-read): synod-proxy --cache-prefixes=/cfg/ against
#              `etcd grpc-proxy start`, and synod-proxy without the flag for
#              reference. Member and proxy CPU per second over 10 s of the
#              puts, the member's watcher gauge, proxy RSS per cached key and
#              per watcher. Like tls, SHAPES=prefix replaces only its own
#              section (about 2.5 minutes a round).
# Each round starts fresh members of each system and runs every shape; the
# order of the systems alternates between rounds. Every synod-bench run is
# bounded by a count, a --duration and `timeout`, so the whole script takes
# about 20 minutes on 2 cores (the auth shape about 50 s a round, the prefix
# shape about 2.5 minutes).
#
# Environment (all optional):
#   SYNOD_BIN        synod binary        (default: build/backend/synod)
#   ETCD_BIN         etcd binary         (default: /usr/bin/etcd)
#   PROXY_BIN        synod-proxy binary  (default: build/proxy/synod-proxy)
#   ETCDCTL_BIN      etcdctl, to find the leader (default: /usr/bin/etcdctl)
#   SYNOD_BENCH_BIN  synod-bench binary  (default: build/bench/synod-bench)
#   SYNOD_REV        the Synod measured, as RESULTS.md names it (default:
#                    `git describe --always --dirty` of this tree; set it
#                    when SYNOD_BIN was built from another checkout)
#   ROUNDS           rounds per system   (default: 3; at least 3 for RESULTS)
#   SHAPES           shapes to run       (default: "1 3 proxy tls auth prefix")
#   SYSTEMS          systems to run      (default: "etcd synod")
#   RESULTS          output file         (default: bench/RESULTS.md)
#   COMPARE_TMPDIR   parent of the temp dir (default: $TMPDIR or /tmp)
#   SKIP_BUILD=1     do not set up or build synod and synod-bench first
#   JOBS             ninja -j for that build (default: nproc)
#   KEEP_TMP=1       keep the temp dir (data dirs, logs, raw JSON)
set -euo pipefail
trap 'echo "compare.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SYNOD_BIN=${SYNOD_BIN:-$ROOT/build/backend/synod}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
PROXY_BIN=${PROXY_BIN:-$ROOT/build/proxy/synod-proxy}
ETCDCTL_BIN=${ETCDCTL_BIN:-/usr/bin/etcdctl}
BENCH_BIN=${SYNOD_BENCH_BIN:-$ROOT/build/bench/synod-bench}
ROUNDS=${ROUNDS:-3}
SHAPES=${SHAPES:-1 3 proxy tls auth prefix}
SYSTEMS=${SYSTEMS:-etcd synod}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}

log() { echo "compare.sh: $*" >&2; }
die() { log "$*"; exit 1; }
has_shape() { [[ " $SHAPES " == *" $1 "* ]]; }
has_system() { [[ " $SYSTEMS " == *" $1 "* ]]; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  # A fresh machine: the packages (etcd-server among them) and a build.
  if [[ ! -f "$ROOT/build/build.ninja" || ! -x "$ETCD_BIN" ]]; then
    bash "$ROOT/scripts/setup.sh"
  fi
  if [[ ! -f "$ROOT/build/build.ninja" ]]; then
    cmake -S "$ROOT" -B "$ROOT/build" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  targets=(synod synod-bench)
  if ninja -C "$ROOT/build" -t targets all 2>/dev/null | grep -q '^synod-proxy:'; then
    targets+=(synod-proxy)
  fi
  ninja -C "$ROOT/build" -j"${JOBS:-$(nproc)}" "${targets[@]}" >/dev/null
fi
if has_system synod; then
  [[ -x "$SYNOD_BIN" ]] || die "no synod at $SYNOD_BIN (set SYNOD_BIN)"
fi
if has_system etcd; then
  [[ -x "$ETCD_BIN" ]] || die "no etcd at $ETCD_BIN (apt-get install etcd-server, or set ETCD_BIN)"
fi
[[ -x "$BENCH_BIN" ]] || die "no synod-bench at $BENCH_BIN (set SYNOD_BENCH_BIN)"

# Whether synod-proxy can be measured; else why not (shown in RESULTS.md).
PROXY_WHY=""
if ! has_shape proxy; then
  PROXY_WHY="not run (SHAPES=\"$SHAPES\")"
elif [[ ! -x "$PROXY_BIN" ]]; then
  PROXY_WHY="no synod-proxy binary at $PROXY_BIN"
fi

# Whether synod-proxy's prefix cache can be measured; else why not.
PREFIX_WHY=""
if has_shape prefix && [[ ! -x "$PROXY_BIN" ]]; then
  PREFIX_WHY="no synod-proxy binary at $PROXY_BIN"
fi

# Whether Synod's client TLS can be measured; else why not (in RESULTS.md).
TLS_WHY=""
if has_shape tls && ! command -v openssl >/dev/null; then
  die "the tls shape needs the openssl CLI (apt-get install openssl); or set SHAPES without tls"
fi

TMP=$(mktemp -d "${COMPARE_TMPDIR:-${TMPDIR:-/tmp}}/synod-compare.XXXXXX")
RAW=$TMP/raw
mkdir -p "$RAW"
PIDS=()        # every member and proxy this script started and has not stopped
PROXY_PID=""
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# free_port: sets PORT to a TCP port on 127.0.0.1 that nothing listens on and
# that was not handed out before, below the kernel's ephemeral range (so no
# outgoing connection can hold it as its source port when a member binds it).
USED_PORTS=" "
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
((EPHEMERAL_LOW > 12000)) || EPHEMERAL_LOW=32768
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      PORT=$p
      return
    fi
  done
  die "no free port found"
}

# make_pki DIR: a throwaway CA and a server certificate it signs (ECDSA
# P-256, SAN 127.0.0.1 and localhost, valid 2 days) as DIR/ca.pem,
# DIR/server.pem and DIR/server-key.pem.
make_pki() {
  local d=$1
  mkdir -p "$d"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -nodes -days 2 -subj "/CN=synod-bench CA" \
      -keyout "$d/ca-key.pem" -out "$d/ca.pem"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout "$d/server-key.pem" -out "$d/server.csr"
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      "keyUsage=digitalSignature" "extendedKeyUsage=serverAuth" \
      "basicConstraints=CA:FALSE" >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" \
      -CAkey "$d/ca-key.pem" -CAcreateserial -days 2 -extfile "$d/ext.cnf" \
      -out "$d/server.pem"
  } >"$d/openssl.log" 2>&1 || die "openssl failed: $(tail -3 "$d/openssl.log")"
}
PKI=$TMP/pki
if has_shape tls; then make_pki "$PKI"; fi

# Client TLS for the members start_cluster starts (CLIENT_TLS=1: https://
# client URLs with $PKI's server certificate) and the flags synod-bench
# then needs (TLS_ARGS). Set and cleared by run_tls_one.
CLIENT_TLS=0
TLS_ARGS=()
# synod-bench's --user for a member with auth on. Set and cleared by
# run_auth_one.
AUTH_ARGS=()

# With START_SOFT=1, a member that does not come up makes start_cluster
# return 1 with the reason in START_FAIL instead of ending the script.
START_SOFT=0
START_FAIL=""

# wait_ready SYSTEM EP PID LOG: until a linearizable range on EP succeeds
# (so a leader exists), at most 20 s.
wait_ready() {
  local system=$1 ep=$2 pid=$3 logf=$4
  for _ in $(seq 40); do
    if "$BENCH_BIN" --endpoints="$ep" "${TLS_ARGS[@]}" --total=1 \
        --timeout=1s --noprogress range >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      START_FAIL="$system exited at start: $(tail -5 "$logf")"
      [[ $START_SOFT == 1 ]] && return 1
      die "$START_FAIL"
    fi
    sleep 0.5
  done
  START_FAIL="$system did not answer on $ep within 20 s: $(tail -5 "$logf")"
  [[ $START_SOFT == 1 ]] && return 1
  die "$START_FAIL"
}

# start_cluster SYSTEM DIR N: starts a fresh N-member SYSTEM (etcd or synod)
# with member i's data in DIR/mI. Sets EPS (every client host:port, comma
# separated), EP (the first), SERVER_PID (member 1's pid) and MEMBER_PIDS.
start_cluster() {
  local system=$1 dir=$2 n=$3 i cluster="" token="bench-$RANDOM"
  local cports=() pports=()
  for i in $(seq "$n"); do
    free_port
    cports+=("$PORT")
    free_port
    pports+=("$PORT")
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${pports[$((i - 1))]}"
  done
  local scheme=http tls=()
  if [[ $CLIENT_TLS == 1 ]]; then
    scheme=https
    tls=(--cert-file "$PKI/server.pem" --key-file "$PKI/server-key.pem")
  fi
  EPS=""
  MEMBER_PIDS=()
  for i in $(seq "$n"); do
    local c=127.0.0.1:${cports[$((i - 1))]} p=127.0.0.1:${pports[$((i - 1))]}
    local m=$dir/m$i
    mkdir -p "$m"
    local args=(--name "m$i" --data-dir "$m/data"
      --listen-client-urls "$scheme://$c" --advertise-client-urls "$scheme://$c"
      "${tls[@]}"
      --listen-peer-urls "http://$p" --initial-advertise-peer-urls "http://$p"
      --initial-cluster "$cluster" --initial-cluster-state new
      --initial-cluster-token "$token"
      --heartbeat-interval=100 --election-timeout=1000)
    if [[ $system == etcd ]]; then
      "$ETCD_BIN" "${args[@]}" --logger=zap --log-level=error >"$m/server.log" 2>&1 &
    else
      "$SYNOD_BIN" "${args[@]}" --log-level=warn >"$m/server.log" 2>&1 &
    fi
    MEMBER_PIDS+=($!)
    PIDS+=($!)
    EPS+="${EPS:+,}$c"
  done
  EP=${EPS%%,*}
  SERVER_PID=${MEMBER_PIDS[0]}
  local e j=0
  for e in ${EPS//,/ }; do
    wait_ready "$system" "$e" "${MEMBER_PIDS[$j]}" "$dir/m$((j + 1))/server.log" ||
      return 1
    j=$((j + 1))
  done
}

# The client endpoint of the current leader (the first member if unknown).
leader_ep() {
  local l
  l=$(ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints="$EPS" --command-timeout=3s \
    endpoint status -w simple 2>/dev/null | awk -F', ' '$5 == "true" {print $1; exit}')
  echo "${l:-$EP}"
}

# stop_all: stops every member and proxy started so far.
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  PROXY_PID=""
}

# Flags added to synod-proxy's command line by start_proxy.
PROXY_FLAGS=()

# start_proxy SYSTEM DIR: a proxy for SYSTEM in front of $EP, with its
# /metrics on a port of its own; sets PEP and PMETRICS (http://host:port).
# Returns 1 (with the reason in PROXY_FAIL) if it does not come up.
start_proxy() {
  local system=$1 dir=$2 port
  free_port
  port=$PORT
  PEP=127.0.0.1:$port
  free_port
  PMETRICS=http://127.0.0.1:$PORT
  mkdir -p "$dir"
  if [[ $system == etcd ]]; then
    "$ETCD_BIN" grpc-proxy start --endpoints="$EP" --listen-addr="$PEP" \
      --metrics-addr="$PMETRICS" >"$dir/proxy.log" 2>&1 &
  else
    "$PROXY_BIN" --endpoints="$EP" --listen-addr="$PEP" --log-level=warn \
      --metrics-addr="$PMETRICS" "${PROXY_FLAGS[@]}" >"$dir/proxy.log" 2>&1 &
  fi
  PROXY_PID=$!
  PIDS+=($!)
  for _ in $(seq 40); do
    if "$BENCH_BIN" --endpoints="$PEP" --total=1 --timeout=1s --noprogress \
        range >/dev/null 2>&1; then
      return 0
    fi
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
      PROXY_FAIL="exited at start: $(tail -2 "$dir/proxy.log" | tr '\n|' '  ')"
      return 1
    fi
    sleep 0.5
  done
  PROXY_FAIL="did not answer a range within 20 s"
  return 1
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# field FILE PATH: a number from one of our flat JSON lines. PATH is a key
# ("throughput") or latency_ms.KEY ("latency_ms.p50"). Empty if absent.
field() {
  local file=$1 path=$2 json
  json=$(cat "$file" 2>/dev/null || true)
  if [[ $path == latency_ms.* ]]; then
    json=$(grep -o '"latency_ms":{[^}]*}' <<<"$json" || true)
    path=${path#latency_ms.}
  fi
  grep -o "\"$path\":[0-9.eE+-]*" <<<"$json" | head -1 | cut -d: -f2 || true
}

# bench NAME SYSTEM ROUND ARGS...: one synod-bench run against $EP (unless
# ARGS give --endpoints), JSON kept in $RAW.
bench() {
  local name=$1 system=$2 round=$3
  shift 3
  local out=$RAW/$system.$name.$round.json
  if ! timeout 120 "$BENCH_BIN" --endpoints="$EP" "${TLS_ARGS[@]}" \
      "${AUTH_ARGS[@]}" --json \
      --noprogress "$@" \
      >"$out" 2>"$out.err"; then
    log "$system $name round $round failed: $(tail -2 "$out.err")"
    echo '{"failed":true}' >"$out"
  fi
}

KV=(--key-size=8 --val-size=256)
run_one_member() {
  local system=$1 round=$2 dir=$TMP/$1.$2
  start_cluster "$system" "$dir" 1
  bench put1 "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=1 --clients=1 --total=4000 --duration=4s put
  bench put10x100 "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=10 --clients=100 --total=50000 --duration=5s put
  bench put100x1000 "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=100 --clients=1000 --total=50000 --duration=5s put
  # Range reads need keys: 10,000 of them, written once, not measured.
  bench preload "$system" "$round" "${KV[@]}" --key-space=10000 --seq-keys \
    --conns=10 --clients=100 --total=10000 --duration=20s put
  bench range_l "$system" "$round" "${KV[@]}" --key-space=10000 \
    --conns=10 --clients=100 --total=100000 --duration=4s range
  bench range_s "$system" "$round" "${KV[@]}" --key-space=10000 \
    --conns=10 --clients=100 --total=100000 --duration=4s --consistency=s range
  bench watch "$system" "$round" --key-size=8 --val-size=256 \
    --watchers=100 --watch-streams=10 --conns=10 --clients=10 \
    --rate=200 --total=600 --duration=10s watch-latency
  stop_all

  # Footprint: a fresh member, 100k keys of 256 B, then RSS and data dir.
  dir=$TMP/$system.$round.mem
  start_cluster "$system" "$dir" 1
  bench load100k "$system" "$round" "${KV[@]}" --key-space=100000 --seq-keys \
    --conns=10 --clients=100 --total=100000 --duration=60s put
  sleep 2
  local du_kb
  du_kb=$(du -sk "$dir/m1/data" | cut -f1)
  echo "{\"rss_kb\":$(rss_kb "$SERVER_PID"),\"du_kb\":$du_kb}" >"$RAW/$system.mem.$round.json"
  stop_all
  rm -rf "$TMP/$system.$round" "$dir"
}

run_three_members() {
  local system=$1 round=$2 dir=$TMP/$1.$2.c3 lep
  start_cluster "$system" "$dir" 3
  lep=$(leader_ep)
  # Single client on the leader: one commit (leader fsync + a follower's
  # append and fsync) per put, no forwarding.
  bench c3_put1 "$system" "$round" "${KV[@]}" --endpoints="$lep" \
    --key-space=100000 --conns=1 --clients=1 --total=3000 --duration=4s put
  # Connections spread over all three members, as etcd's benchmark does.
  bench c3_put10x100 "$system" "$round" "${KV[@]}" --endpoints="$EPS" \
    --key-space=100000 --conns=10 --clients=100 --total=50000 --duration=5s put
  bench c3_preload "$system" "$round" "${KV[@]}" --endpoints="$lep" \
    --key-space=10000 --seq-keys --conns=10 --clients=100 --total=10000 \
    --duration=20s put
  bench c3_range_l "$system" "$round" "${KV[@]}" --endpoints="$EPS" \
    --key-space=10000 --conns=10 --clients=100 --total=100000 --duration=4s range
  stop_all
  rm -rf "$dir"
}

# Proxy shape; the watch run holds 10,000 watchers idle for 3 s, and the
# proxy's RSS is read in the middle of that.
run_proxy() {
  local system=$1 round=$2 dir=$TMP/$1.$2.proxy
  if [[ $system == synod && -n "$PROXY_WHY" ]]; then return; fi
  start_cluster "$system" "$dir" 1
  if ! start_proxy "$system" "$dir"; then
    log "$system proxy round $round: $PROXY_FAIL"
    if [[ $system == synod ]]; then PROXY_WHY="synod-proxy $PROXY_FAIL"; fi
    stop_all
    rm -rf "$dir"
    return
  fi
  # 100 hot keys, written on the member; one pass through the proxy warms
  # its cache; then the measured run.
  bench p_preload "$system" "$round" "${KV[@]}" --key-space=100 --seq-keys \
    --conns=1 --clients=10 --total=100 put
  bench p_warm "$system" "$round" "${KV[@]}" --endpoints="$PEP" \
    --key-space=100 --seq-keys --conns=1 --clients=1 --total=200 \
    --consistency=s range
  bench p_range_s "$system" "$round" "${KV[@]}" --endpoints="$PEP" \
    --key-space=100 --conns=10 --clients=100 --total=200000 --duration=5s \
    --consistency=s range
  sleep 1
  local before idle=0 bpid
  before=$(rss_kb "$PROXY_PID")
  bench p_watch "$system" "$round" --endpoints="$PEP" --key-size=8 \
    --val-size=256 --watch-streams=100 --watch-per-stream=100 \
    --watch-idle=3s --conns=10 --clients=10 --rate=2 --total=6 \
    --duration=30s --timeout=30s watch &
  bpid=$!
  local err=$RAW/$system.p_watch.$round.json.err
  for _ in $(seq 120); do
    if grep -q "watchers ready" "$err" 2>/dev/null; then
      sleep 1.5
      idle=$(rss_kb "$PROXY_PID")
      break
    fi
    kill -0 "$bpid" 2>/dev/null || break
    sleep 0.5
  done
  wait "$bpid" || true
  if ((idle > 0)); then
    echo "{\"rss_before_kb\":$before,\"rss_idle_kb\":$idle,\"per_watcher_b\":$(((idle - before) * 1024 / 10000))}" \
      >"$RAW/$system.p_mem.$round.json"
  fi
  stop_all
  rm -rf "$dir"
}

# cpu_ticks PID: user + system CPU of PID so far, in clock ticks.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

# cpu_bench NAME SYSTEM ROUND ARGS...: bench, plus CPU per op (us) in
# $RAW/SYSTEM.NAME_cpu.ROUND.json: the member's ("cpu_us") and synod-bench's
# own ("bench_us").
cpu_bench() {
  local name=$1 system=$2 round=$3 before after ok json
  before=$(cpu_ticks "$SERVER_PID")
  bench "$@"
  after=$(cpu_ticks "$SERVER_PID")
  json=$RAW/$system.$name.$round.json
  ok=$(field "$json" ok)
  if [[ -n "$ok" && "$ok" != 0 ]]; then
    awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$ok" \
      -v b="$(field "$json" cpu_s)" 'BEGIN {
        printf "{\"cpu_us\":%.1f,\"bench_us\":%.1f}\n", t * 1e6 / hz / n,
          b * 1e6 / n }' >"$RAW/$system.${name}_cpu.$round.json"
  fi
}

# metric URL NAME: the sum of every series of the family NAME (any labels)
# in URL/metrics, rounded; empty when there is none.
metric() {
  curl -s --max-time 5 "$1/metrics" 2>/dev/null | awk -v n="$2" '
    !/^#/ { name = $1; sub(/\{.*/, "", name)
            if (name == n) { s += $NF; found = 1 } }
    END { if (found) printf "%.0f\n", s }'
}

# Prefix shape (issue 15): keys /cfg/00000000 .. /cfg/00009999, 256 B values.
PFX=(--key-prefix=/cfg/ --key-size=8 --val-size=256)
# Proxy starts of the prefix shape that failed, as Markdown list items.
PREFIX_FAILS=""

# run_prefix_one SYSTEM ROUND P: a fresh member and a proxy in front of it,
# runs named P_<run>. P is pc (synod-proxy --cache-prefixes=/cfg/, or etcd
# grpc-proxy) or pn (synod-proxy without the flag). In order: the proxy's
# RSS once started; 10,000 keys written on the member, each then read once
# through the proxy (filling whatever cache it keeps), RSS and the proxy's
# count of cached keys; then 10,000 services, each reading its key through
# the proxy and watching it from the revision after, held idle 3 s (RSS and
# the member's watcher gauge 1.5 s into that), then 100 puts/s to those keys
# for 20 s through the proxy, member and proxy CPU taken over 10 s of them.
run_prefix_one() {
  local system=$1 round=$2 p=$3 dir=$TMP/$1.$2.$3
  local keys_metric=synod_proxy_cache_entries
  if [[ $system == synod && $p == pc ]]; then
    keys_metric=synod_proxy_prefix_cache_keys
    PROXY_FLAGS=(--cache-prefixes=/cfg/)
  fi
  start_cluster "$system" "$dir" 1
  if ! start_proxy "$system" "$dir"; then
    log "$system prefix $p round $round: proxy $PROXY_FAIL"
    PREFIX_FAILS+="- $system, $p, round $round: proxy $(tr '\n|`' '   ' <<<"$PROXY_FAIL" | cut -c1-300)"$'\n'
    PROXY_FLAGS=()
    stop_all
    rm -rf "$dir"
    return
  fi
  PROXY_FLAGS=()
  sleep 1
  local rss0 rss_keys rss_watch=0 keys cbytes="" watchers="" bpid
  local t0 t1 m0 m1 p0 p1 load1=""
  rss0=$(rss_kb "$PROXY_PID")
  bench ${p}_preload "$system" "$round" "${PFX[@]}" --seq-keys \
    --key-space=10000 --conns=10 --clients=100 --total=10000 --duration=30s put
  bench ${p}_read "$system" "$round" "${PFX[@]}" --endpoints="$PEP" \
    --seq-keys --key-space=10000 --conns=10 --clients=100 --total=10000 \
    --duration=30s range
  sleep 1
  rss_keys=$(rss_kb "$PROXY_PID")
  keys=$(metric "$PMETRICS" "$keys_metric")
  if [[ $system == etcd ]]; then
    # etcd 3.4.23's grpc-proxy never sets its cache gauges (they read 0,
    # though a serializable read after a write on the member returns the
    # cached value); its LRU holds at most 2,048 ranges
    # (cache.DefaultMaxEntries), all taken after 10,000 reads.
    keys=2048
  elif [[ $p == pc ]]; then
    cbytes=$(metric "$PMETRICS" synod_proxy_prefix_cache_bytes)
  fi
  bench ${p}_watch "$system" "$round" "${PFX[@]}" --endpoints="$PEP" \
    --watch-keys=distinct --watch-read --watch-streams=100 \
    --watch-per-stream=100 --watch-idle=3s --conns=10 --clients=10 \
    --rate=100 --total=2000 --duration=20s --timeout=30s watch-latency &
  bpid=$!
  local err=$RAW/$system.${p}_watch.$round.json.err
  for _ in $(seq 240); do
    if grep -q "watchers ready" "$err" 2>/dev/null; then
      sleep 1.5
      rss_watch=$(rss_kb "$PROXY_PID")
      watchers=$(metric "http://$EP" etcd_debugging_mvcc_watcher_total)
      # The puts begin 3 s after "ready"; from 2 s into them, 10 s.
      sleep 3.5
      t0=$(date +%s.%N) m0=$(cpu_ticks "$SERVER_PID") p0=$(cpu_ticks "$PROXY_PID")
      sleep 10
      t1=$(date +%s.%N) m1=$(cpu_ticks "$SERVER_PID") p1=$(cpu_ticks "$PROXY_PID")
      load1=$(cut -d' ' -f1 /proc/loadavg)
      break
    fi
    kill -0 "$bpid" 2>/dev/null || break
    sleep 0.5
  done
  wait "$bpid" || true
  if ((rss_watch > 0)); then
    awk -v r0="$rss0" -v rk="$rss_keys" -v rw="$rss_watch" -v k="${keys:-0}" \
      -v w="${watchers:--1}" -v hz="$(getconf CLK_TCK)" -v t="$t0 $t1" \
      -v cb="$cbytes" -v l="${load1:-0}" \
      -v m=$((m1 - m0)) -v p=$((p1 - p0)) 'BEGIN {
        split(t, ts, " "); s = ts[2] - ts[1]
        printf "{\"rss0_kb\":%d,\"rss_keys_kb\":%d,\"rss_watch_kb\":%d,", r0, rk, rw
        printf "\"cached_keys\":%d,", k
        if (k > 0) printf "\"per_key_b\":%.0f,", (rk - r0) * 1024 / k
        if (k > 0 && cb != "") printf "\"counted_per_key_b\":%.0f,", cb / k
        printf "\"per_watcher_b\":%.0f,\"member_watchers\":%d,", (rw - rk) * 1024 / 10000, w
        printf "\"member_cpu_ms_s\":%.1f,\"proxy_cpu_ms_s\":%.1f,\"load1\":%s}\n",
          m * 1000 / hz / s, p * 1000 / hz / s, l }' >"$RAW/$system.${p}_m.$round.json"
  fi
  stop_all
  rm -rf "$dir"
}

# run_prefix SYSTEM ROUND: the prefix shape's runs of SYSTEM (for Synod,
# with the prefix cache and without, in turn).
run_prefix() {
  local system=$1 round=$2
  if [[ $system == etcd ]]; then
    run_prefix_one etcd "$round" pc
  elif [[ -z "$PREFIX_WHY" ]]; then
    if ((round % 2)); then
      run_prefix_one synod "$round" pc
      run_prefix_one synod "$round" pn
    else
      run_prefix_one synod "$round" pn
      run_prefix_one synod "$round" pc
    fi
  fi
}

# Member starts of the tls and auth shapes that failed, as Markdown list
# items.
TLS_FAILS=""
AUTH_FAILS=""

# start_one_soft SYSTEM DIR LABEL FAILS: start_cluster SYSTEM DIR/tryN 1,
# tried once more on new ports if the member does not come up, unless it
# refused a flag. Each failure is logged and added to the list named FAILS.
# Returns 1 when the member did not come up (the reason in START_FAIL).
start_one_soft() {
  local system=$1 dir=$2 label=$3 try
  local -n fails=$4
  START_SOFT=1
  for try in 1 2; do
    if start_cluster "$system" "$dir/try$try" 1; then
      START_SOFT=0
      return 0
    fi
    log "$label, try $try: $START_FAIL"
    fails+="- $label, try $try: $(tr '\n|`' '   ' <<<"$START_FAIL" | cut -c1-400)"$'\n'
    stop_all
    [[ $START_FAIL == *"nknown command line flag"* ]] && break
  done
  START_SOFT=0
  return 1
}

# pair_runs P SYSTEM ROUND: the runs of the tls and auth shapes on the member
# just started, named P<run>: put, then 10,000 keys written, then
# linearizable and serializable range, each with CPU per op.
pair_runs() {
  local p=$1 system=$2 round=$3
  cpu_bench ${p}put "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=10 --clients=100 --total=50000 --duration=5s put
  bench ${p}preload "$system" "$round" "${KV[@]}" --key-space=10000 \
    --seq-keys --conns=10 --clients=100 --total=10000 --duration=20s put
  cpu_bench ${p}range_l "$system" "$round" "${KV[@]}" --key-space=10000 \
    --conns=10 --clients=100 --total=100000 --duration=4s range
  cpu_bench ${p}range_s "$system" "$round" "${KV[@]}" --key-space=10000 \
    --conns=10 --clients=100 --total=100000 --duration=4s --consistency=s \
    range
}

# run_pair FN SYSTEM ROUND ON OFF: FN SYSTEM ROUND ON and FN SYSTEM ROUND OFF
# back to back, ON first in odd rounds.
run_pair() {
  local fn=$1 system=$2 round=$3 on=$4 off=$5
  if ((round % 2)); then
    "$fn" "$system" "$round" "$on"
    "$fn" "$system" "$round" "$off"
  else
    "$fn" "$system" "$round" "$off"
    "$fn" "$system" "$round" "$on"
  fi
}

# run_tls_one SYSTEM ROUND MODE: a fresh member, with client TLS (MODE tls)
# or without (plain), and pair_runs on it; names start with t_ or tp_.
# A Synod that refuses the TLS flags is not tried in later rounds.
run_tls_one() {
  local system=$1 round=$2 mode=$3 dir=$TMP/$1.$2.$3 p=tp_
  if [[ $mode == tls ]]; then
    if [[ $system == synod && -n "$TLS_WHY" ]]; then return; fi
    CLIENT_TLS=1
    TLS_ARGS=(--cacert="$PKI/ca.pem")
    p=t_
  fi
  if start_one_soft "$system" "$dir" "$system, $mode, round $round" TLS_FAILS; then
    pair_runs $p "$system" "$round"
  elif [[ $system == synod && $mode == tls &&
          $START_FAIL == *"nknown command line flag"* ]]; then
    TLS_WHY="synod does not take the TLS flags: $(tr '\n|`' '   ' <<<"$START_FAIL" | cut -c1-300)"
  fi
  CLIENT_TLS=0
  TLS_ARGS=()
  stop_all
  rm -rf "$dir"
}

# enable_auth EP: through etcdctl on EP, the root user and role, user
# "bench" (password "bench") with role "bench" granted READWRITE on [0, :),
# and auth enabled. Returns 1 with etcdctl's words in START_FAIL on a
# failure.
enable_auth() {
  local ep=$1 out step
  local steps=("user add root:root" "role add root" "user grant-role root root"
    "user add bench:bench" "role add bench"
    "role grant-permission bench readwrite 0 :" "user grant-role bench bench"
    "auth enable")
  for step in "${steps[@]}"; do
    # shellcheck disable=SC2086  # each step is words for etcdctl
    if ! out=$(ETCDCTL_API=3 "$ETCDCTL_BIN" --endpoints="$ep" \
        --command-timeout=5s $step 2>&1); then
      START_FAIL="etcdctl $step: $(tail -1 <<<"$out")"
      return 1
    fi
  done
}

# run_auth_one SYSTEM ROUND MODE: a fresh member, with auth on (MODE auth)
# or off (plain), and pair_runs on it as user bench; names start with a_
# or ap_.
run_auth_one() {
  local system=$1 round=$2 mode=$3 dir=$TMP/$1.$2.auth-$3
  if start_one_soft "$system" "$dir" "$system, $mode, round $round" AUTH_FAILS; then
    if [[ $mode == plain ]]; then
      pair_runs ap_ "$system" "$round"
    elif enable_auth "$EP"; then
      AUTH_ARGS=(--user=bench:bench)
      pair_runs a_ "$system" "$round"
    else
      log "$system auth round $round: $START_FAIL"
      AUTH_FAILS+="- $system, auth on, round $round: $(tr '\n|`' '   ' <<<"$START_FAIL" | cut -c1-400)"$'\n'
    fi
  fi
  AUTH_ARGS=()
  stop_all
  rm -rf "$dir"
}

run_round() {
  local system=$1 round=$2
  log "round $round: $system"
  echo "{\"load1\":$(cut -d' ' -f1 /proc/loadavg)}" >"$RAW/$system.load.$round.json"
  if has_shape 1; then run_one_member "$system" "$round"; fi
  if has_shape 3; then run_three_members "$system" "$round"; fi
  if has_shape proxy; then run_proxy "$system" "$round"; fi
  if has_shape tls; then run_pair run_tls_one "$system" "$round" tls plain; fi
  if has_shape auth; then run_pair run_auth_one "$system" "$round" auth plain; fi
  if has_shape prefix; then run_prefix "$system" "$round"; fi
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order="etcd synod"; else order="synod etcd"; fi
  for system in $order; do
    if has_system "$system"; then run_round "$system" "$round"; fi
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))

# ---- Report -------------------------------------------------------------

# median SYSTEM NAME PATH [SCALE]: median over the rounds, times SCALE.
median() {
  local system=$1 name=$2 path=$3 scale=${4:-1} r v vals=()
  for r in $(seq "$ROUNDS"); do
    v=$(field "$RAW/$system.$name.$r.json" "$path")
    [[ -n "$v" ]] && vals+=("$v")
  done
  ((${#vals[@]})) || { echo "n/a"; return; }
  printf '%s\n' "${vals[@]}" | sort -g |
    awk -v s="$scale" '{a[NR]=$1} END {
      m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
      printf (m*s >= 100) ? "%.0f\n" : "%.3g\n", m*s }'
}

# all_rounds SYSTEM NAME PATH [SCALE]: every round's figure, "a / b / c".
all_rounds() {
  local system=$1 name=$2 path=$3 scale=${4:-1} r v out=""
  for r in $(seq "$ROUNDS"); do
    v=$(field "$RAW/$system.$name.$r.json" "$path")
    [[ -n "$v" ]] && v=$(awk -v v="$v" -v s="$scale" 'BEGIN {
      printf (v*s >= 100) ? "%.0f" : "%.3g", v*s }') || v="failed"
    out+="${out:+ / }$v"
  done
  echo "$out"
}

ratio() {
  awk -v s="$1" -v e="$2" 'BEGIN {
    if (s == "n/a" || e == "n/a" || e == 0) print "n/a"; else printf "%.2f\n", s/e }'
}

# verdict RATIO OP TARGET: "yes"/"no" against a target ratio.
verdict() {
  [[ -z "$3" || "$1" == n/a ]] && { echo "—"; return; }
  awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN {
    ok = (op == ">=") ? r >= t : r <= t; print ok ? "yes" : "**no**" }'
}

ROWS=""
row() {  # row LABEL SHAPE NAME PATH SCALE OP TARGET
  local e s r
  e=$(median etcd "$3" "$4" "$5")
  s=$(median synod "$3" "$4" "$5")
  r=$(ratio "$s" "$e")
  ROWS+="| $1 | $2 | $e | $s | $r | ${7:+$6 $7} | $(verdict "$r" "$6" "$7") |"$'\n'
}
row "single-client put p50 (ms)" "1 × 1" put1 latency_ms.p50 1 "<=" 0.7
row "put throughput (ops/s)" "10 × 100" put10x100 throughput 1 ">=" 2
row "put throughput (ops/s)" "100 × 1000" put100x1000 throughput 1 ">=" 2
row "linearizable range (ops/s)" "10 × 100" range_l throughput 1 ">=" 2
row "serializable range (ops/s)" "10 × 100" range_s throughput 1 ">=" 3
row "watch-latency p50 (ms)" "100 watchers, 200 puts/s" watch latency_ms.p50 1 "" ""
row "watch-latency p99 (ms)" "100 watchers, 200 puts/s" watch latency_ms.p99 1 "" ""
row "member RSS (MiB)" "after 100k keys of 256 B" mem rss_kb 0.0009765625 "<=" 0.5
row "data dir (MiB)" "after 100k keys of 256 B" mem du_kb 0.0009765625 "" ""
row "**3 members:** single-client put p50 (ms)" "1 × 1, to the leader" c3_put1 latency_ms.p50 1 "<=" 0.7
row "**3 members:** put throughput (ops/s)" "10 × 100, all members" c3_put10x100 throughput 1 ">=" 2
row "**3 members:** linearizable range (ops/s)" "10 × 100, all members" c3_range_l throughput 1 ">=" 2
# Proxy rows: Synod's column says why when synod-proxy was not measured.
prow() {  # prow LABEL SHAPE NAME PATH SCALE OP TARGET
  if [[ -z "$PROXY_WHY" ]]; then row "$@"; return; fi
  ROWS+="| $1 | $2 | $(median etcd "$3" "$4" "$5") | not measured: $PROXY_WHY | — | ${7:+$6 $7} | — |"$'\n'
}
prow "**proxy:** cached serializable range (ops/s)" "10 × 100, 100 hot keys" p_range_s throughput 1 "" ""
prow "**proxy:** fan-out latency p50 (ms)" "10k watchers, 1 key, 2 puts/s" p_watch latency_ms.p50 1 "" ""
prow "**proxy:** fan-out latency p99 (ms)" "10k watchers, 1 key, 2 puts/s" p_watch latency_ms.p99 1 "" ""
prow "**proxy:** memory per idle watcher (B)" "10k watchers on 100 streams" p_mem per_watcher_b 1 "<=" 0.5

RAWROWS=""
rawrow() {  # rawrow LABEL NAME PATH SCALE
  RAWROWS+="| $1 | $(all_rounds etcd "$2" "$3" "$4") | $(all_rounds synod "$2" "$3" "$4") |"$'\n'
}
rawrow "load average (1 min) as the round starts" load load1 1
rawrow "single-client put p50 (ms)" put1 latency_ms.p50 1
rawrow "single-client put p99 (ms)" put1 latency_ms.p99 1
rawrow "put 10×100 (ops/s)" put10x100 throughput 1
rawrow "put 10×100 p99 (ms)" put10x100 latency_ms.p99 1
rawrow "put 100×1000 (ops/s)" put100x1000 throughput 1
rawrow "put 100×1000 p99 (ms)" put100x1000 latency_ms.p99 1
rawrow "linearizable range (ops/s)" range_l throughput 1
rawrow "serializable range (ops/s)" range_s throughput 1
rawrow "watch-latency p50 (ms)" watch latency_ms.p50 1
rawrow "watch-latency p99 (ms)" watch latency_ms.p99 1
rawrow "watch-latency max (ms)" watch latency_ms.max 1
rawrow "load 100k keys (ops/s)" load100k throughput 1
rawrow "RSS (MiB)" mem rss_kb 0.0009765625
rawrow "data dir (MiB)" mem du_kb 0.0009765625
rawrow "3 members: single-client put p50 (ms)" c3_put1 latency_ms.p50 1
rawrow "3 members: single-client put p99 (ms)" c3_put1 latency_ms.p99 1
rawrow "3 members: put 10×100 (ops/s)" c3_put10x100 throughput 1
rawrow "3 members: put 10×100 p99 (ms)" c3_put10x100 latency_ms.p99 1
rawrow "3 members: linearizable range (ops/s)" c3_range_l throughput 1
rawrow "proxy: cached serializable range (ops/s)" p_range_s throughput 1
rawrow "proxy: 10k-watcher fan-out p50 (ms)" p_watch latency_ms.p50 1
rawrow "proxy: 10k-watcher fan-out p99 (ms)" p_watch latency_ms.p99 1
rawrow "proxy: RSS before the watchers (MiB)" p_mem rss_before_kb 0.0009765625
rawrow "proxy: RSS with 10k idle watchers (MiB)" p_mem rss_idle_kb 0.0009765625

# error_lines FILE...: a Markdown list item for each run with errors, or
# that failed outright.
error_lines() {
  local f n
  for f in "$@"; do
    [[ -f "$f" ]] || continue
    n=$(field "$f" errors)
    if grep -q '"failed":true' "$f" || [[ -n "$n" && "$n" != 0 ]]; then
      echo "- \`$(basename "$f" .json)\`: ${n:-run failed} errors $(grep -o '"error_counts":{.*}' "$f" | cut -c16- | head -c 300)"
    fi
  done
}
ERRORS=$(error_lines "$RAW"/*.json)

# The hand-written analysis below "## What bounds us" survives a rerun.
NOTES=""
if [[ -f "$RESULTS" ]]; then
  NOTES=$(sed -n '/^## What bounds us/,$p' "$RESULTS")
fi

ETCD_VERSION=$("$ETCD_BIN" --version 2>/dev/null | awk 'NR == 1 {print $3}' || true)
SYNOD_REV=${SYNOD_REV:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
FS=$(df -T "$TMP" | awk 'NR==2 {print $2 " on " $1}')

# ---- Paired sections: Client TLS, Auth -------------------------------------

# old_section TITLE: the "## TITLE" section of RESULTS.md, kept when this run
# did not measure it.
old_section() {
  [[ -f "$RESULTS" ]] || return 0
  TITLE="## $1" awk 'index($0, ENVIRON["TITLE"]) == 1 {f = 1; print; next}
    f && /^## / {exit} f {print}' "$RESULTS"
}

# diff_of A B: A - B, signed, no decimals ("n/a" if either is).
diff_of() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a == "n/a" || b == "n/a") print "n/a"; else printf "%+.0f\n", a - b }'
}

# pair_tables OFF ON: the tables of a paired section from the runs named
# OFF<run> (feature off) and ON<run> (on): PROWS (medians and ratios),
# PCOST (what the feature costs each system), PRAW (every round) and
# PERRORS (runs with errors).
pair_tables() {
  local off=$1 on=$2
  PROWS=""
  PCOST=""
  pair_row() {  # pair_row LABEL SHAPE NAME PATH
    local ep sp rp et st rt
    ep=$(median etcd "$off$3" "$4")
    sp=$(median synod "$off$3" "$4")
    et=$(median etcd "$on$3" "$4")
    st=$(median synod "$on$3" "$4")
    rp=$(ratio "$sp" "$ep")
    rt=$(ratio "$st" "$et")
    PROWS+="| $1 | $2 | $ep | $sp | $rp | $et | $st | $rt | $(ratio "$rt" "$rp") |"$'\n'
    if [[ $4 == throughput ]]; then
      PCOST+="| $1 | $2 | $(ratio "$et" "$ep") | $(ratio "$st" "$sp") |"$'\n'
    else
      PCOST+="| $1 | $2 | $(diff_of "$et" "$ep") | $(diff_of "$st" "$sp") |"$'\n'
    fi
  }
  pair_row "put throughput (ops/s)" "10 × 100" put throughput
  pair_row "linearizable range (ops/s)" "10 × 100" range_l throughput
  pair_row "serializable range (ops/s)" "10 × 100" range_s throughput
  pair_row "member CPU per put (µs)" "10 × 100" put_cpu cpu_us
  pair_row "member CPU per linearizable range (µs)" "10 × 100" range_l_cpu cpu_us
  pair_row "member CPU per serializable range (µs)" "10 × 100" range_s_cpu cpu_us
  pair_row "synod-bench CPU per put (µs)" "10 × 100" put_cpu bench_us
  pair_row "synod-bench CPU per linearizable range (µs)" "10 × 100" range_l_cpu bench_us
  pair_row "synod-bench CPU per serializable range (µs)" "10 × 100" range_s_cpu bench_us

  PRAW="| load average (1 min) as the round starts | $(all_rounds etcd load load1) | (same) | $(all_rounds synod load load1) | (same) |"$'\n'
  pair_rawrow() {  # pair_rawrow LABEL NAME PATH
    PRAW+="| $1 | $(all_rounds etcd "$off$2" "$3") | $(all_rounds etcd "$on$2" "$3") | $(all_rounds synod "$off$2" "$3") | $(all_rounds synod "$on$2" "$3") |"$'\n'
  }
  pair_rawrow "put 10×100 (ops/s)" put throughput
  pair_rawrow "put 10×100 p99 (ms)" put latency_ms.p99
  pair_rawrow "linearizable range (ops/s)" range_l throughput
  pair_rawrow "serializable range (ops/s)" range_s throughput
  pair_rawrow "member CPU per put (µs)" put_cpu cpu_us
  pair_rawrow "member CPU per linearizable range (µs)" range_l_cpu cpu_us
  pair_rawrow "member CPU per serializable range (µs)" range_s_cpu cpu_us
  pair_rawrow "synod-bench CPU per put (µs)" put_cpu bench_us
  pair_rawrow "synod-bench CPU per linearizable range (µs)" range_l_cpu bench_us
  pair_rawrow "synod-bench CPU per serializable range (µs)" range_s_cpu bench_us

  PERRORS=$(error_lines "$RAW"/*."$on"*.json "$RAW"/*."$off"*.json)
}

# written_by SHAPE: the paragraph each paired section opens with.
written_by() {
  cat <<EOF
Written by \`SHAPES=$1 bash bench/compare.sh\` (or a full run) on
$(date -u '+%Y-%m-%d %H:%M UTC'): etcd $ETCD_VERSION against Synod at
\`$SYNOD_REV\`, $ROUNDS rounds, load average $LOAD_BEFORE before and
$LOAD_AFTER after the whole run ($(nproc) cores, shared with synod-bench and
everything else on the machine).
EOF
}

# What member and synod-bench CPU per op mean, in both paired sections.
CPU_NOTE="Member CPU per op is the member's user + system time (/proc/PID/stat) over
the run divided by the ops done; synod-bench's CPU per op is its own
(getrusage) over the same run: both run on the same cores, so what the
client spends is taken from the member. Figures are medians over the
rounds."

# pair_flags FLAG: the flags of the runs of a paired section, FLAG the one
# the feature adds.
pair_flags() {
  cat <<EOF
Flags: \`synod-bench --endpoints=EP $1 --key-size=8 --val-size=256\`
plus, for put, \`--conns=10 --clients=100 --key-space=100000 --total=50000
--duration=5s put\`; for range, after \`--seq-keys --key-space=10000
--total=10000 put\`, \`--conns=10 --clients=100 --key-space=10000
--total=100000 --duration=4s range\` (\`--consistency=s\` for serializable).
EOF
}

OLD_TLS=$(old_section "Client TLS")
TLS_SECTION=""
if has_shape tls; then
  pair_tables tp_ t_
  TLS_FAILS=${TLS_FAILS%$'\n'}
  TLS_SECTION=$(cat <<EOF
## Client TLS

$(written_by tls)

In each round, each system runs one fresh member with client TLS and one
without, back to back (TLS first in odd rounds, plaintext first in even
ones), and the same synod-bench runs against both: put, then 10,000 keys
written, then linearizable and serializable range. With TLS the member
serves \`https://\` client URLs with \`--cert-file\` and \`--key-file\` (a
server certificate from a throwaway CA: ECDSA P-256, SAN 127.0.0.1 and
localhost, made with the openssl CLI; no client certificates, peers in
plaintext) and synod-bench dials with \`--cacert\`. Keys 8 B, values 256 B.
$CPU_NOTE
${TLS_WHY:+
**Synod with TLS not measured:** $TLS_WHY
}
| measure | shape | etcd | Synod | Synod/etcd | etcd TLS | Synod TLS | Synod/etcd TLS | TLS ratio / plaintext ratio |
|---|---|---|---|---|---|---|---|---|
${PROWS}
The last column is Synod's standing with TLS relative to without: for
throughput, 1 or more means no worse with TLS; for the member's CPU per op,
1 or less.

What TLS costs each system (throughput: TLS over plaintext; CPU: µs per op
added by TLS):

| measure | shape | etcd | Synod |
|---|---|---|---|
${PCOST}
Every round (a round's plaintext and TLS runs are back to back):

| measure | etcd plaintext | etcd TLS | Synod plaintext | Synod TLS |
|---|---|---|---|---|
${PRAW}
${PERRORS:-No errors: every run completed every op.}${TLS_FAILS:+

Member starts that failed (each was tried once more on new ports):

${TLS_FAILS}}

$(pair_flags "[--cacert=CA]")
EOF
)
fi
NEW_TLS=${TLS_SECTION:-$OLD_TLS}

OLD_AUTH=$(old_section "Auth")
AUTH_SECTION=""
if has_shape auth; then
  pair_tables ap_ a_
  AUTH_FAILS=${AUTH_FAILS%$'\n'}
  AUTH_SECTION=$(cat <<EOF
## Auth

$(written_by auth)

In each round, each system runs one fresh member with auth on and one with
auth off, back to back (auth first in odd rounds, off first in even ones),
and the same synod-bench runs against both: put, then 10,000 keys written,
then linearizable and serializable range. With auth on, etcdctl first adds
the root user and role and a user \`bench\` whose role \`bench\` is granted
READWRITE on \`[0, :)\` (every decimal key synod-bench writes), then runs
\`auth enable\`; both members keep their defaults: simple tokens (TTL
300 s) and bcrypt cost 10. synod-bench authenticates once
(\`--user=bench:bench\`) and sends the token with every call, as clientv3
does, so each op pays the member's token lookup and permission check, not
bcrypt. Plaintext client URLs; keys 8 B, values 256 B.
$CPU_NOTE

| measure | shape | etcd | Synod | Synod/etcd | etcd auth | Synod auth | Synod/etcd auth | auth ratio / no-auth ratio |
|---|---|---|---|---|---|---|---|---|
${PROWS}
The last column is Synod's standing with auth on relative to off: for
throughput, 1 or more means no worse with auth; for the member's CPU per
op, 1 or less.

What auth costs each system (throughput: auth over no auth; CPU: µs per op
added by auth):

| measure | shape | etcd | Synod |
|---|---|---|---|
${PCOST}
Every round (a round's runs with auth off and on are back to back):

| measure | etcd, auth off | etcd, auth on | Synod, auth off | Synod, auth on |
|---|---|---|---|---|
${PRAW}
${PERRORS:-No errors: every run completed every op.}${AUTH_FAILS:+

Member starts or auth set-ups that failed (a start was tried once more on
new ports):

${AUTH_FAILS}}

$(pair_flags "[--user=bench:bench]")
EOF
)
fi
NEW_AUTH=${AUTH_SECTION:-$OLD_AUTH}

# ---- Prefix cache (issue 15) ---------------------------------------------

OLD_PREFIX=$(old_section "Prefix cache")
PREFIX_SECTION=""
if has_shape prefix; then
  PFX_ROWS=""
  PFX_RAW="| load average (1 min) as the round starts | $(all_rounds etcd load load1) | $(all_rounds synod load load1) | (same) |"$'\n'
  # prefix_row LABEL RUN PATH [SCALE [ONLY]]: medians of etcd's pc_RUN,
  # Synod's pc_RUN and pn_RUN, and Synod (cached) / etcd; every round in
  # PFX_RAW. ONLY=pc: a figure only the prefix cache has ("—" elsewhere).
  prefix_row() {
    local e s n er nr r
    s=$(median synod "pc_$2" "$3" "${4:-1}")
    if [[ ${5:-} == pc ]]; then
      PFX_ROWS+="| $1 | — | $s | — | — |"$'\n'
      PFX_RAW+="| $1 | — | $(all_rounds synod "pc_$2" "$3" "${4:-1}") | — |"$'\n'
      return
    fi
    e=$(median etcd "pc_$2" "$3" "${4:-1}")
    n=$(median synod "pn_$2" "$3" "${4:-1}")
    er=$(all_rounds etcd "pc_$2" "$3" "${4:-1}")
    nr=$(all_rounds synod "pn_$2" "$3" "${4:-1}")
    # The ratio to two significant figures when small (2 watchers / 10,002).
    r=$(awk -v s="$s" -v e="$e" 'BEGIN {
      if (s == "n/a" || e == "n/a" || e == 0) { print "n/a"; exit }
      printf (s / e < 0.1) ? "%.2g\n" : "%.2f\n", s / e }')
    PFX_ROWS+="| $1 | $e | $s | $r | $n |"$'\n'
    PFX_RAW+="| $1 | $er | $(all_rounds synod "pc_$2" "$3" "${4:-1}") | $nr |"$'\n'
  }
  prefix_row "member watchers (upstream watches), 10,000 idle watchers" m member_watchers
  prefix_row "member CPU per second at 100 puts/s (ms)" m member_cpu_ms_s
  prefix_row "proxy CPU per second at 100 puts/s (ms)" m proxy_cpu_ms_s
  prefix_row "proxy RSS at start (MiB)" m rss0_kb 0.0009765625
  prefix_row "keys the proxy caches after each key is read once" m cached_keys
  prefix_row "proxy RSS with them (MiB)" m rss_keys_kb 0.0009765625
  prefix_row "proxy memory per cached key (B)" m per_key_b
  prefix_row "bytes per key by the prefix cache's own count (B)" m counted_per_key_b 1 pc
  prefix_row "proxy RSS with 10,000 idle watchers (MiB)" m rss_watch_kb 0.0009765625
  prefix_row "proxy memory per watcher (B)" m per_watcher_b
  prefix_row "event latency p50 (ms)" watch latency_ms.p50
  prefix_row "event latency p99 (ms)" watch latency_ms.p99
  prefix_row "events received (of 2,000 puts)" watch ok
  prefix_row "reads of each key once through the proxy, 10 × 100 (ops/s)" read throughput
  prefix_row "load average (1 min) at the end of the CPU window" m load1
  PFX_ERRORS=$(error_lines "$RAW"/*.pc_*.json "$RAW"/*.pn_*.json)
  PREFIX_FAILS=${PREFIX_FAILS%$'\n'}
  PREFIX_SECTION=$(cat <<EOS
## Prefix cache (issue 15)

$(written_by prefix)

10,000 services, each reading and watching its own key under \`/cfg/\`,
through a proxy in front of one member, and 100 puts/s to those keys:
synod-proxy with \`--cache-prefixes=/cfg/\` against etcd's \`etcd grpc-proxy
start\` (in front of an etcd member), and synod-proxy without the flag
(today's per-range watches) for reference. In each round, on a fresh member
and proxy: the proxy's RSS once started; 10,000 keys of 256 B written on the
member, each then read once through the proxy (that fills etcd grpc-proxy's
cache, at most 2,048 entries, and synod-proxy's range cache, at most 1,024;
the prefix cache holds every key under the prefix already), RSS again and
the proxy's count of cached keys (\`synod_proxy_prefix_cache_keys\`,
\`synod_proxy_cache_entries\`; for etcd grpc-proxy 2,048, its LRU's size:
etcd 3.4.23's \`etcd_grpc_proxy_cache_keys_total\` always reads 0); then
\`synod-bench --watch-keys=distinct --watch-read\`: each of 10,000 watchers
reads its key through the proxy and watches it from the revision after
that read (100 streams of 100 over 10 connections), held idle 3 s (RSS and
the member's \`etcd_debugging_mvcc_watcher_total\` 1.5 s into that), then
100 puts/s to those keys for 20 s through the proxy (each put is one event
for one watcher). Member and proxy CPU per second are user + system time
(/proc/PID/stat) over 10 s of the puts, from 2 s into them. Memory per
cached key is the RSS growth over the keys written and read, divided by the
keys the proxy says it caches (for the prefix cache, that growth also holds
the window of those 10,000 writes, and its own count of the bytes it holds,
\`synod_proxy_prefix_cache_bytes\`, is shown too); memory per watcher is the RSS growth
over the watchers, divided by 10,000. Figures are medians over the rounds.
The member's watchers under synod-proxy include one for the range cache:
the proxy's readiness read (key \`00000000\`, outside \`/cfg/\`) puts that
key in it. Without the flag, synod-proxy's range cache keeps at most 1,024
ranges, but the upstream watch of a range it evicts lingers 30 s
(\`--watch-idle-linger\`): right after the 10,000 reads that proxy holds
10,000 upstream watches, each a watch stream of its own on the member, so
its memory per cached key counts them, and its watchers then find their
ranges already watched.
${PREFIX_WHY:+
**synod-proxy not measured:** $PREFIX_WHY
}
| measure | etcd grpc-proxy | synod-proxy --cache-prefixes=/cfg/ | Synod/etcd | synod-proxy without it |
|---|---|---|---|---|
${PFX_ROWS}
Every round:

| measure | etcd grpc-proxy | synod-proxy --cache-prefixes=/cfg/ | synod-proxy without it |
|---|---|---|---|
${PFX_RAW}
${PFX_ERRORS:-No errors: every run completed every op.}${PREFIX_FAILS:+

Proxy starts that failed:

${PREFIX_FAILS}}

Flags: \`synod-bench --key-prefix=/cfg/ --key-size=8 --val-size=256\` plus
\`--endpoints=MEMBER --seq-keys --key-space=10000 --conns=10 --clients=100
--total=10000 put\`; \`--endpoints=PROXY --seq-keys --key-space=10000
--conns=10 --clients=100 --total=10000 range\`; \`--endpoints=PROXY
--watch-keys=distinct --watch-read --watch-streams=100
--watch-per-stream=100 --watch-idle=3s --conns=10 --clients=10 --rate=100
--total=2000 --duration=20s --timeout=30s watch-latency\`.
EOS
)
fi
NEW_PREFIX=${PREFIX_SECTION:-$OLD_PREFIX}

# replace_section TITLE TEXT: the "## TITLE" section of RESULTS.md replaced
# by TEXT where it stands (or, when it has none, TEXT added before "## What
# bounds us", or at the end), the rest left as it is.
replace_section() {
  if [[ ! -f "$RESULTS" ]]; then
    echo "$2" >"$RESULTS"
    return
  fi
  TITLE="## $1" SECT=$2 awk '
    index($0, ENVIRON["TITLE"]) == 1 {
      skip = 1
      if (!done) {print ENVIRON["SECT"]; print ""; done = 1}
      next
    }
    skip && /^## / {skip = 0}
    skip {next}
    /^## What bounds us/ && !done {print ENVIRON["SECT"]; print ""; done = 1}
    {print}
    END {if (!done) {print ""; print ENVIRON["SECT"]}}' "$RESULTS" >"$RESULTS.new"
  mv "$RESULTS.new" "$RESULTS"
}

if ! has_shape 1 && ! has_shape 3 && ! has_shape proxy; then
  # Only shapes with sections of their own ran: replace those in place.
  if has_shape tls; then replace_section "Client TLS" "$NEW_TLS"; fi
  if has_shape auth; then replace_section "Auth" "$NEW_AUTH"; fi
  if has_shape prefix; then replace_section "Prefix cache" "$NEW_PREFIX"; fi
  log "wrote the $SHAPES section(s) of $RESULTS (${ELAPSED} s)"
  exit 0
fi

{
  cat <<EOF
# Synod vs etcd, side by side

Written by \`bash bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in ${ELAPSED} s.

- Machine: $(nproc) cores ($CPU); load average $LOAD_BEFORE before, $LOAD_AFTER after.
  A load above ~1 as a round starts means other work shared the cores: read
  the medians with the per-round figures below.
- etcd $ETCD_VERSION (Debian \`etcd-server\`) against Synod at \`$SYNOD_REV\`, on 127.0.0.1,
  data dirs on the same disk ($FS): one member; three members (same
  \`--initial-cluster\` shape and flags for both, \`--heartbeat-interval=100
  --election-timeout=1000\`); and one member behind a proxy (\`synod-proxy\`
  against \`etcd grpc-proxy start\`, both with \`--endpoints\` and
  \`--listen-addr\`). synod-bench, the members and the proxy all share the
  same cores, as does every other process on the machine.
- $ROUNDS rounds, the systems alternating which goes first; each round starts
  a fresh member. Figures are medians over the rounds. Keys are 8 B, values
  256 B of random bytes (incompressible). Shapes are connections × clients
  (concurrent requests).
- Latency percentiles are nearest-rank over synod-bench's log-bucketed
  histogram (within 0.8%; see \`synod-bench --help\`).

| measure | shape | etcd | Synod | Synod/etcd | target | met |
|---|---|---|---|---|---|---|
${ROWS}
The etcd data dir includes its WAL, whose 64 MiB segments are preallocated.
With 3 members, the single client writes to the leader (found with
\`etcdctl endpoint status\`); the 100 clients use connections spread over
the three members, so two thirds of their puts are forwarded to the leader.

## Every round

| measure | etcd (rounds 1 / 2 / ...) | Synod (rounds 1 / 2 / ...) |
|---|---|---|
${RAWROWS}
## Errors seen

${ERRORS:-None: every run completed every op without an error.}

## How each row is run

\`synod-bench --endpoints=EP --key-size=8 --val-size=256\` plus:

| row | flags |
|---|---|
| single-client put | \`--conns=1 --clients=1 --key-space=100000 --total=4000 --duration=4s put\` |
| put 10 × 100 | \`--conns=10 --clients=100 --key-space=100000 --total=50000 --duration=5s put\` |
| put 100 × 1000 | \`--conns=100 --clients=1000 --key-space=100000 --total=50000 --duration=5s put\` |
| range (after 10,000 keys are written) | \`--conns=10 --clients=100 --key-space=10000 --total=100000 --duration=4s range\` (\`--consistency=s\` for serializable) |
| watch-latency | \`--watchers=100 --watch-streams=10 --conns=10 --clients=10 --rate=200 --total=600 watch-latency\`: latency from a put being sent to each watcher receiving its event |
| RSS, data dir | fresh member; \`--conns=10 --clients=100 --seq-keys --key-space=100000 --total=100000 put\`; 2 s later, VmRSS from /proc/PID/status and \`du -sk\` of the data dir |
| 3 members: single-client put | \`--endpoints=LEADER --conns=1 --clients=1 --key-space=100000 --total=3000 --duration=4s put\` |
| 3 members: put 10 × 100 | \`--endpoints=M1,M2,M3 --conns=10 --clients=100 --key-space=100000 --total=50000 --duration=5s put\` |
| 3 members: linearizable range | after 10,000 keys: \`--endpoints=M1,M2,M3 --conns=10 --clients=100 --key-space=10000 --duration=4s range\` |
| proxy: cached serializable range | 100 keys written on the member, read once through the proxy, then \`--endpoints=PROXY --conns=10 --clients=100 --key-space=100 --duration=5s --consistency=s range\` |
| proxy: fan-out, memory per idle watcher | \`--endpoints=PROXY --watch-streams=100 --watch-per-stream=100 --watch-idle=3s --conns=10 --clients=10 --rate=2 --total=6 watch\`: proxy VmRSS 1 s before the run and 1.5 s into the idle hold (after every watcher is created); (idle − before) / 10,000; latency from each put being sent to each of the 10,000 watchers receiving its event |

EOF
  if [[ -n "$NEW_TLS" ]]; then
    echo "$NEW_TLS"
    echo
  fi
  if [[ -n "$NEW_AUTH" ]]; then
    echo "$NEW_AUTH"
    echo
  fi
  if [[ -n "$NEW_PREFIX" ]]; then
    echo "$NEW_PREFIX"
    echo
  fi
  if [[ -n "$NOTES" ]]; then
    echo "$NOTES"
  else
    cat <<'EOF'
## What bounds us

(Not yet written for this run.)
EOF
  fi
} >"$RESULTS"
log "wrote $RESULTS (${ELAPSED} s)"
