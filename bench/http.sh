#!/usr/bin/env bash
# HTTP-mode benchmark, one run, loopback only:
#   (a) wrk straight to the upstream (test-upstream)
#   (b) wrk through fwatchdog mode=http
#   (c) wrk through the real of-watchdog mode=http (../shared/tools/of-watchdog), if present
# Prints req/s, p50, p99, ratios against direct, watchdog idle/peak RSS and binary sizes.
#
# Env: DURATION (wrk duration, default 10s), WARMUP (default 2s), CONNS (default 50),
#      FWATCHDOG, UPSTREAM, OF_WATCHDOG (binaries), READY_TIMEOUT (seconds, default 30).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
READY_TIMEOUT=${READY_TIMEOUT:-30}

log() { printf '==> %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $*"
    fi
}
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    as_root apt-get update
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "${need[@]}"
fi

# --- binaries --------------------------------------------------------------------------------
MUSL_FW=target/x86_64-unknown-linux-musl/release/fwatchdog
if [ -z "${FWATCHDOG:-}" ]; then
    if [ -x "$MUSL_FW" ]; then FWATCHDOG=$MUSL_FW; else FWATCHDOG=target/release/fwatchdog; fi
fi
UPSTREAM=${UPSTREAM:-target/release/test-upstream}
OF_WATCHDOG=${OF_WATCHDOG:-../shared/tools/of-watchdog}
if [ ! -x "$FWATCHDOG" ] || [ ! -x "$UPSTREAM" ]; then
    log "building release binaries"
    flock /tmp/cargo.lock cargo build --release -p watchdog -p e2e
fi
[ -x "$FWATCHDOG" ] || die "fwatchdog not found: $FWATCHDOG"
[ -x "$UPSTREAM" ] || die "upstream not found: $UPSTREAM"
FWATCHDOG=$(realpath "$FWATCHDOG"); UPSTREAM=$(realpath "$UPSTREAM")

# --- helpers ---------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-http.XXXXXX")
PIDS=()

descendants() { # all live descendants of $1 (depth first)
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}
stop() { # kill a process we started and everything below it
    local p=$1 all
    kill -0 "$p" 2>/dev/null || return 0
    all="$(descendants "$p") $p"
    # shellcheck disable=SC2086
    kill -KILL $all 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do stop "$p"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
port_free() { # can this port be bound on all interfaces (of-watchdog's hard-coded 8081)?
    python3 -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try: s.bind(("", int(sys.argv[1])))
except OSError: sys.exit(1)' "$1"
}
# wait_ok URL PID: poll until GET URL answers 200, fail if PID dies or after READY_TIMEOUT
wait_ok() {
    python3 - "$1" "$2" "$READY_TIMEOUT" <<'EOF'
import os, sys, time, urllib.request
url, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.time() + timeout
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"process {pid} exited while waiting for {url}")
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.05)
sys.exit(f"timeout waiting for 200 from {url}")
EOF
}
kb() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status 2>/dev/null || true; }

# wrk_run NAME URL: warm up, measure; writes $WORK/NAME.wrk and prints "rps p50ms p99ms errs"
wrk_run() {
    local name=$1 url=$2 out=$WORK/$1.wrk
    wrk -t2 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$url" > "$out"
    awk '
        function ms(v) {
            if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000; if (v ~ /s$/) return v * 1000; return v
        }
        /^Requests\/sec:/ {rps = $2}
        $1 == "50%" {p50 = ms($2)}
        $1 == "99%" {p99 = ms($2)}
        /Non-2xx or 3xx/ {errs += $NF}
        /Socket errors/ {gsub(/,/, ""); errs += $4 + $6 + $8 + $10}
        END {printf "%s %.3f %.3f %d\n", rps, p50, p99, errs}
    ' "$out"
}

declare -A RPS P50 P99 ERRS IDLE PEAK
record() { # NAME "rps p50 p99 errs"
    read -r "RPS[$1]" "P50[$1]" "P99[$1]" "ERRS[$1]" <<<"$2"
    log "$1: ${RPS[$1]} req/s, p50 ${P50[$1]} ms, p99 ${P99[$1]} ms, errors ${ERRS[$1]}"
}

# start_watchdog NAME BIN ENV...: starts BIN with the env (plus the http-mode env), waits ready
start_watchdog() {
    local name=$1 bin=$2; shift 2
    local up wp
    up=$(free_port); wp=$(free_port)
    mkdir -p "$WORK/$name.tmp"
    env mode=http fprocess="$UPSTREAM --port $up" upstream_url="http://127.0.0.1:$up" \
        port="$wp" TMPDIR="$WORK/$name.tmp" "$@" "$bin" > "$WORK/$name.log" 2>&1 &
    WD_PID=$!; PIDS+=("$WD_PID"); WD_PORT=$wp
    if ! wait_ok "http://127.0.0.1:$wp/_/health" "$WD_PID" || ! wait_ok "http://127.0.0.1:$wp/" "$WD_PID"; then
        tail -n 20 "$WORK/$name.log" >&2; die "$name did not become ready"
    fi
}

bench_watchdog() { # NAME BIN ENV...
    local name=$1
    start_watchdog "$@"
    IDLE[$name]=$(kb "$WD_PID" VmRSS)
    record "$name" "$(wrk_run "$name" "http://127.0.0.1:$WD_PORT/")"
    PEAK[$name]=$(kb "$WD_PID" VmHWM)
    kill -0 "$WD_PID" 2>/dev/null || die "$name died during the run"
    stop "$WD_PID"
}

# --- (a) direct --------------------------------------------------------------------------------
log "wrk -t2 -c$CONNS -d$DURATION (warm-up $WARMUP), loopback"
port=$(free_port)
"$UPSTREAM" --port "$port" > "$WORK/direct.log" 2>&1 &
up_pid=$!; PIDS+=("$up_pid")
wait_ok "http://127.0.0.1:$port/" "$up_pid" || { tail -n 20 "$WORK/direct.log" >&2; die "upstream not ready"; }
record direct "$(wrk_run direct "http://127.0.0.1:$port/")"
stop "$up_pid"

# --- (b) fwatchdog -------------------------------------------------------------------------------
bench_watchdog fwatchdog "$FWATCHDOG" metrics_port="$(free_port)" bind_address=127.0.0.1

# --- (c) of-watchdog -------------------------------------------------------------------------------
OF_NOTE=
if [ ! -x "$OF_WATCHDOG" ]; then
    OF_NOTE="skipped: $OF_WATCHDOG not found (set OF_WATCHDOG)"
elif ! port_free 8081; then
    OF_NOTE="skipped: port 8081 (of-watchdog's hard-coded metrics port) is in use"
else
    bench_watchdog of-watchdog "$(realpath "$OF_WATCHDOG")"
fi
[ -z "$OF_NOTE" ] || log "of-watchdog $OF_NOTE"

# --- report ---------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "HTTP mode, wrk -t2 -c$CONNS -d$DURATION, GET / -> 'Hello' (loopback)"
printf '%-12s %12s %10s %10s %8s %10s %10s %10s\n' target req/s p50_ms p99_ms errors vs_direct idle_KiB peak_KiB
for n in direct fwatchdog of-watchdog; do
    [ -n "${RPS[$n]:-}" ] || continue
    printf '%-12s %12s %10s %10s %8s %10s %10s %10s\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" \
        "${ERRS[$n]}" "$(ratio "${RPS[$n]}" "${RPS[direct]}")" "${IDLE[$n]:--}" "${PEAK[$n]:--}"
done
[ -z "$OF_NOTE" ] || echo "of-watchdog: $OF_NOTE"
echo
echo "ratio req/s fwatchdog/direct:   $(ratio "${RPS[fwatchdog]}" "${RPS[direct]}")"
[ -n "${RPS[of-watchdog]:-}" ] && echo "ratio req/s of-watchdog/direct: $(ratio "${RPS[of-watchdog]}" "${RPS[direct]}")"
[ -n "${RPS[of-watchdog]:-}" ] && echo "ratio req/s fwatchdog/of-watchdog: $(ratio "${RPS[fwatchdog]}" "${RPS[of-watchdog]}")"
echo "RSS is the watchdog process only (VmRSS when idle after start-up, VmHWM after the run)."
echo
echo "binary sizes (bytes):"
echo "  fwatchdog   $(stat -c %s "$FWATCHDOG")  $FWATCHDOG"
[ -x "$OF_WATCHDOG" ] && echo "  of-watchdog $(stat -c %s "$OF_WATCHDOG")  $(realpath "$OF_WATCHDOG")"
echo "  upstream    $(stat -c %s "$UPSTREAM")  $UPSTREAM"
exit 0
