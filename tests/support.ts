/** Helpers the integration tests share: polling with a deadline, reading a topic range, running the ingest app. */
import { createIngestApp } from "../ingest.ts";
import { type Config, parseConfig } from "../shared/config.ts";
import { serve } from "../shared/http.ts";
import { createConsumer, createProducer, endOffsets, type InRecord, type Position } from "../shared/kafka.ts";
import { createLogger } from "../shared/log.ts";
import { pollEvery } from "../tools/poll.ts";

/** Calls `probe` every 50 ms until it returns a value other than undefined, or throws once `timeoutMs` has passed. */
export const pollUntil = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> =>
  pollEvery(what, probe, timeoutMs, 50);

/** The environment the tests run against (the preload has pointed it at live servers). */
export const testConfig = (overrides: Record<string, string> = {}): Config =>
  parseConfig({ ...process.env, LOG_LEVEL: "silent", ...overrides });

/** Reads `topic` from `from` until `done(records)` holds, or fails after `timeoutMs`. */
export async function readTopic(
  topic: string,
  from: Position[],
  done: (records: InRecord[]) => boolean,
  timeoutMs = 30_000,
): Promise<InRecord[]> {
  const consumer = createConsumer({
    brokers: testConfig().KAFKA_BROKERS,
    groupId: `test-reader-${crypto.randomUUID()}`,
    clientId: "test-reader",
    topics: [topic],
    startAt: from,
  });
  const records: InRecord[] = [];
  const reading = (async () => {
    for await (const batch of consumer.batches()) {
      records.push(...batch);
      if (done(records)) return;
    }
  })();
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out reading ${topic}: ${records.length} records`)), timeoutMs);
  });
  try {
    await Promise.race([reading, deadline]);
    return records;
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
}

/** The end offsets of `topic` now, to read only what a test produces after this point. */
export const snapshot = (topic: string) => endOffsets(testConfig().KAFKA_BROKERS, topic);

/** An ingest app on a free port, with its own producer, for `overrides` of the environment. */
export function startIngest(overrides: Record<string, string> = {}) {
  const config = testConfig(overrides);
  const producer = createProducer({
    brokers: config.KAFKA_BROKERS,
    clientId: "test-ingest",
    timeoutMs: config.INGEST_ACK_TIMEOUT_MS,
  });
  const log = createLogger("ingest", "silent");
  const server = serve(createIngestApp({ config, producer, log, accepting: () => true }), 0);
  const url = `http://127.0.0.1:${server.port}`;
  return {
    url,
    post: (path: string, body: string, headers: Record<string, string> = {}) =>
      fetch(`${url}${path}`, { method: "POST", body, headers: { "content-type": "application/json", ...headers } }),
    async stop() {
      await server.stop();
      await producer.close();
    },
  };
}

/** A stage script running as its own process, as in production, so tests can SIGKILL it. */
export async function spawnStage(script: string, port: number, env: Record<string, string> = {}) {
  const child = Bun.spawn(["bun", "run", script], {
    env: { ...process.env, LOG_LEVEL: "warn", ...env },
    stdout: "inherit",
    stderr: "inherit",
  });
  const url = `http://127.0.0.1:${port}`;
  await pollUntil(`${script} to answer on ${port}`, async () => {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode}`);
    return fetch(`${url}/healthz`).then(
      (r) => (r.ok ? true : undefined),
      () => undefined,
    );
  });
  return {
    url,
    child,
    ready: () =>
      fetch(`${url}/readyz`).then(
        (r) => r.status,
        () => 0,
      ),
    metric: async (name: string) => {
      const text = await fetch(`${url}/metrics`).then((r) => r.text());
      const line = text.split("\n").find((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
      return Number(line?.split(" ").pop() ?? 0);
    },
    async stop(signal: "SIGTERM" | "SIGKILL" = "SIGTERM") {
      child.kill(signal);
      return child.exited;
    },
  };
}

export type Stage = Awaited<ReturnType<typeof spawnStage>>;

/**
 * Stops or starts the local Debian PostgreSQL cluster behind DATABASE_URL; undefined when there is none here
 * (servers from testcontainers or elsewhere), so outage tests can skip.
 */
export async function localCluster(): Promise<((action: "stop" | "start") => Promise<void>) | undefined> {
  const url = new URL(testConfig().DATABASE_URL);
  if (!["127.0.0.1", "localhost"].includes(url.hostname) || !Bun.which("pg_lsclusters")) return undefined;
  const clusters: { version: string; cluster: string; port: string }[] = await Bun.$`pg_lsclusters --json`.json();
  const cluster = clusters.find((c) => String(c.port) === (url.port || "5432"));
  if (!cluster) return undefined;
  return async (action) => {
    await Bun.$`pg_ctlcluster ${cluster.version} ${cluster.cluster} ${action}`.quiet();
  };
}
