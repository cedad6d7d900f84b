# GPU receiver: `telepresence serve` with gsplat's CUDA kernels compiled at image build time.
# Build: docker build -t npga-telepresence .   (see docs/deployment.md)

# The browser client: Face Mesh's wasm and models come from its npm package (no CDN at run time).
FROM node:20-bookworm-slim AS web
WORKDIR /src/web_client
COPY web_client/package.json web_client/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web_client/build.mjs ./
COPY web_client/src ./src
RUN npm run build

FROM nvidia/cuda:12.4.1-devel-ubuntu24.04 AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential ninja-build \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "torch==2.5.1" --index-url https://download.pytorch.org/whl/cu124
COPY pyproject.toml README.md /src/
COPY npga /src/npga
COPY telepresence /src/telepresence
# Editable: the server finds the built client and the demo avatar next to its sources in /src.
RUN pip install -e /src \
 && pip install --no-deps "mediapipe==0.10.21" \
 # gsplat from its source distribution: its CUDA extension is compiled here, not at first request
 && pip install --no-binary gsplat "gsplat==1.5.3" \
 && python -c "from gsplat.cuda._backend import _C; assert _C is not None"

FROM nvidia/cuda:12.4.1-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 telepresence \
 && mkdir /avatars && chown telepresence /avatars
COPY --from=build /opt/venv /opt/venv
COPY --from=build /src /src
COPY --from=web /src/web_client/dist /src/web_client/dist
ENV PATH=/opt/venv/bin:$PATH \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    TELEPRESENCE_HOST=0.0.0.0 \
    TELEPRESENCE_PORT=8080 \
    TELEPRESENCE_DEVICE=cuda
# Avatar bundles are mounted here (TELEPRESENCE_AVATARS=/avatars/anna:/avatars/ben); without
# any, the server renders its built-in demo avatar.
VOLUME ["/avatars"]
USER telepresence
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["telepresence", "serve"]
