#!/usr/bin/env bash
# Asynchronous invocation benchmark (spec/gateway.md §11), one run, loopback only, for both queue
# backends side by side (each round runs them one after another):
#   embedded: the default queue, a redb file in the gateway's state_dir (fsynced before each 202;
#             concurrent 202s share one commit)
#   nats:     NATS JetStream, a fresh `nats-server -js` (file storage) per round, the gateway
#             started with faas_nats_address/faas_nats_port
# Each backend gets its own gateway (basic_auth=false, fresh state_dir, metrics_port set,
# async_max_inflight=ASYNC_INFLIGHT, in-gateway workers) and function `bench` (http mode,
# test-upstream answering 'Hello'). Per backend:
#   (a) sync:   wrk GET /function/bench, the reference (a trivial function invoked synchronously)
#   (b) accept: wrk POST /async-function/bench (5-byte body, Lua script): accepted req/s and the
#               enqueue latency; every answer must be 202 (anything else counts as an error)
#   (c) e2e:    from the start of (b) (its warm-up included) until the queue is drained, read from
#               the gateway's metrics: every record accepted since the start has finished
#               (gateway_function_invocation_total minus gateway_async_retries_total of the
#               function, compared with gateway_async_accepted_total), gateway_async_queue_depth 0
#               and gateway_async_inflight 0. completions/s = accepted / that time.
# The workers run while wrk enqueues, so (b) shares the 2 cores with the calls being worked off,
# as it would in production.
#
# Env: DURATION (wrk duration, default 10s), WARMUP (default 2s), CONNS (default 50),
#      ROUNDS (default 1 here: one round of both backends takes about 2 min, mostly draining),
#      ASYNC_INFLIGHT (the gateway's async_max_inflight, default 8), BACKENDS (default
#      "embedded nats"), DRAIN_TIMEOUT (seconds to wait for the queue to drain, default 300),
#      READY_TIMEOUT (seconds, default 30), GATEWAY, FWATCHDOG, UPSTREAM, NATS_SERVER (binaries).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-50}
ROUNDS=${ROUNDS:-1}
ASYNC_INFLIGHT=${ASYNC_INFLIGHT:-8}
BACKENDS=${BACKENDS:-embedded nats}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
READY_TIMEOUT=${READY_TIMEOUT:-30}

source bench/lib.sh
need_tools wrk:wrk python3:python3 curl:curl

for b in $BACKENDS; do
    case $b in embedded | nats) ;; *) die "unknown backend in BACKENDS: $b (embedded, nats)" ;; esac
done

# --- binaries --------------------------------------------------------------------------------
GATEWAY=${GATEWAY:-target/release/gateway}
FWATCHDOG=${FWATCHDOG:-target/release/fwatchdog}
UPSTREAM=${UPSTREAM:-target/release/test-upstream}
if [ ! -x "$GATEWAY" ] || [ ! -x "$FWATCHDOG" ] || [ ! -x "$UPSTREAM" ]; then
    log "building release binaries"
    flock /tmp/cargo.lock cargo build --release -p gateway -p watchdog -p e2e
fi
[ -x "$GATEWAY" ] || die "gateway not found: $GATEWAY"
[ -x "$FWATCHDOG" ] || die "fwatchdog not found: $FWATCHDOG"
[ -x "$UPSTREAM" ] || die "upstream not found: $UPSTREAM"
GATEWAY=$(realpath "$GATEWAY"); FWATCHDOG=$(realpath "$FWATCHDOG"); UPSTREAM=$(realpath "$UPSTREAM")

if [[ " $BACKENDS " == *" nats "* ]]; then
    # Debian installs it in /usr/sbin, which a non-root PATH may lack
    NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}
    if [ ! -x "$NATS_SERVER" ]; then
        log "nats-server not found at $NATS_SERVER"
        need_tools nats-server:nats-server
        NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)
    fi
    [ -x "$NATS_SERVER" ] || die "nats-server not found (apt-get install nats-server, set NATS_SERVER, or BACKENDS=embedded)"
    log "nats-server: $("$NATS_SERVER" --version 2>&1 | head -n 1)"
fi

NS=openfaas-fn # the gateway's default function_namespace
FN=bench.$NS

# --- clean-up: replicas too, should one outlive its gateway ------------------------------------
STATES=() # state_dirs of the gateways started (their instance-id marks their replicas)
marker_pids() { # every process carrying a replica marker of the gateway whose state_dir is $1
    local id f p
    id=$(cat "$1/instance-id" 2>/dev/null) || return 0
    for f in /proc/[0-9]*/environ; do
        p=${f#/proc/}; p=${p%/environ}
        grep -qzF "OF_REPLICA=$id/" "$f" 2>/dev/null && echo "$p"
    done
    return 0
}
reap_replicas() {
    local s pids
    for s in "${STATES[@]}"; do
        pids=$(marker_pids "$s")
        # shellcheck disable=SC2086
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    done
}
trap 'reap_replicas; cleanup' EXIT

# --- helpers -----------------------------------------------------------------------------------
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

# The gateway's counters for FN. `snap URL` prints "accepted finished ok200 retries dead" (finished
# = invocations of any status minus retried attempts = records done); `drain URL PID T0 TIMEOUT
# BASELINE...` polls until every record accepted since the baseline has finished and no async call
# runs (then up to 5 s more for gateway_async_queue_depth to read 0), and prints the deltas
# "accepted finished ok200 retries dead", the seconds since T0, 1 (0 after TIMEOUT) and the depth.
cat > "$WORK/metrics.py" <<'EOF'
import os, sys, time, urllib.request
FN = os.environ["FN"]

def snap(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        text = r.read().decode()
    label = f'function_name="{FN}"'
    m = dict(accepted=0.0, invocations=0.0, ok=0.0, retries=0.0, dead=0.0, depth=0.0, inflight=0.0)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        name, v = series.split("{", 1)[0], float(value)
        if name == "gateway_async_queue_depth":
            m["depth"] = v
        elif name == "gateway_async_inflight":
            m["inflight"] = v
        elif label not in series:
            continue
        elif name == "gateway_async_accepted_total":
            m["accepted"] = v
        elif name == "gateway_function_invocation_total":
            m["invocations"] += v
            if 'code="200"' in series:
                m["ok"] += v
        elif name == "gateway_async_retries_total":
            m["retries"] = v
        elif name == "gateway_async_dead_letters_total":
            m["dead"] = v
    m["finished"] = m["invocations"] - m["retries"]
    return m

KEYS = ("accepted", "finished", "ok", "retries", "dead")
if sys.argv[1] == "snap":
    m = snap(sys.argv[2])
    print(" ".join("%d" % m[k] for k in KEYS))
    sys.exit(0)
url, pid, t0, timeout = sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
base = dict(zip(KEYS, map(float, sys.argv[6:11])))

def poll(until, cond):
    m = None
    while time.time() < until:
        try:
            os.kill(pid, 0)
        except OSError:
            sys.exit(f"gateway {pid} exited while the queue drained")
        try:
            m = snap(url)
        except Exception:
            time.sleep(0.02)
            continue
        if cond(m):
            return m, True
        time.sleep(0.02)
    if m is None:
        sys.exit(f"no answer from {url}")
    return m, False

# every record accepted has finished and no call runs (a request cut off by the client after its
# record was stored also finishes, uncounted by accepted_total: finished may end above accepted)
m, drained = poll(time.time() + timeout, lambda m: m["finished"] - base["finished"] >= m["accepted"] - base["accepted"] and m["inflight"] == 0)
t = time.time() - t0
if drained and m["depth"] != 0:
    # then the depth gauge should read 0 too; when it does within 5 s, that is the drain time
    m2, ok = poll(time.time() + 5, lambda m: m["depth"] == 0 and m["inflight"] == 0)
    if ok:
        m, t = m2, time.time() - t0
    else:
        m = m2
print(" ".join("%d" % (m[k] - base[k]) for k in KEYS), "%.3f" % t, int(drained), "%d" % m["depth"])
EOF
metrics() { FN=$FN python3 "$WORK/metrics.py" "$@"; }

# wrk's Lua script: POST a 5-byte body, count every answer other than 202
cat > "$WORK/async.lua" <<'EOF'
wrk.method = "POST"
wrk.body = "hello"
wrk.headers["Content-Type"] = "text/plain"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non202 = 0 end
function response(status, headers, body) if status ~= 202 then non202 = non202 + 1 end end
function done(summary, latency, requests)
    local n = 0
    for _, t in ipairs(threads) do n = n + t:get("non202") end
    io.write(string.format("Non-202 responses: %d\n", n))
end
EOF

# start_nats NAME: a fresh JetStream server (file storage in a new dir); sets NATS_PID, NATS_PORT,
# NATS_DIR; ready when its client port sends INFO with JetStream on
start_nats() {
    NATS_PORT=$(free_port); NATS_DIR=$WORK/$1.jetstream
    mkdir -p "$NATS_DIR"
    "$NATS_SERVER" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$NATS_DIR" > "$WORK/$1.log" 2>&1 &
    NATS_PID=$!; PIDS+=("$NATS_PID")
    python3 - "$NATS_PORT" "$NATS_PID" "$READY_TIMEOUT" <<'EOF' || { tail -n 20 "$WORK/$1.log" >&2; die "nats-server did not become ready"; }
import os, socket, sys, time
port, pid, timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.time() + timeout
while time.time() < end:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"nats-server {pid} exited")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            if b'"jetstream":true' in s.recv(4096):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(f"timeout waiting for nats-server on port {port}")
EOF
}

# start_gateway NAME ENV...: our gateway, auth off, metrics on, fresh state_dir; sets GW_PID,
# GW_PORT, MX_PORT, GW_STATE
start_gateway() {
    local name=$1; shift
    GW_PORT=$(free_port); MX_PORT=$(free_port); GW_STATE=$WORK/$name.state
    STATES+=("$GW_STATE")
    env basic_auth=false port="$GW_PORT" metrics_port="$MX_PORT" state_dir="$GW_STATE" \
        watchdog_path="$FWATCHDOG" async_max_inflight="$ASYNC_INFLIGHT" "$@" "$GATEWAY" > "$WORK/$name.log" 2>&1 &
    GW_PID=$!; PIDS+=("$GW_PID")
    wait_ok "http://127.0.0.1:$GW_PORT/healthz" "$GW_PID" || { tail -n 20 "$WORK/$name.log" >&2; die "gateway did not become ready"; }
}

# deploy NAME: http-mode function running test-upstream; waits for the 202
deploy() {
    local body code
    body=$(printf '{"service":"%s","image":"x","envProcess":"%s","envVars":{"mode":"http","upstream_url":"http://127.0.0.1:1"}}' \
        "$1" "$UPSTREAM")
    code=$(curl -sS -o "$WORK/deploy.out" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        --data "$body" "http://127.0.0.1:$GW_PORT/system/functions") || die "deploy of $1: gateway unreachable"
    [ "$code" = 202 ] || die "deploy of $1: HTTP $code $(cat "$WORK/deploy.out")"
}

median() { sort -n | awk '{l[NR]=$0} END {if (NR) print l[int((NR+1)/2)]}'; }
max_into() { # max_into ARRAY KEY VALUE
    local -n arr=$1
    [ -z "$3" ] || [ "${arr[$2]:-0}" -ge "$3" ] || arr[$2]=$3
}
now() { date +%s.%N; }
kib() { du -sk "$1" 2>/dev/null | cut -f1; }

# --- rounds ------------------------------------------------------------------------------------
declare -A E2E DRAIN TAIL UNACK DEPTH ACCEPTED FAILED NOTDRAINED PEAK STORE RATIO_ACC RATIO_E2E LOGGED
MX_URL=
log "wrk -t2 -c$CONNS -d$DURATION (warm-up $WARMUP), loopback, async_max_inflight=$ASYNC_INFLIGHT," \
    "backends: $BACKENDS; $ROUNDS round(s) (median reported)"
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    for b in $BACKENDS; do
        extra=()
        if [ "$b" = nats ]; then
            start_nats "natsd-$round"
            extra=(faas_nats_address=127.0.0.1 faas_nats_port="$NATS_PORT")
        fi
        start_gateway "$b-$round" "${extra[@]}"
        MX_URL="http://127.0.0.1:$MX_PORT/metrics"
        deploy bench
        wait_replicas bench 1 || die "function bench did not become available ($b)"

        # one async call first: 202 and then run by the worker, or nothing is worth measuring
        base=$(metrics snap "$MX_URL")
        code=$(curl -sS -o "$WORK/async.out" -w '%{http_code}' -X POST --data hello \
            "http://127.0.0.1:$GW_PORT/async-function/bench") || die "$b: async call failed"
        [ "$code" = 202 ] || die "$b: POST /async-function/bench answered $code $(cat "$WORK/async.out")"
        # shellcheck disable=SC2086
        read -r _ fin ok _ _ _ drained _ <<<"$(metrics drain "$MX_URL" "$GW_PID" "$(now)" "$READY_TIMEOUT" $base)"
        [ "$drained$fin$ok" = 111 ] || die "$b: the async call did not run (finished $fin, ok $ok)"

        # (a) sync reference
        WRK_ARGS=
        s=$(wrk_run "$b-sync" "http://127.0.0.1:$GW_PORT/function/bench"); record "$b-sync" "$s"

        # (b) accept, (c) until drained
        base=$(metrics snap "$MX_URL")
        t0=$(now)
        WRK_ARGS="-s $WORK/async.lua"
        a=$(wrk_run "$b-async" "http://127.0.0.1:$GW_PORT/async-function/bench")
        t_end=$(now)
        read -r _ fin_end _ <<<"$(metrics snap "$MX_URL")"
        fin_end=$((fin_end - $(awk '{print $2}' <<<"$base")))
        # wrk_run counts non-2xx and socket errors; here every answer but 202 is an error
        non2xx=$(awk '/Non-2xx or 3xx/ {n += $NF} END {print n + 0}' "$WORK/$b-async.wrk")
        non202=$(awk '/^Non-202 responses:/ {n += $NF} END {print n + 0}' "$WORK/$b-async.wrk")
        read -r rps p50 p99 errs <<<"$a"
        record "$b-accept" "$rps $p50 $p99 $((errs - non2xx + non202))"
        # shellcheck disable=SC2086
        read -r acc fin ok retries dead secs drained depth <<<"$(metrics drain "$MX_URL" "$GW_PID" "$t0" "$DRAIN_TIMEOUT" $base)"
        kill -0 "$GW_PID" 2>/dev/null || die "gateway died during the run ($b)"
        cps=$(awk -v n="$acc" -v s="$secs" 'BEGIN {printf "%.1f", (s > 0) ? n / s : 0}')
        drain=$(awk -v a="$t0" -v e="$t_end" -v s="$secs" 'BEGIN {printf "%.1f", s - (e - a)}')
        # the workers alone, once wrk has stopped: what was left at its end / the time to drain it
        tail_rate=$(awk -v n="$((acc - fin_end))" -v d="$drain" 'BEGIN {printf "%.1f", (d > 0) ? n / d : 0}')
        log "$b e2e: $acc accepted since the start of the warm-up, $fin finished ($ok with 200," \
            "$retries retries, $dead dead letters) after $secs s, $((acc - fin_end)) left when wrk" \
            "ended, drained $drain s later ($tail_rate/s): $cps completions/s"
        [ "$drained" = 1 ] || { log "$b: queue NOT drained after ${DRAIN_TIMEOUT}s"; NOTDRAINED[$b]+=" $round"; }
        [ "$depth" = 0 ] || { log "$b: gateway_async_queue_depth reads $depth with every record finished"; DEPTH[$b]+=" $depth"; }
        E2E[$b]+="$cps"$'\n'; DRAIN[$b]+="$drain"$'\n'; TAIL[$b]+="$tail_rate"$'\n'; ACCEPTED[$b]+="$acc"$'\n'
        # finished with another status than 200, or never finished
        FAILED[$b]=$(( ${FAILED[$b]:-0} + fin - ok + (acc > fin ? acc - fin : 0) ))
        # stored and run although the client cut the request off before its 202 (wrk stopping)
        UNACK[$b]=$(( ${UNACK[$b]:-0} + (fin > acc ? fin - acc : 0) ))
        RATIO_ACC[$b]+="$(ratio "$rps" "${s%% *}") "; RATIO_E2E[$b]+="$(ratio "$cps" "${s%% *}") "
        max_into PEAK "$b" "$(kb "$GW_PID" VmHWM)"
        if [ "$b" = nats ]; then max_into STORE "$b" "$(kib "$NATS_DIR")"; else max_into STORE "$b" "$(kib "$GW_STATE/queue.redb")"; fi

        stop "$GW_PID"
        reap_replicas
        [ "$b" != nats ] || stop "$NATS_PID"
        # anything the gateway logged beyond its start-up lines
        pat='gateway version|Listening on port|Metrics listening|Local runtime|NATS|nats'
        n=$(grep -cvE "$pat" "$WORK/$b-$round.log" || true)
        LOGGED[$b]=$(( ${LOGGED[$b]:-0} + n ))
        [ "$n" = 0 ] || { log "$b gateway logged $n line(s) in round $round:"; grep -vE "$pat" "$WORK/$b-$round.log" | head -n 5 >&2; }
    done
done
for b in $BACKENDS; do finalize "$b-sync" "$b-accept"; done

# --- report ------------------------------------------------------------------------------------
echo
echo "Async invocation, POST /async-function/bench (5-byte body) -> replica (fwatchdog mode=http +"
echo "test-upstream 'Hello'), wrk -t2 -c$CONNS -d$DURATION (warm-up $WARMUP, loopback),"
echo "async_max_inflight=$ASYNC_INFLIGHT, median of $ROUNDS round(s)"
printf '%-9s %-7s %12s %10s %10s %8s %8s %9s %9s\n' backend target req/s p50_ms p99_ms errors vs_sync drain_s drain/s
for b in $BACKENDS; do
    [ -n "${RPS[$b-sync]:-}" ] || continue
    for t in sync accept; do
        printf '%-9s %-7s %12s %10s %10s %8s %8s %9s %9s\n' "$b" "$t" "${RPS[$b-$t]}" "${P50[$b-$t]}" "${P99[$b-$t]}" \
            "${ERRS[$b-$t]}" "$(ratio "${RPS[$b-$t]}" "${RPS[$b-sync]}")" - -
    done
    cps=$(printf '%s' "${E2E[$b]}" | median)
    printf '%-9s %-7s %12s %10s %10s %8s %8s %9s %9s\n' "$b" e2e "$cps" - - "${FAILED[$b]}" \
        "$(ratio "$cps" "${RPS[$b-sync]}")" "$(printf '%s' "${DRAIN[$b]}" | median)" "$(printf '%s' "${TAIL[$b]}" | median)"
done
echo
echo "sync:   GET /function/bench through the same gateway; errors = non-2xx + socket errors"
echo "accept: enqueue rate and latency (202 answers); errors = answers other than 202 + socket errors"
echo "e2e:    completions/s = records accepted from the start of the warm-up until drained / that time;"
echo "        errors = records that finished with a status other than 200 or never finished;"
echo "        drain_s = time from the end of wrk until the last record finished; drain/s = the records"
echo "        left when wrk ended / drain_s (the workers alone)"
echo
for b in $BACKENDS; do
    [ -n "${RPS[$b-sync]:-}" ] || continue
    echo "ratio accepted/sync    $b: $(ratio "${RPS[$b-accept]}" "${RPS[$b-sync]}")  (target >= 1)" \
        "  per round: ${RATIO_ACC[$b]}"
    echo "ratio completions/sync $b: $(ratio "$(printf '%s' "${E2E[$b]}" | median)" "${RPS[$b-sync]}")" \
        "  per round: ${RATIO_E2E[$b]}"
done
if [[ " $BACKENDS " == *" embedded "* && " $BACKENDS " == *" nats "* ]]; then
    echo "ratio accepted nats/embedded: $(ratio "${RPS[nats-accept]}" "${RPS[embedded-accept]}")," \
        "completions nats/embedded: $(ratio "$(printf '%s' "${E2E[nats]}" | median)" "$(printf '%s' "${E2E[embedded]}" | median)")"
fi
echo
for b in $BACKENDS; do
    [ -n "${RPS[$b-sync]:-}" ] || continue
    echo "$b: records accepted per round (warm-up + measured): $(printf '%s' "${ACCEPTED[$b]}" | xargs);" \
        "gateway peak RSS ${PEAK[$b]:--} KiB (VmHWM after the drain);" \
        "queue store after the drain ${STORE[$b]:--} KiB ($([ "$b" = nats ] && echo 'JetStream -sd dir' || echo queue.redb));" \
        "gateway log lines beyond start-up: ${LOGGED[$b]:-0}"
    [ "${UNACK[$b]:-0}" = 0 ] || echo "  $b: ${UNACK[$b]} record(s) ran without being counted as accepted (requests cut off when wrk stopped, stored without a 202)"
    [ -z "${DEPTH[$b]:-}" ] || echo "  $b: gateway_async_queue_depth did not return to 0 after the drain (read:${DEPTH[$b]})"
    [ -z "${NOTDRAINED[$b]:-}" ] || echo "  $b: queue NOT drained within ${DRAIN_TIMEOUT}s in round(s)${NOTDRAINED[$b]}"
done
exit 0
