# kbatch container image for users with a registry: build with cargo, run on Debian slim.
#   docker build -t kbatch:0.1.0 .        (or: podman build -t kbatch:0.1.0 .)
#   docker run --rm -e KBATCH_KAFKA__BROKERS=kafka:9092 -p 9090:9090 kbatch:0.1.0
# The image holds the binary, ONNX Runtime (next to the binary, where kbatch looks for it), the
# bundled models and the configuration with its profiles (`KBATCH_PROFILE=market_hours`).
# On a machine without a registry, deploy/image/Containerfile.local builds the same layout
# FROM scratch out of a binary built here (scripts/build-local-images.sh).

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev python3-pip \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# ONNX Runtime comes from the PyPI wheel (ort's own download is not used).
RUN PIP_BREAK_SYSTEM_PACKAGES=1 scripts/install-onnxruntime.sh \
 && cargo build --release --locked --bin kbatch \
 && strip target/release/kbatch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 zlib1g libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin kbatch
COPY --from=build /src/target/release/kbatch /opt/kbatch/bin/kbatch
COPY --from=build /src/vendor/onnxruntime/libonnxruntime.so.1.31.1 /opt/kbatch/bin/libonnxruntime.so.1.31.1
# The bundled registry: <model>/<version>/model.onnx and the model.yaml files.
COPY models/cnn_lstm /opt/kbatch/models/cnn_lstm
COPY models/risk_mlp /opt/kbatch/models/risk_mlp
COPY models/txn_scorer /opt/kbatch/models/txn_scorer
COPY config /opt/kbatch/config
ENV PATH=/opt/kbatch/bin:$PATH \
    KBATCH_CONFIG=/opt/kbatch/config/default.yaml \
    KBATCH_MODEL_REGISTRY__PATH=/opt/kbatch/models \
    ORT_DYLIB_PATH=/opt/kbatch/bin/libonnxruntime.so.1.31.1 \
    KBATCH_LOGGING__FORMAT=json
USER 10001
EXPOSE 9090
# Liveness only: readiness (/ready) is for load balancers and orchestrators, and a replica waiting
# for its broker is alive, not broken.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["kbatch", "probe", "/healthz"]
ENTRYPOINT ["kbatch"]
CMD ["serve"]
