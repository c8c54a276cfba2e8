# syntax=docker/dockerfile:1
# The two images the chart runs, from one build:
#   docker build --target operator -t ghcr.io/multicomms/multicomms-operator:<version> .
#   docker build --target runtime  -t ghcr.io/multicomms/multicomms-runtime:<version> .
# The runtime image holds the router and the processor; the chart picks one with `args`.
# Dependencies are built in their own layer (cargo-chef), so a source change rebuilds only ours.
# The shipped binaries use the `dist` profile (Cargo.toml: link-time optimised, smaller).

# Base images pinned by digest (a tag can be moved by its owner; review r3, L9); the tag says what
# the digest is. Update both together, deliberately.
FROM rust:1.94-slim-bookworm@sha256:cf9dd0ec73e75f827fe59123fff9dc65af1a1c8363c3c31ee8d7f8ad0b6a5fb2 AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer: rebuilt only when Cargo.toml/Cargo.lock change.
RUN cargo chef cook --profile dist --locked --recipe-path recipe.json \
    -p multicomms-operator -p multicomms-runtime
COPY . .
RUN cargo build --profile dist --locked \
    -p multicomms-operator --bin multicomms-operator \
    -p multicomms-runtime --bin multicomms-router --bin multicomms-processor

# Minimal runtime: glibc and CA certificates, no shell, user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS operator
COPY --from=builder /src/target/dist/multicomms-operator /usr/local/bin/multicomms-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/multicomms-operator"]

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS runtime
COPY --from=builder /src/target/dist/multicomms-router /usr/local/bin/multicomms-router
COPY --from=builder /src/target/dist/multicomms-processor /usr/local/bin/multicomms-processor
USER 65532:65532
# The router by default; the processors run `multicomms-processor` (the operator sets args).
CMD ["multicomms-router"]

# The fake OpenAI/Twilio/SendGrid servers, for the kind job's in-cluster end-to-end test only.
FROM builder AS fakes-build
RUN cargo build --release --locked -p multicomms-testkit --bin fake-providers
FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f AS fakes
COPY --from=fakes-build /src/target/release/fake-providers /usr/local/bin/fake-providers
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fake-providers", "0.0.0.0:8090"]
