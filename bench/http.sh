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
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
READY_TIMEOUT=${READY_TIMEOUT:-30}

source bench/lib.sh
need_tools wrk:wrk python3:python3

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

WRK_ARGS=

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

declare -A IDLE PEAK
bench_watchdog() { # NAME BIN ENV...
    local name=$1 peak
    start_watchdog "$@"
    IDLE[$name]=$(kb "$WD_PID" VmRSS)
    record "$name" "$(wrk_run "$name" "http://127.0.0.1:$WD_PORT/")"
    peak=$(kb "$WD_PID" VmHWM)
    [ "${PEAK[$name]:-0}" -ge "$peak" ] || PEAK[$name]=$peak
    kill -0 "$WD_PID" 2>/dev/null || die "$name died during the run"
    stop "$WD_PID"
}

of_watchdog_check

log "wrk -t2 -c$CONNS -d$DURATION (warm-up $WARMUP), loopback, $ROUNDS rounds (median reported)"
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    # (a) direct
    port=$(free_port)
    "$UPSTREAM" --port "$port" > "$WORK/direct.log" 2>&1 &
    up_pid=$!; PIDS+=("$up_pid")
    wait_ok "http://127.0.0.1:$port/" "$up_pid" || { tail -n 20 "$WORK/direct.log" >&2; die "upstream not ready"; }
    record direct "$(wrk_run direct "http://127.0.0.1:$port/")"
    stop "$up_pid"
    # (b) fwatchdog
    bench_watchdog fwatchdog "$FWATCHDOG" metrics_port="$(free_port)" bind_address=127.0.0.1
    # (c) of-watchdog
    if [ -z "$OF_NOTE" ]; then
        port_free 8081 || sleep 1
        bench_watchdog of-watchdog "$(realpath "$OF_WATCHDOG")"
    fi
done
finalize direct fwatchdog of-watchdog

# --- report ---------------------------------------------------------------------------------------
echo
echo "HTTP mode, wrk -t2 -c$CONNS -d$DURATION, GET / -> 'Hello' (loopback), median of $ROUNDS rounds"
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
echo "RSS is the watchdog process only (VmRSS when idle after start-up, highest VmHWM of the runs)."
echo
echo "binary sizes (bytes):"
echo "  fwatchdog   $(stat -c %s "$FWATCHDOG")  $FWATCHDOG"
[ -x "$OF_WATCHDOG" ] && echo "  of-watchdog $(stat -c %s "$OF_WATCHDOG")  $(realpath "$OF_WATCHDOG")"
echo "  upstream    $(stat -c %s "$UPSTREAM")  $UPSTREAM"
exit 0
