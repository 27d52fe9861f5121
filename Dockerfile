# The same image `make image` builds without Docker (hack/image): a static manager at /manager on
# an empty base that holds only Debian's CA certificates and a nonroot user (65532), like
# gcr.io/distroless/static:nonroot. Use it where a Docker engine is at hand: make docker-build.
FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH

WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download

COPY main.go main.go
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
COPY hack/image/ hack/image/

RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} go build -trimpath -buildvcs=false -ldflags="-s -w" -o manager .
# The base's files, from the same code as `make image`; the CA bundle is the golang image's,
# which is Debian's ca-certificates.
RUN go run ./hack/image -rootfs /rootfs -ca-file /etc/ssl/certs/ca-certificates.crt

FROM scratch
COPY --from=builder /rootfs/ /
COPY --from=builder --chown=65532:65532 /rootfs/home/nonroot /home/nonroot
COPY --from=builder /workspace/manager /manager
ENV PATH=/usr/local/bin:/usr/bin:/bin SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/manager"]
