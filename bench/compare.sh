#!/usr/bin/env bash
# Synod and etcd side by side on this machine, driven by the same tool
# (synod-bench), and bench/RESULTS.md written from the medians.
#
#   bash bench/compare.sh
#
# Shape: one member each, 127.0.0.1 only, free ports picked here, both data
# dirs under one temp dir (same disk). Each round starts a fresh member of
# each system and runs every workload on it; the order of the systems
# alternates between rounds. Every synod-bench run is bounded by a count, a
# --duration and `timeout`, so the whole script takes about 5 minutes on
# 2 cores.
#
# Environment (all optional):
#   SYNOD_BIN        synod binary        (default: build/backend/synod)
#   ETCD_BIN         etcd binary         (default: /usr/bin/etcd)
#   SYNOD_BENCH_BIN  synod-bench binary  (default: build/bench/synod-bench)
#   ROUNDS           rounds per system   (default: 3; at least 3 for RESULTS)
#   RESULTS          output file         (default: bench/RESULTS.md)
#   COMPARE_TMPDIR   parent of the temp dir (default: $TMPDIR or /tmp)
#   SKIP_BUILD=1     do not set up or build synod and synod-bench first
#   JOBS             ninja -j for that build (default: nproc)
#   KEEP_TMP=1       keep the temp dir (data dirs, logs, raw JSON)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SYNOD_BIN=${SYNOD_BIN:-$ROOT/build/backend/synod}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
BENCH_BIN=${SYNOD_BENCH_BIN:-$ROOT/build/bench/synod-bench}
ROUNDS=${ROUNDS:-3}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}

log() { echo "compare.sh: $*" >&2; }
die() { log "$*"; exit 1; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  # A fresh machine: the packages (etcd-server among them) and a build.
  if [[ ! -f "$ROOT/build/build.ninja" || ! -x "$ETCD_BIN" ]]; then
    bash "$ROOT/scripts/setup.sh"
  fi
  if [[ ! -f "$ROOT/build/build.ninja" ]]; then
    cmake -S "$ROOT" -B "$ROOT/build" -G Ninja \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  ninja -C "$ROOT/build" -j"${JOBS:-$(nproc)}" synod synod-bench >/dev/null
fi
[[ -x "$SYNOD_BIN" ]] || die "no synod at $SYNOD_BIN (set SYNOD_BIN)"
[[ -x "$ETCD_BIN" ]] || die "no etcd at $ETCD_BIN (apt-get install etcd-server, or set ETCD_BIN)"
[[ -x "$BENCH_BIN" ]] || die "no synod-bench at $BENCH_BIN (set SYNOD_BENCH_BIN)"

TMP=$(mktemp -d "${COMPARE_TMPDIR:-${TMPDIR:-/tmp}}/synod-compare.XXXXXX")
RAW=$TMP/raw
mkdir -p "$RAW"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# A TCP port on 127.0.0.1 that nothing listens on, and not already handed out.
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 40000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# start_server SYSTEM DIR: starts a fresh one-member SYSTEM (etcd or synod)
# with its data in DIR; sets SERVER_PID and EP (host:port).
start_server() {
  local system=$1 dir=$2 cport pport
  cport=$(free_port)
  pport=$(free_port)
  EP=127.0.0.1:$cport
  local common=(--name bench --data-dir "$dir/data"
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP"
    --listen-peer-urls "http://127.0.0.1:$pport"
    --initial-advertise-peer-urls "http://127.0.0.1:$pport"
    --initial-cluster "bench=http://127.0.0.1:$pport")
  mkdir -p "$dir"
  if [[ $system == etcd ]]; then
    "$ETCD_BIN" "${common[@]}" --logger=zap --log-level=error \
      >"$dir/server.log" 2>&1 &
  else
    "$SYNOD_BIN" "${common[@]}" --log-level=warn >"$dir/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 30); do
    if "$BENCH_BIN" --endpoints="$EP" --total=1 --timeout=1s --noprogress \
        range >/dev/null 2>&1; then
      return
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || die "$system exited at start: $(tail -5 "$dir/server.log")"
    sleep 0.5
  done
  die "$system did not answer on $EP within 15 s"
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# bench NAME SYSTEM ROUND ARGS...: one synod-bench run, JSON kept in $RAW.
bench() {
  local name=$1 system=$2 round=$3
  shift 3
  local out=$RAW/$system.$name.$round.json
  if ! timeout 120 "$BENCH_BIN" --endpoints="$EP" --json --noprogress "$@" \
      >"$out" 2>"$out.err"; then
    log "$system $name round $round failed: $(tail -2 "$out.err")"
    echo '{"failed":true}' >"$out"
  fi
}

KV=(--key-size=8 --val-size=256)
run_round() {
  local system=$1 round=$2 dir=$TMP/$1.$2
  log "round $round: $system"
  echo "{\"load1\":$(cut -d' ' -f1 /proc/loadavg)}" >"$RAW/$system.load.$round.json"
  start_server "$system" "$dir"
  bench put1 "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=1 --clients=1 --total=4000 --duration=5s put
  bench put10x100 "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=10 --clients=100 --total=50000 --duration=6s put
  bench put100x1000 "$system" "$round" "${KV[@]}" --key-space=100000 \
    --conns=100 --clients=1000 --total=50000 --duration=6s put
  # Range reads need keys: 10,000 of them, written once, not measured.
  bench preload "$system" "$round" "${KV[@]}" --key-space=10000 --seq-keys \
    --conns=10 --clients=100 --total=10000 --duration=20s put
  bench range_l "$system" "$round" "${KV[@]}" --key-space=10000 \
    --conns=10 --clients=100 --total=100000 --duration=5s range
  bench range_s "$system" "$round" "${KV[@]}" --key-space=10000 \
    --conns=10 --clients=100 --total=100000 --duration=5s --consistency=s range
  bench watch "$system" "$round" --key-size=8 --val-size=256 \
    --watchers=100 --watch-streams=10 --conns=10 --clients=10 \
    --rate=200 --total=600 --duration=10s watch-latency
  stop_server

  # Footprint: a fresh member, 100k keys of 256 B, then RSS and data dir.
  dir=$TMP/$system.$round.mem
  start_server "$system" "$dir"
  bench load100k "$system" "$round" "${KV[@]}" --key-space=100000 --seq-keys \
    --conns=10 --clients=100 --total=100000 --duration=60s put
  sleep 2
  local rss_kb du_kb
  rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")
  du_kb=$(du -sk "$dir/data" | cut -f1)
  echo "{\"rss_kb\":$rss_kb,\"du_kb\":$du_kb}" >"$RAW/$system.mem.$round.json"
  stop_server
  rm -rf "$TMP/$system.$round" "$dir"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
START=$(date +%s)
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order="etcd synod"; else order="synod etcd"; fi
  for system in $order; do run_round "$system" "$round"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START))

# ---- Report -------------------------------------------------------------

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

# Any run with errors, or that failed outright.
ERRORS=""
for f in "$RAW"/*.json; do
  n=$(field "$f" errors)
  if grep -q '"failed":true' "$f" || [[ -n "$n" && "$n" != 0 ]]; then
    ERRORS+="- \`$(basename "$f" .json)\`: ${n:-run failed} errors $(grep -o '"error_counts":{.*}' "$f" | cut -c16- | head -c 300)"$'\n'
  fi
done

# The hand-written analysis below "## What bounds us" survives a rerun.
NOTES=""
if [[ -f "$RESULTS" ]]; then
  NOTES=$(sed -n '/^## What bounds us/,$p' "$RESULTS")
fi

ETCD_VERSION=$("$ETCD_BIN" --version 2>/dev/null | head -1 | awk '{print $3}')
SYNOD_REV=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)
CPU=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
FS=$(df -T "$TMP" | awk 'NR==2 {print $2 " on " $1}')

{
  cat <<EOF
# Synod vs etcd, side by side

Written by \`bash bench/compare.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC') in ${ELAPSED} s.

- Machine: $(nproc) cores ($CPU); load average $LOAD_BEFORE before, $LOAD_AFTER after.
  A load above ~1 as a round starts means other work shared the cores: read
  the medians with the per-round figures below.
- etcd $ETCD_VERSION (Debian \`etcd-server\`) against Synod at \`$SYNOD_REV\`, one member
  each on 127.0.0.1, data dirs on the same disk ($FS). synod-bench runs on
  the same cores as the member, as does every other process on the machine.
- $ROUNDS rounds, the systems alternating which goes first; each round starts
  a fresh member. Figures are medians over the rounds. Keys are 8 B, values
  256 B of random bytes (incompressible). Shapes are connections × clients
  (concurrent requests).
- Latency percentiles are nearest-rank over synod-bench's log-bucketed
  histogram (within 0.8%; see \`synod-bench --help\`).

| measure | shape | etcd | Synod | Synod/etcd | target | met |
|---|---|---|---|---|---|---|
${ROWS}| all rows, 3 members | 3 × 1 | pending Raft | pending Raft | — | | |
| cached-read throughput, \`synod-proxy\` vs \`etcd grpc-proxy\` | | pending synod-proxy | pending synod-proxy | — | | |
| fan-out latency and memory per idle watcher at 10k watchers | | pending synod-proxy | pending synod-proxy | — | ≤ 0.5 | |

Synod has no Raft yet, so a 3-member etcd has nothing comparable to run
against; those rows fill in when the cluster lands. The etcd data dir
includes its WAL, whose 64 MiB segments are preallocated.

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
| single-client put | \`--conns=1 --clients=1 --key-space=100000 --total=4000 --duration=5s put\` |
| put 10 × 100 | \`--conns=10 --clients=100 --key-space=100000 --total=50000 --duration=6s put\` |
| put 100 × 1000 | \`--conns=100 --clients=1000 --key-space=100000 --total=50000 --duration=6s put\` |
| range (after 10,000 keys are written) | \`--conns=10 --clients=100 --key-space=10000 --total=100000 --duration=5s range\` (\`--consistency=s\` for serializable) |
| watch-latency | \`--watchers=100 --watch-streams=10 --conns=10 --clients=10 --rate=200 --total=600 watch-latency\`: latency from a put being sent to each watcher receiving its event |
| RSS, data dir | fresh member; \`--conns=10 --clients=100 --seq-keys --key-space=100000 --total=100000 put\`; 2 s later, VmRSS from /proc/PID/status and \`du -sk\` of the data dir |

EOF
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
