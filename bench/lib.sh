# shellcheck shell=bash
# shellcheck disable=SC2034,SC2013  # variables are read by the scripts that source this file
# Shared by the bench scripts: tool installs, process clean-up, free ports, wrk runs and the
# median-of-rounds bookkeeping. Source it after `set -euo pipefail` and `cd` to the repo root.

log() { printf '==> %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "need root to run: $*"
    fi
}

# need_tools "cmd:package[ package...]"...: installs the packages of the missing commands
need_tools() {
    local spec cmd pkgs=()
    for spec in "$@"; do
        cmd=${spec%%:*}
        # shellcheck disable=SC2206
        command -v "$cmd" >/dev/null || pkgs+=(${spec#*:})
    done
    if [ ${#pkgs[@]} -gt 0 ]; then
        log "installing: ${pkgs[*]}"
        as_root apt-get update
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y --no-install-recommends "${pkgs[@]}"
    fi
}

ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")
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
kb() { awk -v k="$2:" '$1 == k {print $2}' /proc/"$1"/status 2>/dev/null || true; }

# wrk_run NAME URL: warm up, measure (extra wrk arguments in WRK_ARGS); prints "rps p50ms p99ms errs"
wrk_run() {
    local out=$WORK/$1.wrk
    # shellcheck disable=SC2086
    wrk -t2 -c"$CONNS" -d"$WARMUP" ${WRK_ARGS:-} "$2" >/dev/null
    # shellcheck disable=SC2086
    wrk -t2 -c"$CONNS" -d"$DURATION" --latency ${WRK_ARGS:-} "$2" > "$out"
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

# record NAME "rps p50 p99 errs": one round's result; finalize NAME picks the median round
declare -A ROUND_DATA RPS P50 P99 ERRS
record() {
    ROUND_DATA[$1]+="$2"$'\n'
    log "$1: $(awk '{printf "%s req/s, p50 %s ms, p99 %s ms, errors %s", $1, $2, $3, $4}' <<<"$2")"
}
finalize() {
    local name line
    for name in "$@"; do
        [ -n "${ROUND_DATA[$name]:-}" ] || continue
        line=$(printf '%s' "${ROUND_DATA[$name]}" | sort -n -k1,1 | awk '{l[NR]=$0} END {print l[int((NR+1)/2)]}')
        read -r "RPS[$name]" "P50[$name]" "P99[$name]" "ERRS[$name]" <<<"$line"
    done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# of_watchdog_check: sets OF_NOTE (empty when the reference of-watchdog can run) and says why not
of_watchdog_check() {
    OF_NOTE=
    if [ ! -x "$OF_WATCHDOG" ]; then
        OF_NOTE="skipped: $OF_WATCHDOG not found (set OF_WATCHDOG)"
    elif ! port_free 8081; then
        OF_NOTE="skipped: port 8081 (of-watchdog's hard-coded metrics port) is in use"
    fi
    [ -z "$OF_NOTE" ] || log "of-watchdog $OF_NOTE"
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
