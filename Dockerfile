# syntax=docker/dockerfile:1
# The dsfetch image. Its entrypoint is dsfetch:
#   docker build -t dsfetch:0.1.0 .
#   docker run --rm -v "$PWD:/work:ro" dsfetch:0.1.0 plan --datasets /work/datasets.json
# On Kubernetes, `dsfetch k8s` renders the init/sidecar container that runs it (args only:
# the entrypoint stays). Checked without a Docker engine by scripts/check-image.ts.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: dev dependencies (tsc), native modules, then production dependencies only ----
FROM ${NODE_IMAGE} AS build
# A compiler for native modules without a prebuilt binary for the platform: lzma-native ships
# prebuilds for linux x64/arm64 (glibc); anywhere else node-gyp compiles it here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY src ./src
COPY scripts/bundle.ts ./scripts/bundle.ts
# npm ci installs dev dependencies too: the "prepare" script (which npm ci runs) is tsc.
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund \
 && npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: Node, the decompressors dsfetch prefers, an init, a non-root user ----
FROM ${NODE_IMAGE} AS runtime
# xz-utils, bzip2, lbzip2: dsfetch streams .tar.xz/.tar.bz2 through them (faster than the
# JavaScript fallbacks); ca-certificates: HTTPS to S3; tini: PID 1 that forwards signals
# (dsfetch removes temporary data on SIGTERM) and reaps children (`dsfetch run`).
# /data: the default mount root, where `run` and `sidecar` link each dataset, made by its user
# (it did not exist, and the non-root user cannot make it: `run` without a volume there failed
# STORAGE).
RUN apt-get update \
 && apt-get install -y --no-install-recommends xz-utils bzip2 lbzip2 ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 dsfetch \
 && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin dsfetch \
 && install -d -m 0755 -o 10001 -g 10001 /data
ENV NODE_ENV=production
WORKDIR /app
# Owned by root, so the running user cannot change its own code.
COPY --from=build /build/package.json ./package.json
COPY --from=build /build/node_modules ./node_modules
COPY --from=build /build/dist ./dist
COPY --from=build /build/bin ./bin
# Numeric, so Kubernetes' runAsNonRoot can verify it (src/k8s/render.ts: DSFETCH_UID).
USER 10001:10001
# dsfetch sidecar --listen 0.0.0.0:8700 (/healthz, /readyz, /metrics)
EXPOSE 8700
# --max-semi-space-size=8: the young generation's bound (src/cli/heap-tuning.ts), held by V8
# itself from the start; without it dsfetch bounds it at run time, which a long synchronous
# burst of allocation can overshoot.
ENTRYPOINT ["tini", "--", "node", "--max-semi-space-size=8", "/app/bin/dsfetch.js"]
CMD ["help"]
