# Multi-stage build: a static binary with version information, run as non-root on distroless.
#
# The version and revision come from the caller, as `make docker` passes them:
#   docker build --build-arg VERSION=$(cat VERSION) --build-arg REVISION=$(git rev-parse --short HEAD) \
#     --build-arg BRANCH=$(git rev-parse --abbrev-ref HEAD) -t buildkite_deployments_exporter .
# .git is not in the build context (.dockerignore), so the revision cannot be read in here.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# No default VERSION: without the argument the VERSION file of the context is used, so that a
# plain `docker build .` never labels a binary with a stale hard-coded version.
ARG VERSION
ARG REVISION=unknown
ARG BRANCH=unknown
# The same -X variables as the Makefile's LDFLAGS (github.com/prometheus/common/version), plus
# -s -w: the image carries no debugger.
RUN version="${VERSION:-$(cat VERSION)}" \
 && pkg=github.com/prometheus/common/version \
 && CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w \
        -X ${pkg}.Version=${version} \
        -X ${pkg}.Revision=${REVISION} \
        -X ${pkg}.Branch=${BRANCH} \
        -X ${pkg}.BuildUser=docker \
        -X ${pkg}.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)" \
      -o /out/buildkite_deployments_exporter . \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian13:nonroot
# Re-declared: build arguments do not cross stages. Empty when the build was not given them.
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.title="buildkite_deployments_exporter" \
      org.opencontainers.image.description="Prometheus exporter: Buildkite deployments of Backstage components" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/buildkite_deployments_exporter /bin/buildkite_deployments_exporter
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
EXPOSE 10150
VOLUME ["/data"]
ENTRYPOINT ["/bin/buildkite_deployments_exporter"]
CMD ["--storage.path=/data"]
