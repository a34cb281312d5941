# Multi-stage build: a static binary with version information, run as non-root on distroless.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w \
        -X github.com/prometheus/common/version.Version=${VERSION} \
        -X github.com/prometheus/common/version.Revision=${REVISION} \
        -X github.com/prometheus/common/version.Branch=main \
        -X github.com/prometheus/common/version.BuildUser=docker \
        -X github.com/prometheus/common/version.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" \
      -o /out/buildkite_deployments_exporter . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian13:nonroot
LABEL org.opencontainers.image.title="buildkite_deployments_exporter" \
      org.opencontainers.image.description="Prometheus exporter: Buildkite deployments of Backstage components" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/buildkite_deployments_exporter /bin/buildkite_deployments_exporter
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
EXPOSE 10150
VOLUME ["/data"]
ENTRYPOINT ["/bin/buildkite_deployments_exporter"]
CMD ["--storage.path=/data"]
