# warmcache: one image for the controller and the node plugin.
# Build stage: Debian bookworm with the -dev packages; run stage: the same
# pinned base with only the runtime libraries plus the tools the node plugin
# runs (mdadm, mkfs.xfs, util-linux). The controller runs it as non-root (see
# the chart); the node plugin needs root for mounts and disks.
ARG BASE=docker.io/library/debian:bookworm-20251117-slim

FROM ${BASE} AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake ninja-build pkg-config gcc libc6-dev libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
      libjansson-dev libcurl4-openssl-dev libmount-dev libblkid-dev libssl-dev libexpat1-dev libisal-dev \
      libzstd-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmd cmd
COPY driver driver
COPY proto proto
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DWC_TESTS=OFF -DWC_BENCH=OFF \
    && cmake --build /build --target warmcache-csi warmcachectl \
    && strip /build/warmcache-csi /build/warmcachectl

FROM ${BASE}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc29 libprotobuf-c1 libjansson4 libmount1 libblkid1 libssl3 libcurl4 libexpat1 libisal2 libzstd1 \
      mdadm xfsprogs e2fsprogs util-linux ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /usr/share/doc/* /usr/share/man/*
COPY --from=build /build/warmcache-csi /build/warmcachectl /usr/local/bin/
LABEL org.opencontainers.image.title="warmcache" \
      org.opencontainers.image.description="Kubernetes CSI driver: pre-warmed node-local caches of models and datasets" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/warmcache/warmcache"
ENTRYPOINT ["/usr/local/bin/warmcache-csi"]
