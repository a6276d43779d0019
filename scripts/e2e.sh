#!/usr/bin/env bash
# Runs etcd 3.4's own end-to-end suite (tests/e2e from Debian's
# golang-etcd-server-dev) against synod: the suite starts any binary named
# `etcd` in its -bin-dir, so that directory holds synod under that name and
# Debian's etcdctl.
#
#   bash scripts/e2e.sh                  # issue 12's TLS set (default regex)
#   bash scripts/e2e.sh 'TestCtlV3Put'   # any -test.run regex
#   E2E_ETCD=/usr/bin/etcd bash scripts/e2e.sh   # the yardstick: real etcd
#
# Env: E2E_EXCLUDE, a regex of test names to leave out of those the regex
# selects (Go 1.19's test binary has no -test.skip); BUILD_DIR (default
# build) holds synod; E2E_TIMEOUT bounds the run
# (default 40m). Prints one line per test and a summary; exits non-zero if
# any test failed. The suite uses fixed ports from 20000 up, so two runs on
# one machine would collide: a run holds /tmp/synod-e2e.lock and a second
# waits for it. Installs golang-go and golang-etcd-server-dev when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
REGEX=${1:-'^TestCtlV3[A-Za-z]*(NoTLS|ClientTLS|PeerTLS|ClientAutoTLS)$|^TestCtlV3GetRevokedCRL$|^TestEtcdPeerCNAuth$|^TestEtcdPeerNameAuth$|^TestV3MetricsSecure$'}
E2E_TIMEOUT=${E2E_TIMEOUT:-40m}
ETCD_SRC=/usr/share/gocode/src/go.etcd.io/etcd

need=()
for p in golang-go golang-etcd-server-dev etcd-client; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null
fi

exec 9>/tmp/synod-e2e.lock
if ! flock -n 9; then
  echo "e2e: another run holds /tmp/synod-e2e.lock (the suite's fixed ports); waiting"
  flock 9
fi

E2E_DIR=$BUILD_DIR/e2e
mkdir -p "$E2E_DIR/bin"
if [ ! -x "$E2E_DIR/e2e.test" ]; then
  echo "e2e: building etcd's tests/e2e with Debian's Go"
  (cd "$ETCD_SRC/tests/e2e" &&
   GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$E2E_DIR/gocache" \
     go test -c -o "$E2E_DIR/e2e.test" .)
fi
SERVER=${E2E_ETCD:-$BUILD_DIR/backend/synod}
[ -x "$SERVER" ] || { echo "e2e: $SERVER not built (cmake --build $BUILD_DIR --target synod)"; exit 1; }
ln -sf "$SERVER" "$E2E_DIR/bin/etcd"
ln -sf "$(command -v etcdctl)" "$E2E_DIR/bin/etcdctl"

# The suite reads its certificates from -cert-dir, its JWT keys as
# ../../integration/fixtures/... (relative to tests/e2e), and writes data
# dirs under TMPDIR; run it from a scratch tests/e2e whose ../../integration
# is Debian's.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/tests/e2e"
ln -s "$ETCD_SRC/integration" "$work/integration"

if [ -n "${E2E_EXCLUDE:-}" ]; then
  # The selected tests, by name, minus the excluded ones, as one anchored
  # alternation.
  names=$("$E2E_DIR/e2e.test" -test.list "$REGEX" | grep -E '^Test' | grep -Ev "$E2E_EXCLUDE" || true)
  [ -n "$names" ] || { echo "e2e: no test left after E2E_EXCLUDE"; exit 1; }
  echo "e2e: $(echo "$names" | wc -l) tests after excluding '$E2E_EXCLUDE'"
  REGEX="^($(echo "$names" | paste -sd'|'))\$"
fi
echo "e2e: $(basename "$(readlink -f "$SERVER")") against -test.run '$REGEX'"
set +e
(cd "$work/tests/e2e" && TMPDIR=$work timeout --signal=INT "$E2E_TIMEOUT" "$E2E_DIR/e2e.test" \
   -test.run "$REGEX" -test.v -test.timeout "$E2E_TIMEOUT" \
   -bin-dir "$E2E_DIR/bin" -cert-dir "$ETCD_SRC/integration/fixtures") >"$E2E_DIR/last.log" 2>&1
rc=$?
set -e
grep -E '^(--- |ok|FAIL|PASS)' "$E2E_DIR/last.log" || true
pass=$(grep -c '^--- PASS' "$E2E_DIR/last.log" || true)
fail=$(grep -c '^--- FAIL' "$E2E_DIR/last.log" || true)
skip=$(grep -c '^--- SKIP' "$E2E_DIR/last.log" || true)
echo "e2e: $pass passed, $fail failed, $skip skipped (log: $E2E_DIR/last.log)"
exit $rc
