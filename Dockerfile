# logwharf as a container: build, then a small runtime image holding the binary alone.
#   docker build -t logwharf .
#   docker run -d --name logwharf --restart unless-stopped \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/docker/containers:/var/lib/docker/containers:ro \
#     -v logwharf-data:/var/lib/logwharf \
#     -v /etc/logwharf:/etc/logwharf:ro \
#     logwharf
# Without /etc/logwharf/logwharf.toml it runs the built-in default (all containers → console,
# i.e. `docker logs logwharf`). Where no registry is reachable, scripts/build-image makes the
# same runtime image from a local build with `docker import`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin logwharf && strip target/release/logwharf

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* && mkdir -p /var/lib/logwharf /etc/logwharf
COPY --from=build /src/target/release/logwharf /usr/local/bin/logwharf
VOLUME /var/lib/logwharf
ENTRYPOINT ["/usr/local/bin/logwharf"]
CMD ["run"]
