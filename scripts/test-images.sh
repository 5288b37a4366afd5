#!/usr/bin/env bash
# Image tests with a real Docker engine (templates.md §9 items 5, 7, 8, 9, 14, 15; the templates
# issue). Nothing can be pulled here, so every base image is made locally first:
#   - shell bases (busybox + bash, static) for amd64, arm64 and armv7 from Debian's packages;
#   - a Debian (bookworm, debootstrap) amd64 toolchain image with Debian's rustc and the cross
#     linkers (the build machine's image: Rust is cross-compiled, never emulated);
#   - a Debian amd64 runtime image with python3 and nodejs (python3-http, node-http).
# Then, with our own dockerd, a local registry and qemu registered with binfmt_misc:
#   1. the watchdog image (Dockerfile, --target watchdog) for linux/amd64, linux/arm64,
#      linux/arm/v7, pushed as one manifest list;
#   2. template images built FROM that manifest list: rust-http, bash-streaming and the
#      dockerfile starter for the three platforms (one manifest list each), python3-http and
#      node-http for linux/amd64; the amd64 rust-http build goes through the real `faas-cli build`;
#   3. each platform's image pulled back from the registry and run (natively or under qemu):
#      ELF machine of its binaries, /_/health 200, the starter's answer to POST /, a non-root
#      process, a read-only root filesystem with a tmpfs /tmp, `docker stop` under 4 s with exit 0;
#   4. build_options -> ADDITIONAL_PACKAGE installs a package (bash-streaming on the Debian base).
# A step that cannot run fails the script with its reason; nothing is skipped silently.
# Prints image sizes per platform at the end.
#
# Env: WORK (default target/images), KEEP=1 leaves dockerd and the registry running,
#      FAAS_CLI (default ../shared/tools/faas-cli).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${WORK:-$ROOT/target/images}
TAG=0.1.0
REG_PORT=${REG_PORT:-5000}
REG=127.0.0.1:$REG_PORT
FAAS_CLI=${FAAS_CLI:-$ROOT/../shared/tools/faas-cli}
PLATFORMS=(linux/amd64 linux/arm64 linux/arm/v7)
mkdir -p "$WORK"

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    fail "need root to run: $*"
  fi
}
# Debian's docker CLI (another docker on PATH may lack the classic builder's BuildKit support).
docker() { DOCKER_BUILDKIT=1 DOCKER_HOST="unix://$WORK/docker.sock" /usr/bin/docker "$@"; }
# linux/arm/v7 -> armv7 (tags), deb architecture
tag_of() { case "$1" in linux/amd64) echo amd64 ;; linux/arm64) echo arm64 ;; linux/arm/v7) echo armv7 ;; esac; }
deb_of() { case "$1" in linux/amd64) echo amd64 ;; linux/arm64) echo arm64 ;; linux/arm/v7) echo armhf ;; esac; }
elf_of() { case "$1" in linux/amd64) echo x86-64 ;; linux/arm64) echo aarch64 ;; linux/arm/v7) echo "ARM, EABI5" ;; esac; }

# --- packages --------------------------------------------------------------------------------
need=()
[ -x /usr/bin/docker ] && [ -x /usr/sbin/dockerd ] || need+=(docker.io)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
[ -e /usr/lib/binfmt.d/qemu-aarch64.conf ] || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v file >/dev/null || need+=(file)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x "$FAAS_CLI" ] || fail "the real faas-cli is needed for the faas-cli build step (FAAS_CLI or ../shared/tools/faas-cli)"

# --- qemu in binfmt_misc (ARM containers) ------------------------------------------------------
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || fail "cannot mount binfmt_misc"
fi
for a in aarch64 arm; do
  if [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$a" ]; then
    as_root sh -c "cat /usr/lib/binfmt.d/qemu-$a.conf > /proc/sys/fs/binfmt_misc/register" || fail "cannot register qemu-$a"
  fi
done

# --- dockerd and the registry, each with its own folders ----------------------------------------
pids=()
cleanup() {
  [ "${KEEP:-0}" = 1 ] && { log "KEEP=1: dockerd and the registry keep running (pids ${pids[*]})"; return; }
  # dockerd runs under as_root's subshell: stop it by its pidfile (the subshell's pid is not it).
  if ((${#pids[@]})) && [ -s "$WORK/docker.pid" ]; then pids+=("$(cat "$WORK/docker.pid")"); fi
  for p in "${pids[@]}"; do as_root kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (data in $WORK/docker)"
  as_root dockerd --data-root "$WORK/docker" --exec-root "$WORK/docker-exec" --pidfile "$WORK/docker.pid" \
    -H "unix://$WORK/docker.sock" > "$WORK/dockerd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { tail -20 "$WORK/dockerd.log" >&2; fail "dockerd did not start"; }
fi
if ! curl -fsS "http://$REG/v2/" >/dev/null 2>&1; then
  log "starting the registry on $REG (data in $WORK/registry)"
  cat > "$WORK/registry.yml" <<EOF
version: 0.1
storage:
  filesystem:
    rootdirectory: $WORK/registry
  delete:
    enabled: true
http:
  addr: $REG
EOF
  /usr/bin/docker-registry serve "$WORK/registry.yml" > "$WORK/registry.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://$REG/v2/" >/dev/null || { tail -20 "$WORK/registry.log" >&2; fail "the registry did not start"; }
fi

# --- base images, made here ----------------------------------------------------------------------
# Builds an image for one platform from a prepared root folder (FROM scratch + the folder).
image_from_root() { # platform root tag
  printf 'FROM scratch\nCOPY . /\nCMD ["/bin/sh"]\n' > "$2/.Dockerfile"
  docker build -q --platform "$1" -f "$2/.Dockerfile" -t "$3" "$2" >/dev/null
  rm -f "$2/.Dockerfile"
}

# Shell bases: busybox (with its applet links) and bash, static builds from Debian.
debs="$WORK/debs"
if [ -z "$(ls "$debs"/bash-static_*_armhf.deb 2>/dev/null)" ]; then
  mkdir -p "$debs"
  log "downloading busybox-static and bash-static for amd64, arm64, armhf"
  # armhf is added only to download (its security index is broken on the mirror: ARM.md).
  as_root dpkg --add-architecture arm64
  as_root dpkg --add-architecture armhf
  as_root apt-get update -qq >/dev/null 2>&1 || true
  (cd "$debs" && apt-get download -qq busybox-static:amd64 busybox-static:arm64 busybox-static:armhf \
     bash-static:amd64 bash-static:arm64 bash-static:armhf 2>/dev/null) || dl_failed=1
  as_root dpkg --remove-architecture armhf
  as_root apt-get update -qq >/dev/null 2>&1 || true
  [ -z "${dl_failed:-}" ] || fail "cannot download the busybox/bash packages"
fi
applets=$(dpkg-deb --fsys-tarfile "$(ls "$debs"/busybox-static_*_amd64.deb)" | tar -xO ./bin/busybox > "$WORK/busybox-host" && chmod +x "$WORK/busybox-host" && "$WORK/busybox-host" --list-full)
for p in "${PLATFORMS[@]}"; do
  t=$(tag_of "$p"); d=$(deb_of "$p"); root="$WORK/root-shell-$t"
  rm -rf "$root"; mkdir -p "$root"
  dpkg-deb -x "$(ls "$debs"/busybox-static_*_"$d".deb)" "$root"
  dpkg-deb -x "$(ls "$debs"/bash-static_*_"$d".deb)" "$root"
  rm -rf "${root:?}/usr/share"
  mv "$root/bin/bash-static" "$root/bin/bash"
  for a in $applets; do
    [ -e "$root/$a" ] || { mkdir -p "$root/$(dirname "$a")"; ln -s /bin/busybox "$root/$a"; }
  done
  mkdir -p "$root/tmp" "$root/etc" "$root/root"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\n' > "$root/etc/passwd"
  printf 'root:x:0:\n' > "$root/etc/group"
  image_from_root "$p" "$root" "local/shell:$t"
done
log "shell bases: local/shell:{amd64,arm64,armv7}"

# A Debian bookworm root (amd64) for the build machine's toolchain and the interpreted runtimes.
if ! docker image inspect local/debian:bookworm >/dev/null 2>&1; then
  log "debootstrap: Debian bookworm minbase (amd64)"
  rm -rf "$WORK/debroot"
  as_root debootstrap --variant=minbase bookworm "$WORK/debroot" http://deb.debian.org/debian > "$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed"; }
  printf '%s\n' 'deb http://deb.debian.org/debian bookworm main' 'deb http://deb.debian.org/debian bookworm-updates main' \
    'deb http://deb.debian.org/debian-security bookworm-security main' > "$WORK/debroot/etc/apt/sources.list"
  rm -rf "$WORK/debroot/var/cache/apt/archives/"*.deb
  # This machine's own trust additions (a TLS-inspecting proxy's CA, say) go into the base, so
  # cargo's downloads in image builds trust what the host trusts (ca-certificates, installed
  # below, takes them in).
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    as_root mkdir -p "$WORK/debroot/usr/local/share/ca-certificates"
    as_root cp /usr/local/share/ca-certificates/*.crt "$WORK/debroot/usr/local/share/ca-certificates/"
  fi
  as_root tar -C "$WORK/debroot" -c . | docker import - local/debian:bookworm >/dev/null
  as_root rm -rf "$WORK/debroot"
fi
# The build machine's Rust: Debian's rustc, the arm64 std, the std sources (armv7) and linkers.
if ! docker image inspect local/rust-toolchain:bookworm >/dev/null 2>&1; then
  log "making local/rust-toolchain:bookworm"
  docker build -q -t local/rust-toolchain:bookworm - >/dev/null <<'DOCKERFILE'
FROM local/debian:bookworm
RUN dpkg --add-architecture arm64 \
 && apt-get update -o APT::Architectures::=amd64 -o APT::Architectures::=arm64 \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      rustc-web cargo-web rust-web-src libstd-rust-web-dev:arm64 gcc libc6-dev \
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
      ca-certificates file util-linux \
 && rm -rf /var/lib/apt/lists/*
DOCKERFILE
fi
# python3 and nodejs (amd64) for python3-http and node-http.
if ! docker image inspect local/runtimes:bookworm >/dev/null 2>&1; then
  log "making local/runtimes:bookworm"
  docker build -q -t local/runtimes:bookworm - >/dev/null <<'DOCKERFILE'
FROM local/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 nodejs \
 && rm -rf /var/lib/apt/lists/*
DOCKERFILE
fi
log "bases: local/debian:bookworm, local/rust-toolchain:bookworm, local/runtimes:bookworm"

# --- registry helpers ----------------------------------------------------------------------------
# Pushes NAME:TAG-<platform tag> for each given platform, then one manifest list NAME:TAG.
publish() { # name platform...
  local name=$1; shift
  local refs=()
  for p in "$@"; do
    docker push -q "$REG/$name:$TAG-$(tag_of "$p")" >/dev/null
    refs+=("$REG/$name:$TAG-$(tag_of "$p")")
  done
  docker manifest rm "$REG/$name:$TAG" >/dev/null 2>&1 || true
  docker manifest create --insecure "$REG/$name:$TAG" "${refs[@]}" >/dev/null
  for p in "$@"; do
    [ "$p" = linux/arm/v7 ] && docker manifest annotate --os linux --arch arm --variant v7 "$REG/$name:$TAG" "$REG/$name:$TAG-armv7"
  done
  docker manifest push --insecure --purge "$REG/$name:$TAG" >/dev/null
  local listed
  listed=$(docker manifest inspect --insecure "$REG/$name:$TAG" | grep -c '"architecture"')
  [ "$listed" = "$#" ] || fail "$REG/$name:$TAG lists $listed platforms, not $#"
  log "pushed $REG/$name:$TAG ($*)"
}

SHA=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

# The shell base as one manifest list, so templates name one BASE_IMAGE for every platform.
for p in "${PLATFORMS[@]}"; do docker tag "local/shell:$(tag_of "$p")" "$REG/shell:$TAG-$(tag_of "$p")"; done
publish shell "${PLATFORMS[@]}"

# --- 1. the watchdog image ---------------------------------------------------------------------
for p in "${PLATFORMS[@]}"; do
  t=$(tag_of "$p")
  log "building the watchdog image for $p (cross-compiled in local/rust-toolchain)"
  docker build -q --platform "$p" --target watchdog --build-arg RUST_IMAGE=local/rust-toolchain:bookworm \
    --build-arg GIT_SHA="$SHA" -t "$REG/fwatchdog:$TAG-$t" . >/dev/null
done
publish fwatchdog "${PLATFORMS[@]}"
# Dockerfile.armhf (linux/arm/v7 alone) and the gateway image (amd64 here), each run once below.
log "building Dockerfile.armhf --target watchdog"
docker build -q --platform linux/arm/v7 -f Dockerfile.armhf --target watchdog --build-arg RUST_IMAGE=local/rust-toolchain:bookworm \
  --build-arg GIT_SHA="$SHA" -t local/fwatchdog:armhf . >/dev/null
log "building the gateway image for linux/amd64"
docker build -q --platform linux/amd64 --target gateway --build-arg RUST_IMAGE=local/rust-toolchain:bookworm \
  --build-arg GATEWAY_BASE_IMAGE=local/debian:bookworm --build-arg GIT_SHA="$SHA" -t local/gateway:amd64 . >/dev/null

# --- 2. template images ----------------------------------------------------------------------------
# A faas-cli project with this checkout's templates (copying template/ by hand is what
# `faas-cli template pull` does; the pull itself is tested by tests/tests/templates.rs).
proj="$WORK/project"
rm -rf "$proj"; mkdir -p "$proj" "$WORK/bin"
cp -r "$ROOT/template" "$proj/template"
# faas-cli runs `docker build`: Debian's CLI against our dockerd.
printf '#!/bin/sh\nexec /usr/bin/docker "$@"\n' > "$WORK/bin/docker"; chmod +x "$WORK/bin/docker"
cli() { (cd "$proj" && PATH="$WORK/bin:$PATH" HOME="$WORK/faas-home" DOCKER_HOST="unix://$WORK/docker.sock" DOCKER_BUILDKIT=1 "$FAAS_CLI" "$@"); }
cli new fn-rust --lang rust-http -q >/dev/null
cli new fn-bash --lang bash-streaming --append stack.yaml -q >/dev/null
cli new fn-docker --lang dockerfile --append stack.yaml -q >/dev/null
cli new fn-python --lang python3-http --append stack.yaml -q >/dev/null
cli new fn-node --lang node-http --append stack.yaml -q >/dev/null
# 5: build_options -> ADDITIONAL_PACKAGE (jq from Debian, on the Debian base).
cli new fn-jq --lang bash-streaming --append stack.yaml -q >/dev/null
cat >> "$proj/stack.yaml" <<YAML
    build_options:
      - jq
    build_args:
      BASE_IMAGE: local/debian:bookworm
YAML

# fn name, template image name, platforms, build args
declare -A BASE=([fn-rust]="" [fn-bash]="$REG/shell:$TAG" [fn-docker]="$REG/shell:$TAG" [fn-python]=local/runtimes:bookworm [fn-node]=local/runtimes:bookworm)
declare -A IMAGE=([fn-rust]=rust-http [fn-bash]=bash-streaming [fn-docker]=dockerfile [fn-python]=python3-http [fn-node]=node-http)
ALL="${PLATFORMS[*]}"
declare -A PLATS=([fn-rust]="$ALL" [fn-bash]="$ALL" [fn-docker]="$ALL" [fn-python]=linux/amd64 [fn-node]=linux/amd64)
args_of() { # fn
  local a=(--build-arg "WATCHDOG_IMAGE=$REG/fwatchdog:$TAG" --build-arg RUST_IMAGE=local/rust-toolchain:bookworm)
  [ -n "${BASE[$1]}" ] && a+=(--build-arg "BASE_IMAGE=${BASE[$1]}")
  printf '%s\n' "${a[@]}"
}

# Template builds take the watchdog from the registry's list, never a stale local copy.
docker rmi -f "$REG/fwatchdog:$TAG" >/dev/null 2>&1 || true

# linux/amd64 through the real `faas-cli build` (it assembles build/<fn> and runs docker build).
for fn in fn-rust fn-bash fn-docker fn-python fn-node; do
  mapfile -t a < <(args_of "$fn")
  log "faas-cli build $fn (${IMAGE[$fn]}, linux/amd64)"
  cli build -f stack.yaml --filter "$fn" "${a[@]}" > "$WORK/build-$fn.log" 2>&1 || { tail -30 "$WORK/build-$fn.log" >&2; fail "faas-cli build $fn"; }
  docker tag "$fn:latest" "$REG/${IMAGE[$fn]}:$TAG-amd64"
done
log "faas-cli build fn-jq (build_options: [jq])"
cli build -f stack.yaml --filter fn-jq --build-arg "WATCHDOG_IMAGE=$REG/fwatchdog:$TAG" > "$WORK/build-fn-jq.log" 2>&1 \
  || { tail -30 "$WORK/build-fn-jq.log" >&2; fail "faas-cli build fn-jq"; }
jqv=$(docker run --rm --entrypoint jq fn-jq:latest --version) || fail "fn-jq: jq is not installed in the image"
log "build_options [jq] -> ADDITIONAL_PACKAGE=jq: the image has $jqv"

# The other platforms from the build contexts faas-cli assembled, cross-built by BuildKit.
for fn in fn-rust fn-bash fn-docker; do
  mapfile -t a < <(args_of "$fn")
  for p in linux/arm64 linux/arm/v7; do
    log "docker build $fn (${IMAGE[$fn]}, $p)"
    docker build -q --platform "$p" "${a[@]}" -t "$REG/${IMAGE[$fn]}:$TAG-$(tag_of "$p")" "$proj/build/$fn" >/dev/null
  done
done
for fn in fn-rust fn-bash fn-docker fn-python fn-node; do
  # shellcheck disable=SC2086
  publish "${IMAGE[$fn]}" ${PLATS[$fn]}
done

# --- 3. pull each platform back and run it ---------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
elapsed_ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
sizes=()
# check IMAGE PLATFORM ANSWER [BINARY...]: ELF machine, health, answer, non-root, read-only root,
# docker stop under 4 s with exit code 0.
check() {
  local img=$1 p=$2 want=$3; shift 3
  local ref="$REG/$img:$TAG" what="$img ($p)"
  docker rmi -f "$ref" >/dev/null 2>&1 || true
  docker pull -q --platform "$p" "$ref" >/dev/null || fail "$what: pull"
  local arch
  arch=$(docker image inspect -f '{{.Os}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}' "$ref")
  [ "$arch" = "$p" ] || fail "$what: pulled $arch"
  sizes+=("$(printf '%-16s %-14s %10s bytes' "$img" "$p" "$(docker image inspect -f '{{.Size}}' "$ref")")")
  # 7: every binary of ours in the image is an ELF file for that machine.
  local cid bin info
  cid=$(docker create --platform "$p" "$ref")
  for bin in /usr/bin/fwatchdog "$@"; do
    info=$(docker cp "$cid:$bin" - | tar -xO | file -b -)
    case "$info" in *ELF*"$(elf_of "$p")"*) ;; *) docker rm "$cid" >/dev/null; fail "$what: $bin is $info" ;; esac
  done
  docker rm "$cid" >/dev/null
  # 8, 9: runs with a read-only root and a tmpfs /tmp, healthy, answers, not as root.
  local port
  port=$(free_port)
  cid=$(docker run -d --platform "$p" --read-only --tmpfs /tmp:rw,mode=1777 -p "127.0.0.1:$port:8080" "$ref")
  local ok=""
  for _ in $(seq 300); do
    if curl -fsS "http://127.0.0.1:$port/_/health" >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.2
  done
  [ -n "$ok" ] || { docker logs "$cid" >&2; docker rm -f "$cid" >/dev/null; fail "$what: /_/health never answered 200"; }
  local got
  got=$(curl -sS -d Pi "http://127.0.0.1:$port/")
  [ "$got" = "$want" ] || { docker logs "$cid" >&2; docker rm -f "$cid" >/dev/null; fail "$what: POST / answered '$got', not '$want'"; }
  local pid uid
  pid=$(docker inspect -f '{{.State.Pid}}' "$cid")
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
  [ "$uid" != 0 ] || { docker rm -f "$cid" >/dev/null; fail "$what: runs as root"; }
  for _ in $(seq 50); do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$cid")" = healthy ] && break; sleep 0.2
  done
  local health
  health=$(docker inspect -f '{{.State.Health.Status}}' "$cid")
  [ "$health" = healthy ] || { docker rm -f "$cid" >/dev/null; fail "$what: HEALTHCHECK says $health"; }
  # 15: SIGTERM as PID 1, drained within healthcheck_interval=2s, exit code 0.
  local t0 ms code
  t0=$(date +%s%N)
  docker stop "$cid" >/dev/null
  ms=$(elapsed_ms "$t0")
  code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
  docker rm "$cid" >/dev/null
  if [ "$ms" -ge 4000 ] || [ "$code" != 0 ]; then fail "$what: docker stop took $ms ms, exit code $code"; fi
  log "ok: $what: uid $uid, healthy, answered, docker stop $ms ms exit 0, read-only root"
}

for p in "${PLATFORMS[@]}"; do
  # The watchdog image alone: the binary at /fwatchdog, for that machine, runs (--version).
  ref="$REG/fwatchdog:$TAG"
  docker rmi -f "$ref" >/dev/null 2>&1 || true
  docker pull -q --platform "$p" "$ref" >/dev/null || fail "fwatchdog ($p): pull"
  v=$(docker run --rm --platform "$p" "$ref" --version) || fail "fwatchdog ($p): --version"
  cid=$(docker create --platform "$p" "$ref")
  info=$(docker cp "$cid:/fwatchdog" - | tar -xO | file -b -)
  docker rm "$cid" >/dev/null
  case "$info" in *ELF*"$(elf_of "$p")"*) ;; *) fail "fwatchdog ($p): /fwatchdog is $info" ;; esac
  sizes+=("$(printf '%-16s %-14s %10s bytes' fwatchdog "$p" "$(docker image inspect -f '{{.Size}}' "$ref")")")
  log "ok: fwatchdog ($p): $v"
  check rust-http "$p" "Hello from Rust, Pi!" /home/app/handler
  check bash-streaming "$p" "PI"
  check dockerfile "$p" "Pi"
done
check python3-http linux/amd64 "Hello from Python, Pi!"

# Dockerfile.armhf's watchdog image: arm/v7, runs under qemu.
v=$(docker run --rm local/fwatchdog:armhf --version) || fail "Dockerfile.armhf watchdog: --version"
[ "$(docker image inspect -f '{{.Architecture}}/{{.Variant}}' local/fwatchdog:armhf)" = arm/v7 ] || fail "Dockerfile.armhf: not arm/v7"
cid=$(docker create local/fwatchdog:armhf)
info=$(docker cp "$cid:/fwatchdog" - | tar -xO | file -b -)
docker rm "$cid" >/dev/null
case "$info" in *ELF*"ARM, EABI5"*) ;; *) fail "Dockerfile.armhf: /fwatchdog is $info" ;; esac
sizes+=("$(printf '%-16s %-14s %10s bytes' 'fwatchdog (armhf)' linux/arm/v7 "$(docker image inspect -f '{{.Size}}' local/fwatchdog:armhf)")")
log "ok: Dockerfile.armhf watchdog: $v"
# The gateway image serves /healthz and the API, and stops on SIGTERM with exit 0.
port=$(free_port)
cid=$(docker run -d -e basic_auth=false -p "127.0.0.1:$port:8080" local/gateway:amd64)
ok=""
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && { ok=1; break; }; sleep 0.2; done
[ -n "$ok" ] || { docker logs "$cid" >&2; fail "gateway image: /healthz never answered"; }
curl -fsS "http://127.0.0.1:$port/system/functions" | grep -q '^\[' || fail "gateway image: /system/functions"
docker stop "$cid" >/dev/null
[ "$(docker inspect -f '{{.State.ExitCode}}' "$cid")" = 0 ] || { docker logs "$cid" >&2; fail "gateway image: exit code after SIGTERM"; }
docker rm "$cid" >/dev/null
sizes+=("$(printf '%-16s %-14s %10s bytes' gateway linux/amd64 "$(docker image inspect -f '{{.Size}}' local/gateway:amd64)")")
log "ok: gateway image (linux/amd64): /healthz, /system/functions, exit 0 on docker stop"
check node-http linux/amd64 "Hello from Node.js, Pi!"

echo
echo "Image sizes (uncompressed, as docker image inspect reports them):"
printf '%s\n' "${sizes[@]}"
echo "python3-http and node-http: linux/amd64 only (their local base, local/runtimes, is amd64)."
