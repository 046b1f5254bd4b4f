# syntax=docker/dockerfile:1
# The videoproject node: a release build in a slim Debian with ffmpeg.
#   docker build -t videoproject .
# Dependencies are built in their own layer (cargo-chef), so a change to the
# source rebuilds only the crate itself.

FROM rust:1.92.0-slim-bookworm AS chef
# aws-lc-rs (TLS) builds C and assembly code
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang perl \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin videoproject
COPY . .
RUN cargo build --release --locked --bin videoproject \
    && strip target/release/videoproject

FROM debian:12.12-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/videoproject --shell /usr/sbin/nologin videoproject \
    && mkdir -p /var/lib/videoproject/media /var/lib/videoproject/cores \
    && chown -R videoproject:videoproject /var/lib/videoproject \
    && curl -fsS --proto =https --tlsv1.2 -o /etc/ssl/certs/rds-global-bundle.pem \
       https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem \
    && grep -q "BEGIN CERTIFICATE" /etc/ssl/certs/rds-global-bundle.pem
# Amazon RDS's CA bundle, above: DATABASE_URL names it for sslmode=verify-full
# (sslrootcert=/etc/ssl/certs/rds-global-bundle.pem; see docs/deploy.md)
COPY --from=builder /build/target/release/videoproject /usr/local/bin/videoproject
# the defaults are built into the binary; the file documents them, and an
# override can be mounted beside it and named in VP_CONFIG
COPY config/ /etc/videoproject/
ENV VP_HTTP_ADDR=0.0.0.0:8080 \
    VP_CLUSTER_ADDR=0.0.0.0:4697 \
    VP_MEDIA_URL=file:///var/lib/videoproject/media \
    VP_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/videoproject
EXPOSE 8080 4697
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
# tini reaps ffmpeg children and passes SIGTERM on for the graceful leave
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/videoproject"]
CMD ["serve"]
