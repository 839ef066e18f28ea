# syntax=docker/dockerfile:1
#
# The kafka-relay image: the release binary on Debian bookworm, as a non-root
# user. Build from the repository's root:
#
#   docker build -t kafka-relay:0.1.0 .
#
# Run it with a configuration mounted at /etc/kafka-relay/relay.toml and the
# WAL on a volume (wal.dir; /var/lib/kafka-relay/wal in the examples):
#
#   docker run --rm \
#     -v "$PWD/relay.toml:/etc/kafka-relay/relay.toml:ro" \
#     -v kafka-relay-wal:/var/lib/kafka-relay/wal \
#     kafka-relay:0.1.0
#
# Kubernetes: deploy/kubernetes/README.md.

# The compiler the project is built and tested with (rustc 1.95.0). Not the
# 1.85 of Cargo.toml's rust-version: Cargo.lock pins sha2 0.11.1, whose own
# rust-version is 1.88, and cargo refuses an older compiler for it, so 1.88
# is the oldest that can work at all.
ARG RUST_VERSION=1.95

# ---------------------------------------------------------------- builder
# The builder and the runtime stage must be the same Debian release: the
# binary links the system's glibc, OpenSSL (libssl3) and zlib dynamically.
FROM rust:${RUST_VERSION}-slim-bookworm AS builder

# rdkafka is built with the features cmake-build, ssl and zstd, which means:
# - librdkafka itself is compiled from source with CMake: cmake, make, and a
#   C and a C++ compiler (it builds its C++ wrapper too);
# - ssl: openssl-sys links the system OpenSSL, found with pkg-config
#   (libssl-dev). librdkafka gets SASL SCRAM and OAUTHBEARER with it; SASL
#   GSSAPI (Kerberos) is not built in (no gssapi feature, no libsasl2);
# - zstd: zstd-sys compiles its bundled zstd (no libzstd-dev needed);
# - zlib (rdkafka-sys's default libz feature): libz-sys uses the system
#   zlib when pkg-config finds zlib1g-dev, else it compiles its own.
# - libcurl4-openssl-dev, for its header only: rdkafka's curl feature is off
#   (WITH_CURL=0, so no OIDC token fetching and no libcurl in the binary),
#   yet librdkafka 2.12's rdkafka_conf.c includes <curl/curl.h> whenever
#   WITH_OAUTHBEARER_OIDC is defined, and its CMake config header always
#   defines it (to 0 here). Without the header the build stops with
#   "curl/curl.h: No such file or directory".
# No perl: OpenSSL is not vendored.
# Versions are not pinned: a stable Debian release only takes fixes, and a
# pinned version disappears from the archive with the next one.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake \
      g++ \
      gcc \
      libc6-dev \
      libcurl4-openssl-dev \
      libssl-dev \
      make \
      pkg-config \
      zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Only what the release binary is built from: the crate's tests, benches,
# docs and fuzz targets are not needed (see .dockerignore).
COPY Cargo.toml Cargo.lock ./
COPY src ./src

# The registry and target caches survive between builds on the same builder
# (the first build compiles librdkafka: several minutes). The binary is
# copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/kafka-relay /out/kafka-relay

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim

# libssl3: the binary links OpenSSL (TLS, SASL SCRAM). ca-certificates:
# with no ssl.ca.location set, librdkafka verifies brokers against
# OpenSSL's default paths, which Debian points at /etc/ssl/certs.
# (zlib1g, libgcc-s1 and libc6 are part of the base image.)
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates \
      libssl3 \
 && rm -rf /var/lib/apt/lists/*

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it and
# fsGroup can give it the WAL volume.
RUN groupadd --gid 10001 kafka-relay \
 && useradd --uid 10001 --gid kafka-relay \
      --home-dir /var/lib/kafka-relay --no-create-home \
      --shell /usr/sbin/nologin kafka-relay \
 && install -d -o kafka-relay -g kafka-relay -m 0750 \
      /var/lib/kafka-relay /var/lib/kafka-relay/wal \
 && install -d -m 0755 /etc/kafka-relay

COPY --from=builder /out/kafka-relay /usr/local/bin/kafka-relay
# Every key, with its defaults, for reference; the image has no relay.toml:
# mount one at /etc/kafka-relay/relay.toml.
COPY examples/relay.toml /usr/share/doc/kafka-relay/relay.example.toml

USER 10001:10001
WORKDIR /var/lib/kafka-relay
# The admin endpoint's port when [admin] listen = "0.0.0.0:9644" (the
# endpoint is off unless the configuration sets listen).
EXPOSE 9644

# SIGTERM (docker stop, Kubernetes) makes `run` finish or abort its open
# transaction, write buffered records to the WAL and exit 0. kafka-relay is
# PID 1 here and handles SIGTERM itself; give it time to do so
# (docker stop --time, terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["kafka-relay"]
CMD ["run", "--config", "/etc/kafka-relay/relay.toml"]
