# peerbridge container image: a static binary on distroless, as non-root.
#   docker build -t peerbridge:0.1.0 --build-arg VERSION=0.1.0 .
# The Go of go.mod, exactly: the build uses no other toolchain.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
ENV GOTOOLCHAIN=local
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/peerbridge ./cmd/peerbridge
# The state directory, owned by the image's user: distroless has no shell
# to make it in the final stage.
RUN mkdir -p /out/state

# distroless/static: CA certificates for the DigitalOcean API, a nonroot
# user, and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/peerbridge /peerbridge
COPY --from=build --chown=65532:65532 /out/state /var/lib/peerbridge
# The last published peer sets, served at once after a restart: keep the
# volume (a named volume, a PersistentVolumeClaim) across containers.
ENV PEERBRIDGE_STATE_FILE=/var/lib/peerbridge/state.json
VOLUME ["/var/lib/peerbridge"]
# distroless's nonroot, by number: Kubernetes' runAsNonRoot can only check
# a numeric user ("image has non-numeric user" otherwise).
USER 65532:65532
# DNS over UDP and TCP, then HTTP (/healthz, /readyz, /metrics, /status).
EXPOSE 8653/udp 8653/tcp 8654/tcp
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 CMD ["/peerbridge", "health"]
ENTRYPOINT ["/peerbridge"]
