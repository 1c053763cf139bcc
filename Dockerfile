# Build a static binary, then ship it alone in a non-root distroless image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags="-s -w -X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /out/dmarc-exporter ./cmd/dmarc-exporter \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dmarc-exporter /bin/dmarc-exporter
# The archive's directory (dmarc.db), writable by the nonroot user (65532).
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot:nonroot
EXPOSE 10037
VOLUME ["/data"]
ENTRYPOINT ["/bin/dmarc-exporter", "--storage.path=/data"]
