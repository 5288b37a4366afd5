#!/usr/bin/env bash
# Build a fully static, stripped x86_64 musl `fwatchdog` (recipe: ARM.md "x86_64 musl").
#
# Debian ships no musl std, so std is built from source (rust-web-src) with -Zbuild-std using
# Debian's rustc at /usr/bin/rustc. Debian's LLVM libunwind.a is built with fortify, hence the
# __fprintf_chk shim; relocation-model=static keeps the result from being silently linked to the
# musl loader.
#
# Env: MAX_BYTES (default 1572864 = 1.5 MiB) size limit; CARGO_PROFILE_RELEASE_OPT_LEVEL etc. are
# passed through to cargo (e.g. CARGO_PROFILE_RELEASE_OPT_LEVEL=z to compare sizes).
# Output: target/x86_64-unknown-linux-musl/release/fwatchdog
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=x86_64-unknown-linux-musl
MAX_BYTES=${MAX_BYTES:-1572864}
OUT="$ROOT/target/$TARGET/release/fwatchdog"
LINKDIR="$ROOT/target/musl-linkdir"

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $*"; exit 1
    fi
}

# --- packages ------------------------------------------------------------------------------
unwind_lib() {
    # Highest-versioned LLVM libunwind.a (not the nongnu libunwind).
    ls -1 /usr/lib/llvm-*/lib/libunwind.a 2>/dev/null | sort -V | tail -n1
}

need=()
[ -x /usr/bin/rustc ] || need+=(rustc-web)
[ -d "$(/usr/bin/rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ] 2>/dev/null \
    || need+=(rust-web-src)
command -v cargo >/dev/null || need+=(cargo-web)
command -v musl-gcc >/dev/null || need+=(musl-tools)
command -v file >/dev/null || need+=(file)
command -v ar >/dev/null || need+=(binutils)
if [ ${#need[@]} -gt 0 ] || [ -z "$(unwind_lib)" ]; then
    log "installing packages: ${need[*]:-} (and LLVM libunwind if missing)"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update
    if [ -z "$(unwind_lib)" ]; then
        # Pick the newest libunwind-N-dev the mirror offers (LLVM's unwinder).
        pkg=$(apt-cache search --names-only '^libunwind-[0-9]+-dev$' | awk '{print $1}' | sort -V | tail -n1)
        [ -n "$pkg" ] || { log "no libunwind-N-dev package found"; exit 1; }
        need+=("$pkg")
    fi
    as_root apt-get install -y --no-install-recommends "${need[@]}"
fi
UNWIND=$(unwind_lib)
[ -n "$UNWIND" ] || { log "LLVM libunwind.a not found under /usr/lib/llvm-*/lib"; exit 1; }

# --- link dir: fortify shim + LLVM libunwind ------------------------------------------------
mkdir -p "$LINKDIR"
cat > "$LINKDIR/shim.c" <<'EOF'
#include <stdarg.h>
#include <stdio.h>
int __fprintf_chk(FILE *f, int flag, const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    int r = vfprintf(f, fmt, ap); va_end(ap); (void)flag; return r;
}
EOF
musl-gcc -O2 -c "$LINKDIR/shim.c" -o "$LINKDIR/shim.o"
rm -f "$LINKDIR/libfortifyshim.a"
ar rcs "$LINKDIR/libfortifyshim.a" "$LINKDIR/shim.o"
cp -f "$UNWIND" "$LINKDIR/libunwind.a"
log "libunwind: $UNWIND"

# --- build -----------------------------------------------------------------------------------
log "building $TARGET (opt-level ${CARGO_PROFILE_RELEASE_OPT_LEVEL:-from Cargo.toml})"
RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=musl-gcc CC_x86_64_unknown_linux_musl=musl-gcc \
CFLAGS_x86_64_unknown_linux_musl="-DMI_DEFAULT_ARENA_EAGER_COMMIT=0" \
RUSTFLAGS="-C link-self-contained=no -C relocation-model=static -C target-feature=+crt-static -L $LINKDIR -l static=fortifyshim -C link-arg=-lgcc" \
    flock /tmp/cargo.lock cargo build --release -p watchdog --bin fwatchdog ${FEATURES-"--features=mimalloc"} \
        -Zbuild-std=std,panic_unwind -Zbuild-std-features="${BUILD_STD_FEATURES-panic-unwind,optimize_for_size}" --target "$TARGET"

# --- checks ----------------------------------------------------------------------------------
[ -f "$OUT" ] || { log "missing $OUT"; exit 1; }
finfo=$(file -b "$OUT")
size=$(stat -c %s "$OUT")
echo "path: $OUT"
echo "file: $finfo"
echo "size: $size bytes (limit $MAX_BYTES)"
rc=0
if ver=$("$OUT" --version 2>&1); then echo "version: $ver"; else
    log "FAIL: $OUT --version exited non-zero: $ver"; rc=1
fi
case "$finfo" in
    *"statically linked"*) ;;
    *) log "FAIL: not statically linked"; rc=1 ;;
esac
case "$finfo" in
    *", stripped"*|*" stripped"*) ;;
    *) log "WARN: not stripped" ;;
esac
if [ "$size" -gt "$MAX_BYTES" ]; then
    log "FAIL: $size bytes > $MAX_BYTES"; rc=1
fi
exit $rc
