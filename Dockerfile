# The warren broker as a container image: `docker build -t warren .`
# Data lives in /var/lib/warren; AMQP on 5672. The RABBITMQ_DEFAULT_USER,
# _PASS and _VHOST variables work as with RabbitMQ's image.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin warren

FROM debian:bookworm-slim
COPY --from=build /src/target/release/warren /usr/local/bin/warren
ENV WARREN_DATA_DIR=/var/lib/warren \
    WARREN_LISTEN=0.0.0.0:5672
VOLUME /var/lib/warren
EXPOSE 5672
ENTRYPOINT ["warren"]
