#!/usr/bin/env bash
# Static release binaries for aarch64 and armv7 (and x86_64 with the same toolchain), built with
# Debian's rustc and cross linkers as ../shared/ARM.md describes, then a table of their sizes.
#   aarch64-unknown-linux-gnu       glibc static, Debian's prebuilt arm64 std
#   armv7-unknown-linux-gnueabihf   glibc static, std built from source (rust-web-src)
#   x86_64-unknown-linux-gnu        glibc static (the musl fwatchdog is scripts/build-static.sh)
# Installs the Debian packages it needs when missing (arm64 added as a foreign architecture;
# armhf never is: its security index is broken on the mirror, hence std from source).
#
# Usage: scripts/build-arm.sh [--gateway] [TARGET...]
#   --gateway   build the gateway too (default: fwatchdog only)
#   TARGET      aarch64, armv7, x86_64 (default: all three)
# Env: CHECK_RUN=0 skips running each binary's --version (under qemu-user for ARM).
# Output: target/cross/<triple>/release/{fwatchdog,gateway}; sizes on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="$ROOT/target/cross"

log() { printf '==> %s\n' "$*" >&2; }

bins=(fwatchdog)
targets=()
for a in "$@"; do
  case "$a" in
    --gateway) bins+=(gateway) ;;
    aarch64|armv7|x86_64) targets+=("$a") ;;
    *) echo "usage: scripts/build-arm.sh [--gateway] [aarch64|armv7|x86_64]..." >&2; exit 2 ;;
  esac
done
((${#targets[@]})) || targets=(aarch64 armv7 x86_64)

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; exit 1
  fi
}

# --- packages ------------------------------------------------------------------------------
need=()
[ -x /usr/bin/rustc ] || need+=(rustc-web)
command -v cargo >/dev/null || need+=(cargo-web)
[ -d "$(/usr/bin/rustc --print sysroot 2>/dev/null)/lib/rustlib/src/rust/library" ] 2>/dev/null || need+=(rust-web-src)
[ -d "$(/usr/bin/rustc --print sysroot 2>/dev/null)/lib/rustlib/aarch64-unknown-linux-gnu/lib" ] 2>/dev/null \
  || need+=(libstd-rust-web-dev:arm64)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null || need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
# CHECK_RUN=0 (image builds): no qemu, the binaries are not run here.
[ "${CHECK_RUN:-1}" = 0 ] || command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v file >/dev/null || need+=(file)
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root dpkg --add-architecture arm64
  as_root apt-get update -qq -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

packages=()
for b in "${bins[@]}"; do
  case "$b" in fwatchdog) packages+=(-p watchdog --bin fwatchdog) ;; gateway) packages+=(-p gateway --bin gateway) ;; esac
done

triple_of() {
  case "$1" in
    aarch64) echo aarch64-unknown-linux-gnu ;;
    armv7) echo armv7-unknown-linux-gnueabihf ;;
    x86_64) echo x86_64-unknown-linux-gnu ;;
  esac
}

# --- build -----------------------------------------------------------------------------------
for t in "${targets[@]}"; do
  triple=$(triple_of "$t")
  up=$(echo "$triple" | tr 'a-z-' 'A-Z_')
  low=$(echo "$triple" | tr '-' '_')
  extra=()
  case "$t" in
    aarch64) cc=aarch64-linux-gnu-gcc ;;
    armv7) cc=arm-linux-gnueabihf-gcc
           # No prebuilt armhf std: build it from source (nightly flag on the stable compiler).
           extra=("-Zbuild-std=std,panic_unwind" "-Zbuild-std-features=panic-unwind,optimize_for_size") ;;
    x86_64) cc=x86_64-linux-gnu-gcc ;;
  esac
  log "building ${bins[*]} for $triple"
  env RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
      "CARGO_TARGET_${up}_LINKER=$cc" "CC_${low}=$cc" "AR_${low}=${cc%-gcc}-ar" \
      RUSTFLAGS='-C target-feature=+crt-static' \
      flock /tmp/cargo.lock cargo build --release --target "$triple" "${packages[@]}" "${extra[@]}"
done

# --- check and report ------------------------------------------------------------------------
rc=0
printf '%-32s %-10s %12s  %s\n' target binary bytes file
for t in "${targets[@]}"; do
  triple=$(triple_of "$t")
  for b in "${bins[@]}"; do
    out="$CARGO_TARGET_DIR/$triple/release/$b"
    info=$(file -b "$out")
    printf '%-32s %-10s %12s  %s\n' "$triple" "$b" "$(stat -c %s "$out")" "${info%%, BuildID*}"
    case "$info" in *"statically linked"*|*"static-pie linked"*) ;; *) log "FAIL: $out is not static"; rc=1 ;; esac
    # Runs on this machine (natively or under qemu-user): prints its version.
    [ "${CHECK_RUN:-1}" = 0 ] && continue
    case "$t" in aarch64) run=(qemu-aarch64-static) ;; armv7) run=(qemu-arm-static) ;; *) run=() ;; esac
    if ! ver=$("${run[@]}" "$out" --version 2>&1); then log "FAIL: $out --version: $ver"; rc=1; fi
  done
done
exit $rc
