# The fwatchdog and gateway images for linux/amd64, linux/arm64 and linux/arm/v7 from one
# Dockerfile. The binaries are cross-compiled on the build machine (BUILDPLATFORM) for the
# target platform by scripts/build-arm.sh (static glibc; armv7's std from source), never
# emulated. Needs BuildKit (DOCKER_BUILDKIT=1 or docker buildx):
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 --target watchdog \
#     -t REGISTRY/fwatchdog:0.1.0 --push .
#   docker buildx build --platform ... --target gateway -t REGISTRY/gateway:0.1.0 --push .
# Build args: RUST_IMAGE (a Debian-based image with cargo for the build machine; the script
# installs Debian's rustc and the cross linkers when missing, which needs network access; CI makes
# one locally with everything installed), GATEWAY_BASE_IMAGE (the gateway's base: it runs the
# local runtime's functions, so it needs their runtimes; DNS needs glibc's NSS modules).
# Dockerfile.armhf is the same for linux/arm/v7 alone.
ARG RUST_IMAGE=rust:1-bookworm
ARG GATEWAY_BASE_IMAGE=debian:bookworm-slim

FROM --platform=${BUILDPLATFORM} ${RUST_IMAGE} AS source
ARG TARGETPLATFORM
ARG TARGETARCH
ARG TARGETVARIANT
# No .git in the context: --build-arg GIT_SHA=$(git rev-parse --short HEAD) names the commit.
ARG GIT_SHA=""
ENV GIT_SHA=${GIT_SHA}
WORKDIR /src
COPY . .
# TARGETARCH/TARGETVARIANT -> the script's target name (templates.md §6).
RUN case "${TARGETARCH}/${TARGETVARIANT}" in \
      amd64/*) echo x86_64 ;; arm64/*) echo aarch64 ;; arm/v7) echo armv7 ;; \
      *) echo "unsupported platform ${TARGETPLATFORM}" >&2; exit 1 ;; \
    esac > /target

FROM source AS build-watchdog
RUN CHECK_RUN=0 scripts/build-arm.sh "$(cat /target)" \
    && mkdir -p /out && cp target/cross/*/release/fwatchdog /out/

FROM source AS build-gateway
RUN CHECK_RUN=0 scripts/build-arm.sh --gateway "$(cat /target)" \
    && mkdir -p /out && cp target/cross/*/release/fwatchdog target/cross/*/release/gateway /out/

# The watchdog image: the binary alone, at /fwatchdog (templates copy it from here).
FROM --platform=${TARGETPLATFORM} scratch AS watchdog
COPY --from=build-watchdog /out/fwatchdog /fwatchdog
USER 10001:10001
ENTRYPOINT ["/fwatchdog"]

FROM --platform=${TARGETPLATFORM} ${GATEWAY_BASE_IMAGE} AS gateway
COPY --from=build-gateway /out/gateway /usr/bin/gateway
COPY --from=build-gateway /out/fwatchdog /usr/bin/fwatchdog
ENV watchdog_path="/usr/bin/fwatchdog"
ENV state_dir="/var/lib/gateway"
EXPOSE 8080 8082
ENTRYPOINT ["/usr/bin/gateway"]

# The default target: the watchdog image.
FROM watchdog
