# Container image of iomete-secrets-webhook: multi-stage, non-root, distroless.
#
#   docker build -t iomete/iomete-secrets-webhook:0.1.0 .
#
# Not built by this repository's CI: its machines have no container engine, so keep this
# minimal. scripts/validate-manifests.sh only checks its shape (multi-stage, --locked,
# distroless nonroot, USER = the Deployment's runAsUser). The cache mounts need BuildKit
# (Docker's default builder) or Buildah/Podman.

# At least Cargo.toml's rust-version; Debian 12 (bookworm), the glibc of the runtime image.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
# The whole workspace (its members must be present); .dockerignore leaves out target/ and the rest.
COPY . .
# iomete-env (broker mode's entrypoint wrapper) runs in other images' containers, so it is linked
# statically; the script refuses a result that still needs a dynamic loader.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin iomete-secrets-webhook \
    && install -D -m 0755 target/release/iomete-secrets-webhook /out/iomete-secrets-webhook \
    && iomete_env="$(IOMETE_ENV_PROFILE=release bash scripts/build-iomete-env.sh | tail -n 1)" \
    && install -D -m 0555 "$iomete_env" /out/iomete-env

# glibc, libgcc and CA certificates; no shell, no package manager. User nonroot is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/iomete-secrets-webhook /usr/local/bin/iomete-secrets-webhook
# Copied into pods by the broker mode's init container (`iomete-env install`).
COPY --from=build /out/iomete-env /usr/local/bin/iomete-env
USER 65532:65532
# 8443: admission (TLS), 8080: /livez, /readyz, /metrics.
EXPOSE 8443 8080
ENTRYPOINT ["/usr/local/bin/iomete-secrets-webhook"]
CMD ["serve"]
