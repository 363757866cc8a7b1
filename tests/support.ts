/**
 * Helpers the integration tests share: the live servers (importing this module finds them, see setup.ts),
 * polling with a deadline, reading a topic range, and starting stages through the one harness.
 */
import "./setup.ts";
import { expect } from "bun:test";
import type { Db } from "mongodb";
import type { Sql } from "../persist/postgres/db.ts";
import { documentStoreAnswers, ferretDbDown, ferretDbUp, runningFerretDbPid } from "../scripts/stack/ferretdb.ts";
import { type Config, parseConfig } from "../shared/config.ts";
import {
  createProducer,
  endOffsets,
  type InRecord,
  type KafkaConnection,
  kafkaConnection,
  type Position,
  partitionFor,
  readRange,
  seekGroup,
} from "../shared/kafka.ts";
import { dlqOf, type TopicName } from "../shared/topics.ts";
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

/** The ingest stage of {@link startIngest}. */
export type Ingest = Awaited<ReturnType<typeof startIngest>>;

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

/** Points whose IANA timezone is known, on five continents, for end-to-end checks of enrichment. */
export const KNOWN_PLACES = [
  { name: "cordoba", lat: -31.677696, long: -65.030317, timezone: "America/Argentina/Cordoba" },
  { name: "new-york", lat: 40.7128, long: -74.006, timezone: "America/New_York" },
  { name: "london", lat: 51.5074, long: -0.1278, timezone: "Europe/London" },
  { name: "tokyo", lat: 35.6762, long: 139.6503, timezone: "Asia/Tokyo" },
  { name: "sydney", lat: -33.8688, long: 151.2093, timezone: "Australia/Sydney" },
] as const;

/**
 * Sends two poison records keyed `key` to `topic`: bytes that are not JSON, then `violation`, JSON its schema
 * rejects. Runs `after` (which shows that the records behind them still arrive), then checks that `stage` set
 * both aside in the topic's DLQ with their key, original bytes and context. Returns their error messages.
 *
 * @example
 * const after = () => expectRows("poison", 1); // the good event sent behind the poison is stored
 * const [notJson, invalid] = await expectDeadLettered(TOPICS.locationsRaw, "k", bad, "enrich", after);
 */
export async function expectDeadLettered(
  topic: TopicName,
  key: string,
  violation: string,
  stage: string,
  after: () => Promise<void>,
): Promise<(string | undefined)[]> {
  const { TOPIC_PARTITIONS } = testConfig();
  const before = await snapshot(dlqOf(topic));
  const notJson = Buffer.from([0xde, 0xad, 0xbe, 0xef]);
  const producer = createProducer({ kafka: testKafka(), clientId: "test-poison" });
  await producer.send([
    { topic, key, value: notJson },
    { topic, key, value: violation },
  ]);
  await producer.close();
  await after();

  const ours = (records: InRecord[]) => records.filter((r) => r.key?.toString() === key);
  const letters = ours(await readTopic(dlqOf(topic), before, (all) => ours(all).length >= 2));
  expect(letters.map((r) => r.value)).toEqual([notJson, Buffer.from(violation)]);
  for (const letter of letters) {
    expect(letter.headers).toMatchObject({
      "dlq.error.class": "DecodeError",
      "dlq.source.topic": topic,
      "dlq.source.partition": String(partitionFor(key, TOPIC_PARTITIONS)),
      "dlq.stage": stage,
    });
    expect(Number(letter.headers["dlq.source.offset"])).toBeGreaterThanOrEqual(0);
    expect(Date.parse(letter.headers["dlq.time"] ?? "")).toBeGreaterThan(0);
  }
  return letters.map((letter) => letter.headers["dlq.error.message"]);
}

/** Posts `events` to `route` of `ingest` in NDJSON bodies of 1,000, in order, expecting a 202 for each. */
export async function postInBatches(ingest: Ingest, route: string, events: object[]): Promise<void> {
  for (let i = 0; i < events.length; i += 1000) {
    const body = events
      .slice(i, i + 1000)
      .map((event) => JSON.stringify(event))
      .join("\n");
    const response = await ingest.post(route, body, { "content-type": "application/x-ndjson" });
    expect(response.status).toBe(202);
  }
}

/**
 * A test's series of events in `table`, series `s` being the event_ids `<run>-<s>-0`, `<run>-<s>-1`, ...:
 * `count` says how many rows of a series are stored; `expectRows` waits until `expected` are, then checks that
 * they are exactly the posted ones, none missing and none extra.
 *
 * @example
 * const { count, expectRows } = storedSeries(sql, "locations", run);
 * await expectRows("main", 10_000);
 */
export function storedSeries(sql: Sql, table: string, run: string) {
  const like = (series: string) => `${run}-${series}-%`;
  const count = async (series: string) =>
    Number((await sql`select count(*)::int as n from ${sql(table)} where event_id like ${like(series)}`)[0]?.n);
  async function expectRows(series: string, expected: number, timeoutMs = 90_000): Promise<void> {
    await pollUntil(
      `${expected} rows of ${series} in ${table}`,
      async () => ((await count(series)) >= expected ? true : undefined),
      timeoutMs,
    );
    const stored = await sql<{ event_id: string }[]>`select event_id from ${sql(table)}
      where event_id like ${like(series)} order by event_id`;
    const posted = Array.from({ length: expected }, (_, i) => `${run}-${series}-${i}`).sort();
    expect(stored.map((row) => row.event_id)).toEqual(posted);
  }
  return { count, expectRows };
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

/**
 * `MONGODB_URL` naming a database of `name` on the same server, for one test file's documents: FerretDB filters
 * on anything but `_id` equality by reading the whole collection, so queries in a shared database slow down as
 * other runs' documents pile up there. The file drops it at the end.
 *
 * @example
 * const url = ownMongoUrl(`conformance_${run}`); // "mongodb://127.0.0.1:27017/conformance_1a2b3c4d"
 */
export function ownMongoUrl(name: string): string {
  const url = new URL(testConfig().MONGODB_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * The series of {@link storedSeries} in a MongoDB collection: `count` says how many documents of a series are
 * stored; `expectDocuments` waits until `expected` are, then checks that they are exactly the posted ones.
 *
 * @example
 * const { expectDocuments } = storedDocuments(db, "locations", run);
 * await expectDocuments("main", 10_000);
 */
export function storedDocuments(db: Db, collection: string, run: string) {
  const filter = (series: string) => ({ _id: { $regex: `^${run}-${series}-` } }) as never;
  const count = (series: string) => db.collection(collection).countDocuments(filter(series));
  async function expectDocuments(series: string, expected: number, timeoutMs = 90_000): Promise<void> {
    await pollUntil(
      `${expected} documents of ${series} in ${collection}`,
      async () => ((await count(series)) >= expected ? true : undefined),
      timeoutMs,
    );
    const stored = await db
      .collection(collection)
      .find(filter(series), { projection: { _id: 1 } })
      .toArray();
    const posted = Array.from({ length: expected }, (_, i) => `${run}-${series}-${i}`).sort();
    expect(stored.map((doc) => String(doc._id)).sort()).toEqual(posted);
  }
  return { count, expectDocuments };
}

/**
 * Stops or starts the FerretDB behind MONGODB_URL, when `bun run stack` started it; undefined otherwise (a
 * server someone else runs), so outage tests can skip.
 */
export function localFerretDb(): ((action: "stop" | "start") => Promise<void>) | undefined {
  const { MONGODB_URL: url, DATABASE_URL } = testConfig();
  if (runningFerretDbPid() === undefined) return undefined;
  return async (action) => {
    if (action === "start") return ferretDbUp(url, DATABASE_URL);
    // Until the process is gone, not only until it stops answering: a start while it is still shutting down
    // would take it for the server and then see it exit.
    await ferretDbDown();
    await pollUntil("FerretDB to stop answering", async () =>
      (await documentStoreAnswers(url, 500)) ? undefined : true,
    );
  };
}

/**
 * The `i`-th enriched location of `series`, as enrich writes it to locations.enriched: what the sink
 * conformance tests produce. Its event_id is `<series>-<i>`.
 *
 * @example
 * JSON.stringify(enrichedLocation("run1-main", 0)); // {"event_id":"run1-main-0","user_id":"run1-main-user-0",...}
 */
export const enrichedLocation = (series: string, i: number) => ({
  event_id: `${series}-${i}`,
  user_id: `${series}-user-${i % 20}`,
  timestamp: new Date(Date.UTC(2023, 10, 14, 22) + i * 1000).toISOString(),
  ingested_at: new Date().toISOString(),
  lat: 51.5074,
  long: -0.1278,
  timezone: "Europe/London",
  utc_offset_minutes: 0,
  local_time: new Date(Date.UTC(2023, 10, 14, 22) + i * 1000).toISOString(),
});

/**
 * Moves `group` to the end of `topics` and returns where that is: a test that reads only its own records need
 * not wait for a backlog others left on a shared broker (millions of records, at times). The group must have no
 * members; under the servers' lock no other test uses it meanwhile.
 *
 * @example
 * const start = await startGroupAtEnd("persist-mongodb", [TOPICS.locationsEnriched]);
 */
export async function startGroupAtEnd(group: string, topics: string[]): Promise<Position[]> {
  const kafka = testKafka();
  const ends = (await Promise.all(topics.map((topic) => endOffsets(kafka, topic)))).flat();
  await seekGroup(kafka, group, ends);
  return ends;
}
