/**
 * Helpers the integration tests share: the live servers (importing this module finds them, see setup.ts),
 * polling with a deadline, reading a topic range, and starting stages through the one harness.
 */
import "./setup.ts";
import { type Config, parseConfig } from "../shared/config.ts";
import {
  endOffsets,
  type InRecord,
  type KafkaConnection,
  kafkaConnection,
  type Position,
  readRange,
} from "../shared/kafka.ts";
import { type StageName, startStage } from "../tools/harness.ts";
import { pollEvery } from "../tools/poll.ts";

/** Calls `probe` every 50 ms until it returns a value other than undefined, or throws once `timeoutMs` has passed. */
export const pollUntil = <T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> =>
  pollEvery(what, probe, timeoutMs, 50);

/** The environment the tests run against (setup.ts has pointed it at live servers). */
export const testConfig = (overrides: Record<string, string> = {}): Config =>
  parseConfig({ ...process.env, LOG_LEVEL: "silent", ...overrides });

/** The cluster the tests run against, for `overrides` of the environment. */
export const testKafka = (overrides: Record<string, string> = {}): KafkaConnection =>
  kafkaConnection(testConfig(overrides));

/** Reads `topic` from `from` until `done(records)` holds, or fails after `timeoutMs`. */
export function readTopic(
  topic: string,
  from: Position[],
  done: (records: InRecord[]) => boolean,
  timeoutMs = 30_000,
): Promise<InRecord[]> {
  return readRange({ kafka: testKafka(), topic, from, done, timeoutMs });
}

/** The end offsets of `topic` now, to read only what a test produces after this point. */
export const snapshot = (topic: string) => endOffsets(testKafka(), topic);

/** The ingest stage in this process on a free port, for `overrides` of the environment. */
export async function startIngest(overrides: Record<string, string> = {}) {
  const handle = await startStage("ingest", { env: { LOG_LEVEL: "silent", ...overrides } });
  return {
    ...handle,
    post: (path: string, body: string, headers: Record<string, string> = {}) =>
      fetch(`${handle.url}${path}`, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", ...headers },
      }),
  };
}

/** A stage as its own process, as in production, so that a test can SIGKILL it. */
export const spawnStage = (name: StageName, env: Record<string, string> = {}) =>
  startStage(name, { mode: "process", env });

export type { StageHandle as Stage } from "../tools/harness.ts";

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
