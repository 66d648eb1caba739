# One image runs every part of the shop by subcommand:
#   docker run minimall:local estore | serve order | serve gateway | …
#
# Two ways to build it:
#   docker build -t minimall:local .                         compiles in the builder stage
#   cargo build --release --locked -p minimall \
#     && docker build --target prebuilt -t minimall:local .  copies the host's release binary
# The second is how it is built on machines that cannot pull a Rust image (scripts/stack does
# it). The host's binary must be built against a glibc no newer than bookworm's (2.36).

# Stage "runtime-base": what every variant runs on. Slim Debian (glibc for the binary, CA
# certificates for TLS to a KurrentDB cluster); a non-root user; the data directories a fresh
# named volume takes its owner from.
FROM debian:bookworm-slim AS runtime-base
# Not pinned (DL3008): the base is whatever bookworm is today, and its point releases replace
# the package versions a pin would name.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 minimall \
    && useradd --system --uid 10001 --gid minimall --no-create-home --shell /usr/sbin/nologin minimall \
    && mkdir -p /var/lib/minimall /var/lib/kurrentdb \
    && chown minimall:minimall /var/lib/minimall /var/lib/kurrentdb
WORKDIR /var/lib/minimall
USER 10001:10001
# Exec form: no shell at run time; health checks run `minimall probe URL`.
ENTRYPOINT ["/usr/local/bin/minimall"]
CMD ["--help"]

# Stage "prebuilt": a binary built on the host (the release one unless BINARY names another).
FROM runtime-base AS prebuilt
ARG BINARY=target/release/minimall
COPY --chown=root:root ${BINARY} /usr/local/bin/minimall

# Stage "builder": compiles the binary (the default build, for machines with a registry).
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY crates crates
COPY projections projections
RUN cargo build --release --locked -p minimall

# Stage "runtime" (the default target): the compiled binary on the runtime base.
FROM runtime-base AS runtime
COPY --from=builder --chown=root:root /src/target/release/minimall /usr/local/bin/minimall
