# fleetbus binaries (fleetbus, fleetbus-hub, fleetbus-spoke) in a small image that runs as a
# non-root user (uid 10001).
#
#   docker build .                       the binaries built from source in a rust: image
#   docker build --target prebuilt \     binaries already built on the host, copied from bin/
#     --build-arg RUNTIME_BASE=<image>   of the build context (no rust: image needed); the base
#                                        needs a shell and the libraries the binaries link
# The stages needed by `prebuilt` come first, so even the classic builder never pulls rust:.
ARG RUNTIME_BASE=debian:bookworm-slim

FROM ${RUNTIME_BASE} AS runtime
RUN mkdir -p /pki /bootstrap /var/lib/fleetbus-spoke /var/lib/fleetbus \
 && (grep -q ':10001:' /etc/passwd || echo 'fleetbus:x:10001:10001::/var/lib/fleetbus:/bin/sh' >> /etc/passwd) \
 && chown 10001 /pki /bootstrap /var/lib/fleetbus-spoke /var/lib/fleetbus
ENTRYPOINT []
CMD ["fleetbus", "--help"]

FROM runtime AS prebuilt
COPY bin/fleetbus bin/fleetbus-hub bin/fleetbus-spoke /usr/local/bin/
USER 10001

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && cp target/release/fleetbus target/release/fleetbus-hub target/release/fleetbus-spoke /usr/local/bin/

FROM runtime
COPY --from=build /usr/local/bin/fleetbus /usr/local/bin/fleetbus-hub /usr/local/bin/fleetbus-spoke /usr/local/bin/
USER 10001
