# Build a static binary, then ship it alone in a non-root distroless image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/dmarc-exporter ./cmd/dmarc-exporter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/dmarc-exporter /bin/dmarc-exporter
USER nonroot:nonroot
ENTRYPOINT ["/bin/dmarc-exporter"]
