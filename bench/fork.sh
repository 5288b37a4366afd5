#!/usr/bin/env bash
# Fork-mode benchmark, one run, loopback only: fprocess=cat, POST "hello", wrk -c20.
#   fwatchdog   mode=serializing and mode=streaming
#   of-watchdog mode=serializing and mode=streaming (../shared/tools/of-watchdog), if present
#   ceiling: a C program (built with gcc here) that spawns `cat` through pipes, writes 5 bytes,
#            reads the echo, waits, in a loop across 2 processes; prints spawns/s
# Prints req/s (and p50/p99) for each and ratios for serializing mode.
#
# Env: DURATION (default 10s), WARMUP (default 2s), CONNS (default 20), FWATCHDOG, OF_WATCHDOG,
#      READY_TIMEOUT (seconds, default 30).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-20}
READY_TIMEOUT=${READY_TIMEOUT:-30}

source bench/lib.sh
need_tools wrk:wrk python3:python3 "gcc:gcc libc6-dev" cat:coreutils

# --- binaries --------------------------------------------------------------------------------
MUSL_FW=target/x86_64-unknown-linux-musl/release/fwatchdog
if [ -z "${FWATCHDOG:-}" ]; then
    if [ -x "$MUSL_FW" ]; then FWATCHDOG=$MUSL_FW; else FWATCHDOG=target/release/fwatchdog; fi
fi
OF_WATCHDOG=${OF_WATCHDOG:-../shared/tools/of-watchdog}
if [ ! -x "$FWATCHDOG" ]; then
    log "building release binaries"
    flock /tmp/cargo.lock cargo build --release -p watchdog -p e2e
fi
[ -x "$FWATCHDOG" ] || die "fwatchdog not found: $FWATCHDOG"
FWATCHDOG=$(realpath "$FWATCHDOG")

# wait_echo PORT PID: poll /_/health until 200, then check POST / "hello" echoes "hello"
wait_echo() {
    python3 - "$1" "$2" "$READY_TIMEOUT" <<'EOF'
import os, sys, time, urllib.request
port, pid, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
base = f"http://127.0.0.1:{port}"
end = time.time() + timeout
while True:
    if time.time() > end:
        sys.exit(f"timeout waiting for 200 from {base}/_/health")
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"process {pid} exited while waiting for {base}")
    try:
        with urllib.request.urlopen(base + "/_/health", timeout=1) as r:
            if r.status == 200:
                break
    except Exception:
        pass
    time.sleep(0.05)
with urllib.request.urlopen(urllib.request.Request(base + "/", data=b"hello"), timeout=5) as r:
    body = r.read()
    if r.status != 200 or body != b"hello":
        sys.exit(f"POST / gave {r.status} {body!r}, want 200 b'hello'")
EOF
}

LUA=$WORK/post.lua
printf '%s\n' 'wrk.method = "POST"' 'wrk.body = "hello"' \
    'wrk.headers["Content-Type"] = "text/plain"' > "$LUA"
WRK_ARGS="-s $LUA"



bench_watchdog() { # NAME BIN MODE ENV...
    local name=$1 bin=$2 mode=$3 wp pid; shift 3
    wp=$(free_port)
    mkdir -p "$WORK/$name.tmp"
    env mode="$mode" fprocess=cat port="$wp" TMPDIR="$WORK/$name.tmp" "$@" "$bin" \
        > "$WORK/$name.log" 2>&1 &
    pid=$!; PIDS+=("$pid")
    wait_echo "$wp" "$pid" || { tail -n 20 "$WORK/$name.log" >&2; die "$name not ready"; }
    record "$name" "$(wrk_run "$name" "http://127.0.0.1:$wp/")"
    kill -0 "$pid" 2>/dev/null || die "$name died during the run"
    stop "$pid"
}

# --- ceiling: spawn-and-wait loop in C ----------------------------------------------------------
cat > "$WORK/spawn.c" <<'EOF'
/* spawn `cat` with stdin/stdout pipes, write "hello", read it back, wait; loop for SECS in
   NPROC processes; print total spawns/s. Uses posix_spawnp (glibc: clone(CLONE_VM|CLONE_VFORK)),
   the cheapest way to start a process, so this is the ceiling for one process per request. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static long worker(double secs) {
    char *argv[] = {"cat", NULL}; char buf[64]; long n = 0; double end = now() + secs;
    while (now() < end) {
        int in[2], out[2]; pid_t pid; posix_spawn_file_actions_t fa;
        if (pipe(in) || pipe(out)) { perror("pipe"); exit(1); }
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        posix_spawn_file_actions_addclose(&fa, in[1]);
        posix_spawn_file_actions_addclose(&fa, out[0]);
        if (posix_spawnp(&pid, "cat", &fa, NULL, argv, environ)) { perror("spawn"); exit(1); }
        posix_spawn_file_actions_destroy(&fa);
        close(in[0]); close(out[1]);
        if (write(in[1], "hello", 5) != 5) { perror("write"); exit(1); }
        close(in[1]);
        size_t got = 0; ssize_t r;
        while ((r = read(out[0], buf + got, sizeof buf - got)) > 0) got += r;
        close(out[0]);
        int st; waitpid(pid, &st, 0);
        if (got != 5 || memcmp(buf, "hello", 5) || !WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "bad echo\n"); exit(1); }
        n++;
    }
    return n;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 10; int np = argc > 2 ? atoi(argv[2]) : 2;
    int p[2]; if (pipe(p)) return 1;
    double t0 = now();
    for (int i = 0; i < np; i++) if (fork() == 0) { close(p[0]); long n = worker(secs); if (write(p[1], &n, sizeof n) != sizeof n) _exit(1); _exit(0); }
    close(p[1]); long total = 0, n; int st, ok = 1;
    while (read(p[0], &n, sizeof n) == sizeof n) total += n;
    for (int i = 0; i < np; i++) { wait(&st); ok &= WIFEXITED(st) && !WEXITSTATUS(st); }
    double dt = now() - t0;
    if (!ok) return 1;
    printf("%.2f\n", total / dt);
    return 0;
}
EOF
gcc -O2 -o "$WORK/spawn" "$WORK/spawn.c"

secs() { # wrk-style duration (10s, 1m, 500ms) -> seconds
    awk -v d="$1" 'BEGIN { v = d + 0; if (d ~ /ms$/) v /= 1000; else if (d ~ /m$/) v *= 60;
                           else if (d ~ /h$/) v *= 3600; print v }'
}

# --- runs ----------------------------------------------------------------------------------------
of_watchdog_check

log "fprocess=cat, POST 'hello', wrk -t2 -c$CONNS -d$DURATION (warm-up $WARMUP), loopback, $ROUNDS rounds"
declare -a CEILS=()
for round in $(seq "$ROUNDS"); do
    log "round $round of $ROUNDS"
    bench_watchdog fw-serializing "$FWATCHDOG" serializing metrics_port="$(free_port)" bind_address=127.0.0.1
    bench_watchdog fw-streaming "$FWATCHDOG" streaming metrics_port="$(free_port)" bind_address=127.0.0.1
    if [ -z "$OF_NOTE" ]; then
        OFW=$(realpath "$OF_WATCHDOG")
        port_free 8081 || sleep 1
        bench_watchdog of-serializing "$OFW" serializing
        port_free 8081 || sleep 1
        bench_watchdog of-streaming "$OFW" streaming
    fi
    "$WORK/spawn" "$(secs "$WARMUP")" 2 >/dev/null
    CEILS+=("$("$WORK/spawn" "$(secs "$DURATION")" 2)")
    log "ceiling: ${CEILS[-1]} spawns/s (spawn-and-wait loop of cat, 2 processes)"
done
finalize fw-serializing fw-streaming of-serializing of-streaming
CEIL=$(printf '%s\n' "${CEILS[@]}" | sort -n | awk '{l[NR]=$0} END {print l[int((NR+1)/2)]}')

# --- report --------------------------------------------------------------------------------------
echo
echo "Fork modes, fprocess=cat, POST 'hello', wrk -t2 -c$CONNS -d$DURATION (loopback), median of $ROUNDS rounds"
printf '%-16s %12s %10s %10s %8s %10s\n' target req/s p50_ms p99_ms errors vs_ceiling
for n in fw-serializing fw-streaming of-serializing of-streaming; do
    [ -n "${RPS[$n]:-}" ] || continue
    printf '%-16s %12s %10s %10s %8s %10s\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" \
        "${ERRS[$n]}" "$(ratio "${RPS[$n]}" "$CEIL")"
done
printf '%-16s %12s %10s %10s %8s %10s\n' ceiling "$CEIL" - - - 1.00
[ -z "$OF_NOTE" ] || echo "of-watchdog: $OF_NOTE"
echo
echo "serializing: fwatchdog/ceiling     $(ratio "${RPS[fw-serializing]}" "$CEIL")"
if [ -n "${RPS[of-serializing]:-}" ]; then
    echo "serializing: fwatchdog/of-watchdog $(ratio "${RPS[fw-serializing]}" "${RPS[of-serializing]}")"
    echo "streaming:   fwatchdog/of-watchdog $(ratio "${RPS[fw-streaming]}" "${RPS[of-streaming]}")"
fi
echo "fwatchdog: $FWATCHDOG ($(stat -c %s "$FWATCHDOG") bytes)"
exit 0
