# syntax=docker/dockerfile:1
# The operator image: a static (musl) binary on distroless, running as the non-root user 65532.
#
#   docker build -t IMAGE:TAG .
#   cargo xtask installer --image IMAGE:TAG     # dist/install.yaml with that image
#
# Stage 1 builds the binary. musl-tools supplies the C compiler for the C parts (SQLite, bundled by
# rusqlite; ring's assembly), so the result links nothing dynamically.
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# the caches only speed up rebuilds; the binary is copied out of the cached target dir in the same step
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p istio-integrity-operator --target x86_64-unknown-linux-musl \
 && cp target/x86_64-unknown-linux-musl/release/istio-integrity-operator /istio-integrity-operator

# Stage 2: no shell, no package manager, CA certificates and a nonroot user only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /istio-integrity-operator /istio-integrity-operator
USER 65532:65532
ENTRYPOINT ["/istio-integrity-operator"]
CMD ["run", "--leader-elect"]
