/**
 * `bun run bench:persist`: rows/s of ONE persist.ts instance (exactly-once path as it is: COPY into a staging
 * table, INSERT ... ON CONFLICT, offsets in the same transaction) against `psql \copy` of the very same rows into a
 * table shaped like `locations`, measured in the same run (absolute numbers drift; the ratio is the target).
 *
 * 1. In a Kafka namespace of its own (topics and groups `bench-persist-<run>.*`, deleted at the end), produces
 *    enriched events to `locations.enriched`, starts a fresh persist.ts and times it by its group's committed
 *    offsets (persist commits to Kafka right after each batch's transaction).
 * 2. Ceilings over the same rows, made with persist/postgres/table.ts's `copyText` so the bytes are identical: `psql \copy`
 *    (the ceiling) and one postgres.js COPY into `bench_locations_copy` (LIKE locations INCLUDING ALL), and as
 *    middle figures the stage's per-record CPU without I/O and `writeBatch` itself in batches, without Kafka.
 * 3. Drops the scratch table and file, and deletes the bench rows from `locations` and the positions persist
 *    stored for its namespaced group.
 *
 * Needs the local stack (`bun run stack`) and psql. Options, as flags or environment:
 *   --events / BENCH_EVENTS (200000)      --timeout / BENCH_TIMEOUT_S (300): per wait (drain, measured run)
 * The spawned stages inherit the environment, so BATCH_MAX_RECORDS=... applies to them. For profiling, the
 * timed stage alone also gets BENCH_STAGE_FLAGS (`bun run` flags, e.g. "--cpu-prof-md --cpu-prof-dir=/tmp/prof")
 * and BENCH_STAGE_ENV (NAME=value pairs, e.g. "BUN_JSC_forceRAMSize=150000000").
 * Exits 0 when the target is missed (it reports, it does not assert); 1 when it cannot run.
 */
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { enrichLocation } from "../enrich/timezone.ts";
import { createDb, databaseAnswers, type Sql } from "../persist/postgres/db.ts";
import { copyText, type Table } from "../persist/postgres/table.ts";
import { type PendingRow, writeBatch } from "../persist/postgres/transaction.ts";
import { LOCATIONS } from "../persist/postgres.ts";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, kafkaConnection } from "../shared/kafka.ts";
import { DECODERS } from "../shared/records.ts";
import type { EnrichedLocation } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import { inNamespace } from "../tools/harness.ts";
import { metricSum } from "../tools/metrics.ts";
import { BenchError, backlogOptions, int, printFigures, runBench } from "./cli.ts";
import { benchLocations, consumed, deleteBenchRows, keyedByUser } from "./events.ts";
import { bestOf, bestOfAsync, printTimedRun, stageLog, timeBacklog, verdict } from "./stages.ts";

/** One persist instance at 65% or more of the COPY ceiling. */
const TARGET_RATIO = 0.65;
const SCRATCH = "bench_locations_copy";
/** The `locations` row of an enriched event, exactly as the PostgreSQL sink computes it. */
const locationRow = (value: EnrichedLocation, at: { partition: number; offset: bigint }) =>
  LOCATIONS.values({ topic: TOPICS.locationsEnriched, ...at, value });

/** The group under which the in-process `writeBatch` figure stores its offsets; deleted at the end. */
const SCRATCH_GROUP = "bench-persist";
const COLUMNS = LOCATIONS.columns.join(", ");

/** Seconds `work` takes. */
async function seconds(work: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await work();
  return (performance.now() - start) / 1000;
}

/** Rows/s of `psql \copy` of `file` into the emptied scratch table; psql's own timing, so not its start-up. */
async function psqlCopy(url: string, file: string, rows: number): Promise<number> {
  const copy = `\\copy ${SCRATCH} (${COLUMNS}) from '${file}'`;
  const args = ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url];
  const run = Bun.spawn(["psql", ...args, "-c", `truncate ${SCRATCH}`, "-c", "\\timing on", "-c", copy], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(run.stdout).text(),
    new Response(run.stderr).text(),
    run.exited,
  ]);
  const ms = /Time: ([\d.]+) ms/.exec(stdout)?.[1];
  if (code !== 0 || !ms) throw new Error(`psql \\copy failed (exit ${code}):\n${stdout}${stderr}`);
  return rows / (Number(ms) / 1000);
}

/** Rows/s of one postgres.js COPY of `text` into the emptied scratch table, written the way store.ts does. */
async function postgresCopy(sql: Sql, text: string, rows: number): Promise<number> {
  await sql.unsafe(`truncate ${SCRATCH}`);
  const elapsed = await seconds(async () => {
    const copy = await sql.unsafe(`copy ${SCRATCH} (${COLUMNS}) from stdin`).writable();
    await new Promise<void>((resolve, reject) => {
      copy.on("error", reject);
      copy.end(text, resolve);
    });
  });
  return rows / elapsed;
}

/** Rows/s of persist/postgres/transaction.ts's `writeBatch` into the emptied scratch table, in batches of `batchSize`, serially. */
async function writeBatches(sql: Sql, rows: PendingRow[], batchSize: number): Promise<number> {
  await sql.unsafe(`truncate ${SCRATCH}`);
  await sql`delete from consumer_offsets where group_id = ${SCRATCH_GROUP}`;
  const elapsed = await seconds(async () => {
    for (let i = 0; i < rows.length; i += batchSize) {
      const batch = rows.slice(i, i + batchSize);
      const next = new Map<string, { topic: string; partition: number; offset: bigint }>();
      for (const { record } of batch) {
        const { topic, partition, offset } = record;
        const key = `${topic}:${partition}`;
        if ((next.get(key)?.offset ?? -1n) <= offset) next.set(key, { topic, partition, offset: offset + 1n });
      }
      await writeBatch(sql, SCRATCH_GROUP, batch, [...next.values()]);
    }
  });
  return rows.length / elapsed;
}

async function main(): Promise<number> {
  const { count, timeoutMs } = backlogOptions(200_000);
  const env = parseConfig(process.env);
  const kafka = kafkaConnection(env);
  const { DATABASE_URL: url, BATCH_MAX_RECORDS: batchSize } = env;
  if (!Bun.which("psql")) throw new BenchError("psql is not installed (Debian: apt-get install -y postgresql-client)");
  const sql = createDb(env, 2);
  if (!(await brokerAnswers(kafka, 3_000)) || !(await databaseAnswers(sql, 3_000))) {
    await sql.end({ timeout: 1 });
    throw new BenchError(
      `no broker at ${kafka.brokers.join(",")} or no database at DATABASE_URL; start them: bun run stack`,
    );
  }

  const runId = Date.now().toString(36);
  const events = benchLocations(count, runId).map(enrichLocation);
  const values = events.map((event) => Buffer.from(JSON.stringify(event)));
  console.log(
    `bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, broker ${kafka.brokers.join(",")}; ` +
      `${int(count)} rows, BATCH_MAX_RECORDS=${batchSize}`,
  );

  const log = stageLog("persist", runId);
  const namespace = `bench-persist-${runId}`;
  const tsvPath = join(tmpdir(), `bench-persist-${runId}.tsv`);
  let deleted = 0;
  const { timed, stored, table, ceilings } = await log
    .around(async () => {
      const input = keyedByUser(TOPICS.locationsEnriched, events, values);
      const timed = await inNamespace(namespace, (kafka) => timeBacklog({ kafka, log, timeoutMs }, "persist", input));
      const ids = events.map((event) => event.event_id);
      const stored = Number((await sql`select count(*) as n from locations where event_id = any(${ids})`)[0]?.n);
      // The stage inserts into a big table, the ceilings into an empty one: index pages that no longer fit in
      // shared_buffers make the stage's inserts dearer, so say how big it is.
      const [table] = await sql<{ rows: number; indexes: string }[]>`
        select c.reltuples::bigint as rows, pg_size_pretty(pg_indexes_size(c.oid)) as indexes
        from pg_class c where c.oid = 'locations'::regclass`;

      // The rows exactly as persist.ts wrote them, source partition and offset included.
      const at = (i: number) => timed.deliveries[i] as { partition: number; offset: bigint };
      const rows = events.map((event, i) => locationRow(event, at(i)));
      const text = copyText(rows);
      writeFileSync(tsvPath, text);
      await sql.unsafe(`drop table if exists ${SCRATCH}`);
      await sql.unsafe(`create table ${SCRATCH} (like locations including all)`);
      const scratchSpec: Table<never> = { ...LOCATIONS, name: SCRATCH };
      const pending: PendingRow[] = rows.map((values, i) => ({
        table: scratchSpec,
        record: { topic: TOPICS.locationsEnriched, ...at(i) },
        values,
      }));
      const records = values.map((value, i) =>
        consumed(TOPICS.locationsEnriched, value, at(i).partition, at(i).offset),
      );
      const ceilings = {
        psql: await bestOfAsync(() => psqlCopy(url, tsvPath, count)),
        postgres: await bestOfAsync(() => postgresCopy(sql, text, count)),
        // The stage's own CPU per batch: decode and row before its transaction, COPY text inside it.
        perRecord: bestOf(() => {
          const start = performance.now();
          for (let i = 0; i < records.length; i += batchSize) {
            copyText(
              records
                .slice(i, i + batchSize)
                .map((record) => locationRow(DECODERS[TOPICS.locationsEnriched](record), record)),
            );
          }
          return records.length / ((performance.now() - start) / 1000);
        }),
        writeBatch: await bestOfAsync(() => writeBatches(sql, pending, batchSize)),
      };
      return { timed, stored, table, ceilings };
    })
    .finally(async () => {
      rmSync(tsvPath, { force: true });
      await sql.unsafe(`drop table if exists ${SCRATCH}`).catch(() => {});
      await sql`delete from consumer_offsets where group_id = ${SCRATCH_GROUP} or group_id like ${`${namespace}.%`}`.catch(
        () => {},
      );
      deleted = await deleteBenchRows(sql).catch(() => 0);
      await sql.end({ timeout: 1 });
    });

  const { run } = timed;
  printFigures("rows", "rows/s", [
    { name: `psql \\copy into ${SCRATCH}`, rate: ceilings.psql },
    { name: "postgres.js COPY, one statement", rate: ceilings.postgres },
    { name: "decode + row + COPY text, no I/O", rate: ceilings.perRecord },
    { name: `writeBatch x${batchSize}, no Kafka`, rate: ceilings.writeBatch },
    {
      name: "persist.ts, one instance",
      rate: run.steadyRate,
      target: `>= ${TARGET_RATIO.toFixed(2)}x`,
      result: verdict(run, run.steadyRate / ceilings.psql, TARGET_RATIO),
    },
  ]);
  printTimedRun(timed);
  const metric = (name: string) => metricSum(run.exposition, name);
  const batches = metric("batch_seconds_count");
  console.log(
    `persist.ts: ${int(metric("rows_written_total"))} rows written, ${int(stored)} of our ${int(count)} events in ` +
      `locations; ${int(batches)} batches of ${int(metric("records_in_total") / batches)} records on average, ` +
      `${((metric("batch_seconds_sum") / batches) * 1000).toFixed(1)} ms each, of which the transaction ` +
      `${((metric("write_seconds_sum") / Math.max(1, metric("write_seconds_count"))) * 1000).toFixed(1)} ms; ` +
      `${int(metric("rows_conflicting_total"))} conflicts, ${int(metric("records_replayed_total"))} replayed, ` +
      `${int(metric("records_dead_lettered_total"))} dead-lettered, ${int(metric("batch_failures_total"))} failed attempts`,
  );
  console.log(
    `locations holds ~${int(Number(table?.rows ?? 0))} rows with ${table?.indexes ?? "?"} of indexes; ` +
      `the ceilings write into ${SCRATCH}, emptied before each pass`,
  );
  console.log(`cleanup: dropped ${SCRATCH}, deleted ${int(deleted)} bench rows from locations`);
  log.report();
  return 0;
}

await runBench(main);
