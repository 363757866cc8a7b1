# syntax=docker/dockerfile:1
# One image for every stage: a compose service picks its script with `command`. Only what the stages need at run
# time goes in (tests/compose.test.ts walks the stages' imports and checks each file is copied here).

# Keep in step with package.json's "packageManager": "bun@x.y.z" (a test compares them).
ARG BUN_VERSION=1.4.5

FROM oven/bun:${BUN_VERSION}-slim AS deps
WORKDIR /app
COPY package.json bun.lock ./
COPY patches ./patches
RUN bun install --frozen-lockfile --production

# librdkafka for KAFKA_CLIENT=librdkafka (loaded through bun:ffi): the library of PyPI's confluent-kafka wheel, as
# ./pipeline setup fetches it; self-contained, so the final image needs no package for it.
FROM oven/bun:${BUN_VERSION}-slim AS librdkafka
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
COPY scripts/librdkafka.sh /tmp/
RUN bash /tmp/librdkafka.sh /opt/librdkafka

FROM oven/bun:${BUN_VERSION}-slim
COPY --from=librdkafka /opt/librdkafka/librdkafka.so.1 /opt/librdkafka/
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
# The stage scripts (every .ts at the repository root is one), each with the folder of its own modules, and the
# framework they share. persist/ carries the SQL migrations it applies at start.
COPY *.ts ./
COPY shared ./shared
COPY ingest ./ingest
COPY enrich ./enrich
COPY aggregate ./aggregate
COPY intervals ./intervals
COPY persist ./persist
COPY capture ./capture
COPY poll ./poll
# Compose's topic-plan service.
COPY scripts/topics.ts ./scripts/
# Where topic-plan writes the topic plan for topic-init: a fresh named volume takes this directory's owner, and
# the image's user must be able to write it.
RUN install -d -o bun -g bun /plan
# Code and dependencies stay root-owned, so the stage cannot modify them.
USER bun
CMD ["bun", "run", "ingest.ts"]
