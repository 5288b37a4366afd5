#!/usr/bin/env bash
# Gateway benchmark, one run, loopback only (spec/gateway.md §7, §10.3, §15):
#   (a) direct:     wrk straight to the replica's watchdog (fwatchdog mode=http + test-upstream),
#                   the replica being the one our gateway started for function `bench`
#   (b) gateway:    wrk through our gateway, GET /function/bench (embedded local runtime)
#   (c) of-gateway: wrk through the OpenFaaS CE gateway (../shared/tools/of-gateway), if present,
#                   GET /function/bench with functions_provider_url = that same replica's watchdog
#                   (the CE gateway has no local runtime and no direct mode, so this times its own
#                   hop: it forwards the whole path, /function/bench, which test-upstream answers
#                   like /)
# Then: scale from zero (time to first byte of one call to a function at 0 replicas, SFZ_RUNS
# times, scaled back to 0 and every replica process gone in between), the gateway's RSS (idle after
# the deploy, peak VmHWM under load) and the gateway binary size.
#
# The CE gateway (0.27.14) needs: functions_provider_url; ports 8080 and 8082 free (hard-coded, so
# it is skipped with a note when they are taken); basic_auth and scale_from_zero left off (its
# defaults; they are set to false explicitly): with scale_from_zero=true it first looks the function
# up at <provider>/system/function/<name>, which a bare replica answers 404, so every call would
# fail. Every 5 s it also polls <provider>/system/namespaces and /system/functions (404 here; it
# logs an error and carries on), and it logs one line per forwarded call (kept in its log file).
#
# Env: DURATION (wrk duration, default 10s), WARMUP (default 2s), CONNS (default 50),
#      SFZ_RUNS (scale-from-zero samples, default 5), READY_TIMEOUT (seconds, default 30),
#      GATEWAY, FWATCHDOG, UPSTREAM, OF_GATEWAY (binaries).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
SFZ_RUNS=${SFZ_RUNS:-5}
READY_TIMEOUT=${READY_TIMEOUT:-30}

source bench/lib.sh
need_tools wrk:wrk python3:python3 curl:curl

# --- binaries --------------------------------------------------------------------------------
GATEWAY=${GATEWAY:-target/release/gateway}
FWATCHDOG=${FWATCHDOG:-target/release/fwatchdog}
UPSTREAM=${UPSTREAM:-target/release/test-upstream}
OF_GATEWAY=${OF_GATEWAY:-../shared/tools/of-gateway}
if [ ! -x "$GATEWAY" ] || [ ! -x "$FWATCHDOG" ] || [ ! -x "$UPSTREAM" ]; then
    log "building release binaries"
    flock /tmp/cargo.lock cargo build --release -p gateway -p watchdog -p e2e
fi
[ -x "$GATEWAY" ] || die "gateway not found: $GATEWAY"
[ -x "$FWATCHDOG" ] || die "fwatchdog not found: $FWATCHDOG"
[ -x "$UPSTREAM" ] || die "upstream not found: $UPSTREAM"
GATEWAY=$(realpath "$GATEWAY"); FWATCHDOG=$(realpath "$FWATCHDOG"); UPSTREAM=$(realpath "$UPSTREAM")

NS=openfaas-fn # the gateway's default function_namespace

# wait_replicas NAME N: poll GET /system/function/NAME until replicas and availableReplicas are N
wait_replicas() {
    python3 - "http://127.0.0.1:$GW_PORT/system/function/$1" "$2" "$GW_PID" "$READY_TIMEOUT" <<'EOF'
import json, os, sys, time, urllib.request
url, want, pid, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
end, last = time.time() + timeout, None
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"gateway {pid} exited while waiting for {url}")
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            last = json.load(r)
            if last.get("replicas") == want and last.get("availableReplicas") == want:
                sys.exit(0)
    except Exception as e:
        last = e
    time.sleep(0.02)
sys.exit(f"timeout waiting for {want} available replica(s) at {url}; last answer: {last}")
EOF
}

# start_gateway NAME: our gateway, auth off, no metrics listener, fresh state_dir; sets GW_PID,
# GW_PORT, GW_STATE
start_gateway() {
    local name=$1
    GW_PORT=$(free_port); GW_STATE=$WORK/$name.state
    env basic_auth=false port="$GW_PORT" metrics_port=0 state_dir="$GW_STATE" \
        watchdog_path="$FWATCHDOG" "$GATEWAY" > "$WORK/$name.log" 2>&1 &
    GW_PID=$!; PIDS+=("$GW_PID")
    wait_ok "http://127.0.0.1:$GW_PORT/healthz" "$GW_PID" || { tail -n 20 "$WORK/$name.log" >&2; die "gateway did not become ready"; }
}

# deploy NAME [LABELS_JSON]: http-mode function running test-upstream; waits for the 202
deploy() {
    local body code labels=${2:-}
    [ -n "$labels" ] || labels='{}'
    body=$(printf '{"service":"%s","image":"x","envProcess":"%s","envVars":{"mode":"http","upstream_url":"http://127.0.0.1:1"},"labels":%s}' \
        "$1" "$UPSTREAM" "$labels")
    code=$(curl -sS -o "$WORK/deploy.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        --data "$body" "http://127.0.0.1:$GW_PORT/system/functions") || die "deploy of $1: gateway unreachable"
    [ "$code" = 202 ] || die "deploy of $1: HTTP $code $(cat "$WORK/deploy.out")"
}

# marker_pids NAME: every process carrying a replica marker of NAME from the current gateway
marker_pids() {
    local id f p
    id=$(cat "$GW_STATE/instance-id") || die "no $GW_STATE/instance-id"
    for f in /proc/[0-9]*/environ; do
        p=${f#/proc/}; p=${p%/environ}
        grep -qzF "OF_REPLICA=$id/$1.$NS-" "$f" 2>/dev/null && echo "$p"
    done
    return 0
}

# replica_port NAME: the port of the replica's watchdog (the gateway's child carrying the marker)
replica_port() {
    local id c kids
    id=$(cat "$GW_STATE/instance-id") || die "no $GW_STATE/instance-id"
    read -ra kids <<<"$(cat /proc/"$GW_PID"/task/*/children 2>/dev/null | tr '\n' ' ')"
    for c in "${kids[@]}"; do
        if grep -qzF "OF_REPLICA=$id/$1.$NS-" /proc/"$c"/environ 2>/dev/null; then
            grep -z '^port=' /proc/"$c"/environ | tr -d '\0' | cut -d= -f2
            return 0
        fi
    done
    die "no replica watchdog of $1 found under gateway $GW_PID"
}

# start_of_gateway PROVIDER_URL: the CE gateway on its fixed ports 8080/8082; sets OF_PID
start_of_gateway() {
    if ! port_free 8080 || ! port_free 8082; then sleep 1; fi # the previous round's, closing
    env -i PATH="$PATH" HOME="$WORK" functions_provider_url="$1" basic_auth=false scale_from_zero=false \
        "$OF_GATEWAY" > "$WORK/of-gateway.log" 2>&1 &
    OF_PID=$!; PIDS+=("$OF_PID")
    wait_ok "http://127.0.0.1:8080/function/bench" "$OF_PID" || { tail -n 20 "$WORK/of-gateway.log" >&2; die "of-gateway did not become ready"; }
}

max_into() { # max_into ARRAY KEY VALUE
    local -n arr=$1
    [ -z "$3" ] || [ "${arr[$2]:-0}" -ge "$3" ] || arr[$2]=$3
}
median() { sort -n | awk '{l[NR]=$0} END {if (NR) print l[int((NR+1)/2)]}'; }

# --- CE gateway availability -------------------------------------------------------------------
OF_NOTE=
if [ ! -x "$OF_GATEWAY" ]; then
    OF_NOTE="skipped: $OF_GATEWAY not found (set OF_GATEWAY)"
elif ! port_free 8080 || ! port_free 8082; then
    OF_NOTE="skipped: port 8080 or 8082 (the CE gateway's hard-coded ports) is in use"
else
    OF_GATEWAY=$(realpath "$OF_GATEWAY")
fi
[ -z "$OF_NOTE" ] || log "of-gateway $OF_NOTE"

# --- throughput rounds -------------------------------------------------------------------------
declare -A IDLE PEAK
R_GW=(); R_OF=() # per-round req/s ratios against that round's direct run
log "wrk -t2 -c$CONNS -d$DURATION (warm-up $WARMUP), loopback, $ROUNDS rounds (median reported)"
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    start_gateway "gateway-$round"
    deploy bench
    wait_replicas bench 1 || die "function bench did not become available"
    WD_PORT=$(replica_port bench)
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$WD_PORT/function/bench") || true
    [ "$code" = 200 ] || die "the replica answers $code on /function/bench: rebuild test-upstream (cargo build --release -p e2e)"
    max_into IDLE gateway "$(kb "$GW_PID" VmRSS)"
    # (a) direct to the replica's watchdog
    d=$(wrk_run direct "http://127.0.0.1:$WD_PORT/"); record direct "$d"
    # (b) through our gateway
    g=$(wrk_run gateway "http://127.0.0.1:$GW_PORT/function/bench"); record gateway "$g"
    R_GW+=("$(ratio "${g%% *}" "${d%% *}")")
    kill -0 "$GW_PID" 2>/dev/null || die "gateway died during the run"
    max_into PEAK gateway "$(kb "$GW_PID" VmHWM)"
    # (c) through the CE gateway, provider = the same replica
    if [ -z "$OF_NOTE" ]; then
        start_of_gateway "http://127.0.0.1:$WD_PORT/"
        max_into IDLE of-gateway "$(kb "$OF_PID" VmRSS)"
        o=$(wrk_run of-gateway "http://127.0.0.1:8080/function/bench"); record of-gateway "$o"
        R_OF+=("$(ratio "${o%% *}" "${d%% *}")")
        kill -0 "$OF_PID" 2>/dev/null || die "of-gateway died during the run"
        max_into PEAK of-gateway "$(kb "$OF_PID" VmHWM)"
        stop "$OF_PID"
    fi
    stop "$GW_PID"
    # anything the gateway logged beyond its start-up lines (errors under load would show here)
    extra=$(grep -cvE 'gateway version|Listening on port|Local runtime' "$WORK/gateway-$round.log" || true)
    GW_LOG_LINES=$((${GW_LOG_LINES:-0} + extra))
    [ "$extra" = 0 ] || { log "gateway logged $extra line(s) during round $round:"; grep -vE 'gateway version|Listening on port|Local runtime' "$WORK/gateway-$round.log" | head -n 5 >&2; }
done
finalize direct gateway of-gateway

# --- scale from zero ---------------------------------------------------------------------------
log "scale from zero: $SFZ_RUNS calls to a function at 0 replicas"
start_gateway gateway-sfz
deploy bench0 '{"com.openfaas.scale.min":"0"}'
wait_replicas bench0 0 || die "bench0 should start at 0 replicas (com.openfaas.scale.min=0)"
[ -z "$(marker_pids bench0)" ] || die "bench0 has processes at 0 replicas"
SFZ=()
for i in $(seq "$SFZ_RUNS"); do
    out=$(curl -sS -o "$WORK/sfz.body" -w '%{http_code} %{time_starttransfer}' --max-time "$READY_TIMEOUT" \
        "http://127.0.0.1:$GW_PORT/function/bench0") || die "scale-from-zero call $i failed"
    read -r code ttfb <<<"$out"
    if [ "$code" != 200 ] || [ "$(cat "$WORK/sfz.body")" != Hello ]; then
        die "scale-from-zero call $i: HTTP $code $(cat "$WORK/sfz.body")"
    fi
    SFZ+=("$(awk -v s="$ttfb" 'BEGIN {printf "%.1f", s * 1000}')")
    log "scale from zero $i: ${SFZ[-1]} ms to first byte"
    code=$(curl -sS -o "$WORK/scale.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        --data '{"serviceName":"bench0","replicas":0}' "http://127.0.0.1:$GW_PORT/system/scale-function/bench0")
    [ "$code" = 202 ] || die "scale to 0: HTTP $code $(cat "$WORK/scale.out")"
    wait_replicas bench0 0 || die "bench0 did not scale to 0"
    for _ in $(seq $((READY_TIMEOUT * 10))); do
        [ -n "$(marker_pids bench0)" ] || break
        sleep 0.1
    done
    [ -z "$(marker_pids bench0)" ] || die "bench0 replica processes still running after scale to 0: $(marker_pids bench0 | xargs)"
done
stop "$GW_PID"
SFZ_MED=$(printf '%s\n' "${SFZ[@]}" | median)
SFZ_MAX=$(printf '%s\n' "${SFZ[@]}" | sort -n | tail -n 1)

# --- report ------------------------------------------------------------------------------------
echo
echo "Gateway, GET /function/bench -> replica (fwatchdog mode=http + test-upstream 'Hello'),"
echo "wrk -t2 -c$CONNS -d$DURATION (loopback), median of $ROUNDS rounds"
printf '%-12s %12s %10s %10s %8s %10s %12s %10s %10s\n' \
    target req/s p50_ms p99_ms errors vs_direct p99_added_ms idle_KiB peak_KiB
for n in direct gateway of-gateway; do
    [ -n "${RPS[$n]:-}" ] || continue
    printf '%-12s %12s %10s %10s %8s %10s %12s %10s %10s\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" \
        "${ERRS[$n]}" "$(ratio "${RPS[$n]}" "${RPS[direct]}")" \
        "$(awk -v a="${P99[$n]}" -v b="${P99[direct]}" 'BEGIN {printf "%.3f", a - b}')" \
        "${IDLE[$n]:--}" "${PEAK[$n]:--}"
done
[ -z "$OF_NOTE" ] || echo "of-gateway: $OF_NOTE"
echo
echo "ratio req/s gateway/direct:    $(ratio "${RPS[gateway]}" "${RPS[direct]}")  (target >= 0.5)" \
    "  per round: ${R_GW[*]}, median $(printf '%s\n' "${R_GW[@]}" | median)"
if [ -n "${RPS[of-gateway]:-}" ]; then
    echo "ratio req/s of-gateway/direct: $(ratio "${RPS[of-gateway]}" "${RPS[direct]}")" \
        "  per round: ${R_OF[*]}, median $(printf '%s\n' "${R_OF[@]}" | median)"
    echo "ratio req/s gateway/of-gateway: $(ratio "${RPS[gateway]}" "${RPS[of-gateway]}")"
fi
echo "gateway log lines beyond start-up, all rounds: $GW_LOG_LINES"
echo "p99 added by the gateway: $(awk -v a="${P99[gateway]}" -v b="${P99[direct]}" 'BEGIN {printf "%.3f", a - b}') ms"
echo "RSS: gateway process only (idle = VmRSS after the deploy, peak = VmHWM after its wrk run;"
echo "highest of the rounds); target peak <= 15360 KiB. of-gateway: VmRSS after start, VmHWM after its run."
echo
echo "scale from zero (time to first byte, $SFZ_RUNS calls): median ${SFZ_MED} ms, max ${SFZ_MAX} ms (target < 100 ms)"
echo "  samples (ms): ${SFZ[*]}"
echo
echo "binary sizes (bytes):"
echo "  gateway     $(stat -c %s "$GATEWAY")  $GATEWAY"
[ -x "$OF_GATEWAY" ] && echo "  of-gateway  $(stat -c %s "$OF_GATEWAY")  $OF_GATEWAY"
echo "  fwatchdog   $(stat -c %s "$FWATCHDOG")  $FWATCHDOG"
exit 0
