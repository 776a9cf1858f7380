# syntax=docker/dockerfile:1
#
# Warren in a container: one static binary (musl) on an empty base, a data
# volume, RabbitMQ's ports. A drop-in for rabbitmq:3-management in compose
# files and CI (see "Container" in the README):
#
#   docker build -t warren .
#   docker run -d -p 5672:5672 -p 15672:15672 -p 15692:15692 warren
#
# The same environment variables work as with RabbitMQ's image:
# RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS, RABBITMQ_DEFAULT_VHOST; and
# every WARREN_… variable of `warren --help`.

# Any Rust from 1.89 (the crate's rust-version) on; "1" is the newest 1.x.
ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
WORKDIR /src
# musl links the C library statically; no C compiler beyond the image's is
# needed (no dependency builds C code).
RUN case "${TARGETARCH:-amd64}" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "unsupported architecture ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target \
    && rustup target add "$(cat /rust-target)"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin warren --target "$(cat /rust-target)" \
    && mkdir -p /rootfs/usr/local/bin /rootfs/var/lib/warren \
    && cp "target/$(cat /rust-target)/release/warren" /rootfs/usr/local/bin/warren \
    && ln -s warren /rootfs/usr/local/bin/rabbitmqctl \
    && ln -s warren /rootfs/usr/local/bin/rabbitmq-diagnostics

FROM scratch
# The binary, and rabbitmqctl / rabbitmq-diagnostics as links to it: health
# checks written for RabbitMQ's image (`rabbitmq-diagnostics -q ping`) and
# scripts calling `rabbitmqctl list_queues` keep working.
COPY --from=build /rootfs/usr/local/bin/ /usr/local/bin/
# An empty data directory owned by the user the broker runs as: a named
# volume mounted over it starts with that owner.
COPY --from=build --chown=10001:10001 /rootfs/var/lib/warren /var/lib/warren
USER 10001:10001
VOLUME /var/lib/warren
# As in RabbitMQ's image, guest may log in from other hosts (a container's
# clients are never on its loopback).
ENV PATH=/usr/local/bin \
    WARREN_DATA_DIR=/var/lib/warren \
    WARREN_LISTEN=0.0.0.0:5672 \
    WARREN_PROMETHEUS_LISTEN=0.0.0.0:15692 \
    WARREN_ALLOW_REMOTE_GUEST=true
# AMQP, management API and UI, Prometheus, AMQPS.
EXPOSE 5672 15672 15692 5671
# Healthy once the management API answers as the default user (the one
# RABBITMQ_DEFAULT_USER/_PASS name, else guest).
HEALTHCHECK --interval=5s --timeout=10s --start-period=5s --retries=6 \
    CMD ["/usr/local/bin/warren", "ctl", "await-startup", "--timeout", "5"]
ENTRYPOINT ["/usr/local/bin/warren"]
