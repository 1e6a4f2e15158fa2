# The kubebid image the Helm chart deploys (ghcr.io/kubebid/kubebid): one static binary, no shell, no
# package manager, running as an unprivileged user.
#
#   docker build -t ghcr.io/kubebid/kubebid:0.1.0 .
#   docker build --target kms -t ghcr.io/kubebid/kubebid-kms:0.1.0 .
#
# The default image is fully static (musl): the webhook, the operator and the DNS server need nothing else.
# The KMS plugin loads the HSM's PKCS#11 module at run time, which a static binary cannot do, so its static
# pod uses the `kms` target: the same code linked against glibc, on a distroless base that carries glibc and
# the C++ runtime such modules need.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS source
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY examples examples

# Static: musl, with the C compiler ring's assembly needs.
FROM source AS build-static
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
RUN cargo build --profile dist --locked --target x86_64-unknown-linux-musl -p kubebid \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/dist/kubebid /out/kubebid

# Dynamic (glibc), for the KMS plugin's PKCS#11 module.
FROM source AS build-glibc
RUN cargo build --profile dist --locked -p kubebid \
    && install -D -m 0755 target/dist/kubebid /out/kubebid

# The KMS plugin's image. Its static pod runs it as root (the node's socket directory and token files are
# root's), with every capability dropped and a read-only root file system.
FROM gcr.io/distroless/cc-debian12 AS kms
COPY --from=build-glibc /out/kubebid /usr/local/bin/kubebid
ENTRYPOINT ["/usr/local/bin/kubebid"]

# The default image, last so that a plain `docker build` makes it.
FROM gcr.io/distroless/static-debian12:nonroot AS kubebid
COPY --from=build-static /out/kubebid /usr/local/bin/kubebid
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubebid"]
