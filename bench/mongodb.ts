/**
 * `bun run bench:mongodb`: documents/s of the MongoDB sink's write (persist/mongodb.ts, as persist calls it:
 * batches of BATCH_MAX_RECORDS with their positions) beside a raw unordered bulk insert of the very same
 * documents, and records/s of poll.ts taking pages from a local HTTP API onto locations.raw (of a Kafka namespace
 * of its own, `bench-mongo-<run>.*`, deleted at the end). Both against the
 * local stack (FerretDB locally); the ratio is the figure to watch, as absolute numbers drift between runs.
 *
 * Options, as flags or environment: --events / BENCH_EVENTS (20000), --page / BENCH_PAGE (1000 records per
 * polled page). Deletes what it wrote. Exits 0 after reporting, 1 when it cannot run.
 */
import { MongoClient } from "mongodb";
import { COLLECTION_OF, mongodbSink, POSITIONS_COLLECTION } from "../persist/mongodb.ts";
import type { SinkRow } from "../persist/sink.ts";
import { parseConfig } from "../shared/config.ts";
import { createLogger } from "../shared/log.ts";
import { TOPICS } from "../shared/topics.ts";
import { inNamespace, startStage } from "../tools/harness.ts";
import { pollEvery } from "../tools/poll.ts";
import { BenchError, int, numberOptions, printFigures, runBench } from "./cli.ts";
import { benchLocations } from "./events.ts";

const { events, page } = numberOptions({
  events: { env: "BENCH_EVENTS", fallback: 20_000, min: 1 },
  page: { env: "BENCH_PAGE", fallback: 1_000, min: 1 },
});

async function main(): Promise<number> {
  const env = parseConfig(process.env);
  const runId = `bench-mongo-${Date.now().toString(36)}`;
  const mongo = new MongoClient(env.MONGODB_URL, { serverSelectionTimeoutMS: 3_000 });
  const db = mongo.db();
  await db.command({ ping: 1 }).catch(() => {
    throw new BenchError("no MongoDB-protocol server answers at MONGODB_URL: start FerretDB with `bun run stack`");
  });
  const spec = COLLECTION_OF[TOPICS.locationsEnriched];
  if (!spec) throw new BenchError("the MongoDB sink stores no locations.enriched");
  // Enriched as enrich would: the zone fields are not what is timed here.
  const rows: SinkRow[] = benchLocations(events, runId).map((event, i) => ({
    topic: TOPICS.locationsEnriched,
    partition: 0,
    offset: BigInt(i),
    value: { ...event, timezone: "UTC", utc_offset_minutes: 0, local_time: event.timestamp.slice(0, 23) },
  }));
  const group = `${runId}-sink`;
  const scratch = db.collection<{ _id: string }>(`${runId}_raw`);
  try {
    // The ceiling: the same documents, one unordered insert per batch, no positions.
    const documents = rows.map((row) => ({ ...spec.document(row), persisted_at: new Date() }));
    let start = performance.now();
    for (let i = 0; i < documents.length; i += env.BATCH_MAX_RECORDS)
      await scratch.insertMany(documents.slice(i, i + env.BATCH_MAX_RECORDS), { ordered: false });
    const raw = events / ((performance.now() - start) / 1000);

    const sink = mongodbSink({ env, log: createLogger("bench", "silent"), group });
    await sink.open();
    start = performance.now();
    for (let i = 0; i < rows.length; i += env.BATCH_MAX_RECORDS) {
      const batch = rows.slice(i, i + env.BATCH_MAX_RECORDS);
      const last = batch.at(-1) as SinkRow;
      await sink.write(batch, [{ topic: last.topic, partition: 0, offset: last.offset + 1n }]);
    }
    const written = events / ((performance.now() - start) / 1000);
    await sink.close();

    const polled = await inNamespace(runId, () => pollRate(runId));
    printFigures("documents", "docs/s", [
      { name: "raw insertMany (unordered)", rate: raw },
      { name: "MongoDB sink write (with positions)", rate: written },
    ]);
    console.log(`poll.ts: ${int(polled)} records/s onto locations.raw (pages of ${page}, ${events} records)\n`);
    return 0;
  } finally {
    await scratch.drop().catch(() => {});
    await db.collection("locations").deleteMany({ user_id: { $regex: `^${runId}` } });
    await db.collection(POSITIONS_COLLECTION).deleteMany({ group });
    await mongo.close();
  }
}

/** Records/s of a poll stage through `events` new records, served `page` at a time by a local API. */
async function pollRate(runId: string): Promise<number> {
  let served = 0;
  const api = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: () => {
      const from = served;
      served = Math.min(events, served + page);
      return Response.json(
        Array.from({ length: served - from }, (_, i) => ({
          id: `${runId}-${from + i}`,
          user_id: `${runId}-user-${(from + i) % 100}`,
          timestamp: 1_700_000_000 + from + i,
          lat: 1,
          long: 2,
        })),
      );
    },
  });
  const poll = await startStage("poll", {
    mode: "process",
    env: { LOG_LEVEL: "warn", POLL_URL: `http://127.0.0.1:${api.port}/bench`, POLL_INTERVAL_MS: "100" },
  });
  try {
    const start = performance.now();
    await pollEvery(
      `poll to publish ${events} records`,
      async () => ((await poll.metric("poll_records_total", { outcome: "published" })) >= events ? true : undefined),
      300_000,
      50,
    );
    return events / ((performance.now() - start) / 1000);
  } finally {
    await poll.stop();
    api.stop(true);
  }
}

await runBench(main);
