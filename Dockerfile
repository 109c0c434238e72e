# fleetbus binaries (fleetbus, fleetbus-hub, fleetbus-spoke) in a small image that runs as a
# non-root user.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bins \
 && cp target/release/fleetbus target/release/fleetbus-hub target/release/fleetbus-spoke /usr/local/bin/

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/fleetbus fleetbus \
 && mkdir -p /pki /bootstrap /var/lib/fleetbus-spoke \
 && chown fleetbus /pki /bootstrap /var/lib/fleetbus-spoke
COPY --from=build /usr/local/bin/fleetbus /usr/local/bin/fleetbus-hub /usr/local/bin/fleetbus-spoke /usr/local/bin/
USER 10001
ENTRYPOINT []
CMD ["fleetbus", "--help"]
