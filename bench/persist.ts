/**
 * `bun run bench:persist`: rows/s of ONE persist.ts instance (exactly-once path as it is: COPY into a staging
 * table, INSERT ... ON CONFLICT, offsets in the same transaction) against `psql \copy` of the very same rows into a
 * table shaped like `locations`, measured in the same run (absolute numbers drift; the ratio is the target).
 *
 * 1. Drains the `persist` group, produces enriched events to `locations.enriched`, starts a fresh persist.ts and
 *    times it by its group's committed offsets (persist commits to Kafka right after each batch's transaction).
 * 2. Ceilings over the same rows, made with persist/postgres/table.ts's `copyText` so the bytes are identical: `psql \copy`
 *    (the ceiling) and one postgres.js COPY into `bench_locations_copy` (LIKE locations INCLUDING ALL), and as
 *    middle figures the stage's per-record CPU without I/O and `writeBatch` itself in batches, without Kafka.
 * 3. Drops the scratch table and file, and deletes the bench rows from `locations`.
 *
 * Needs the local stack (`bun run stack`) and psql. Options, as flags or environment:
 *   --events / BENCH_EVENTS (200000)      --timeout / BENCH_TIMEOUT_S (300): per wait (drain, measured run)
 * The spawned stages inherit the environment, so BATCH_MAX_RECORDS=... applies to them. For profiling, the
 * timed stage alone also gets BENCH_STAGE_FLAGS (`bun run` flags, e.g. "--cpu-prof-md --cpu-prof-dir=/tmp/prof")
 * and BENCH_STAGE_ENV (NAME=value pairs, e.g. "BUN_JSC_forceRAMSize=150000000").
 * Exits 0 when the target is missed (it reports, it does not assert); 1 when it cannot run.
 */
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { enrichLocation } from "../enrich/timezone.ts";
import { createDb, databaseAnswers, type Sql } from "../persist/postgres/db.ts";
import { copyText, type Table } from "../persist/postgres/table.ts";
import { type PendingRow, writeBatch } from "../persist/postgres/transaction.ts";
import { LOCATIONS } from "../persist/postgres.ts";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, type InRecord, kafkaConnection } from "../shared/kafka.ts";
import { decode } from "../shared/records.ts";
import { type EnrichedLocation as Enriched, EnrichedLocation } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import {
  bestOf,
  bestOfAsync,
  commitCounter,
  deleteBenchRows,
  drainGroup,
  int,
  metricSum,
  mib,
  numberOptions,
  printTable,
  produceAll,
  randomPoints,
  rawLocations,
  stageTweaks,
  startStage,
  timeStage,
  topicSize,
  verdict,
} from "./stages.ts";

/** From the issue: one persist instance at 50% or more of the COPY ceiling. */
const TARGET_RATIO = 0.5;
/** From the issue: a consumer stage stays under ~120 MB resident. */
const RSS_TARGET_BYTES = 120 * 1_048_576;
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

/** A consumed record around `value`, as the stage's decode sees it. */
const asRecord = (value: Buffer, partition: number, offset: bigint): InRecord => ({
  topic: TOPICS.locationsEnriched,
  partition,
  offset,
  key: undefined,
  value,
  headers: {},
  timestamp: 0n,
});

async function main(): Promise<number> {
  const opts = numberOptions({
    events: { env: "BENCH_EVENTS", fallback: 200_000 },
    timeout: { env: "BENCH_TIMEOUT_S", fallback: 300 },
  });
  const count = Math.floor(opts.events);
  const timeoutMs = opts.timeout * 1000;
  const env = parseConfig(process.env);
  const { DATABASE_URL: url, BATCH_MAX_RECORDS: batchSize } = env;
  const kafka = kafkaConnection(env);
  if (!Bun.which("psql")) {
    console.error("psql is not installed (Debian: apt-get install -y postgresql-client)");
    return 1;
  }
  const sql = createDb(env, 2);
  if (!(await brokerAnswers(kafka, 3_000)) || !(await databaseAnswers(sql, 3_000))) {
    console.error(`no broker at ${kafka.brokers.join(",")} or no database at DATABASE_URL; start them: bun run stack`);
    await sql.end({ timeout: 1 });
    return 1;
  }

  const runId = Date.now().toString(36);
  const events: Enriched[] = rawLocations(randomPoints(count, 2024), runId, 2024).map(enrichLocation);
  const values = events.map((event) => Buffer.from(JSON.stringify(event)));
  console.log(
    `bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, broker ${kafka.brokers.join(",")}; ` +
      `${int(count)} rows, BATCH_MAX_RECORDS=${batchSize}`,
  );

  const logPath = join(tmpdir(), `bench-persist-${runId}.log`);
  const tsvPath = join(tmpdir(), `bench-persist-${runId}.tsv`);
  const log = openSync(logPath, "a");
  let run: Awaited<ReturnType<typeof timeStage>>;
  let backlog: number;
  let drained: number;
  let produceRate: number;
  let stored: number;
  let ceilings: { psql: number; postgres: number; perRecord: number; writeBatch: number };
  let table: { rows: number; indexes: string } | undefined;
  let deleted = 0;
  try {
    // persist.ts applies the migrations itself, so the drain also makes sure that `locations` exists.
    drained = await drainGroup({
      kafka,
      script: "persist.ts",
      portVariable: "PERSIST_PORT",
      groupId: "persist",
      topic: TOPICS.locationsEnriched,
      logFile: log,
      timeoutMs,
    });
    if (drained > 0) console.log(`drained a backlog of ${int(drained)} records of the persist group`);

    const produced = await produceAll(
      kafka,
      events.map((event, i) => ({ topic: TOPICS.locationsEnriched, key: event.user_id, value: values[i] as Buffer })),
    );
    produceRate = produced.rate;
    const counter = await commitCounter(kafka, "persist", TOPICS.locationsEnriched);
    backlog = (await topicSize(kafka, TOPICS.locationsEnriched)) - counter.base;
    const stage = await startStage("persist.ts", "PERSIST_PORT", log, stageTweaks());
    try {
      run = await timeStage(stage, counter, backlog, timeoutMs);
    } finally {
      await Promise.all([stage.stop(), counter.close()]);
    }
    const ids = events.map((event) => event.event_id);
    stored = Number((await sql`select count(*) as n from locations where event_id = any(${ids})`)[0]?.n);
    // The stage inserts into a big table, the ceilings into an empty one: index pages that no longer fit in
    // shared_buffers make the stage's inserts dearer, so say how big it is.
    [table] = await sql<{ rows: number; indexes: string }[]>`
      select c.reltuples::bigint as rows, pg_size_pretty(pg_indexes_size(c.oid)) as indexes
      from pg_class c where c.oid = 'locations'::regclass`;

    // The rows exactly as persist.ts wrote them, source partition and offset included.
    const rows = events.map((event, i) =>
      locationRow(event, produced.deliveries[i] as { partition: number; offset: bigint }),
    );
    const text = copyText(rows);
    writeFileSync(tsvPath, text);
    await sql.unsafe(`drop table if exists ${SCRATCH}`);
    await sql.unsafe(`create table ${SCRATCH} (like locations including all)`);
    const scratchSpec: Table<never> = { ...LOCATIONS, name: SCRATCH };
    const pending: PendingRow[] = rows.map((values, i) => {
      const { partition, offset } = produced.deliveries[i] as { partition: number; offset: bigint };
      return { table: scratchSpec, record: { topic: TOPICS.locationsEnriched, partition, offset }, values };
    });
    const records = values.map((value, i) => {
      const { partition, offset } = produced.deliveries[i] as { partition: number; offset: bigint };
      return asRecord(value, partition, offset);
    });
    ceilings = {
      psql: await bestOfAsync(() => psqlCopy(url, tsvPath, count)),
      postgres: await bestOfAsync(() => postgresCopy(sql, text, count)),
      // The stage's own CPU per batch: decode and row before its transaction, COPY text inside it.
      perRecord: bestOf(() => {
        const start = performance.now();
        for (let i = 0; i < records.length; i += batchSize) {
          copyText(
            records.slice(i, i + batchSize).map((record) => locationRow(decode(EnrichedLocation, record), record)),
          );
        }
        return records.length / ((performance.now() - start) / 1000);
      }),
      writeBatch: await bestOfAsync(() => writeBatches(sql, pending, batchSize)),
    };
  } catch (error) {
    console.error(`stage logs: ${logPath}`);
    throw error;
  } finally {
    closeSync(log);
    rmSync(tsvPath, { force: true });
    await sql.unsafe(`drop table if exists ${SCRATCH}`).catch(() => {});
    await sql`delete from consumer_offsets where group_id = ${SCRATCH_GROUP}`.catch(() => {});
    deleted = await deleteBenchRows(sql).catch(() => 0);
    await sql.end({ timeout: 1 });
  }

  const ceiling = ceilings.psql;
  const ratio = run.steadyRate / ceiling;
  const row = (name: string, rate: number, target = "-", result = "-") => [
    name,
    int(rate),
    `${(rate / ceiling).toFixed(2)}x`,
    target,
    result,
  ];
  console.log();
  printTable([
    ["figure (same rows, same run)", "rows/s", "/ ceiling", "target", "result"],
    row(`ceiling: psql \\copy into ${SCRATCH}`, ceilings.psql),
    row("postgres.js COPY, one statement", ceilings.postgres),
    row("decode + row + COPY text, no I/O", ceilings.perRecord),
    row(`writeBatch x${batchSize}, no Kafka`, ceilings.writeBatch),
    row(
      "persist.ts, one instance",
      run.steadyRate,
      `>= ${TARGET_RATIO.toFixed(2)}x`,
      verdict(run, ratio, TARGET_RATIO),
    ),
  ]);
  console.log();

  const metric = (name: string) => metricSum(run.exposition, name);
  const batches = metric("batch_seconds_count");
  console.log(
    `persist.ts: ${int(run.done)} records committed, ${int(metric("rows_written_total"))} rows written, ` +
      `${int(stored)} of our ${int(count)} events in locations; from /healthz answering ` +
      `${int(run.fromReadyRate)} rows/s (group join + first batch took ${int(run.startupMs)} ms)`,
  );
  console.log(
    `persist.ts: ${int(batches)} batches of ${int(metric("records_in_total") / batches)} records on average, ` +
      `${((metric("batch_seconds_sum") / batches) * 1000).toFixed(1)} ms each, of which the transaction ` +
      `${((metric("write_seconds_sum") / Math.max(1, metric("write_seconds_count"))) * 1000).toFixed(1)} ms; ` +
      `${int(metric("rows_conflicting_total"))} conflicts, ${int(metric("records_replayed_total"))} replayed, ` +
      `${int(metric("records_dead_lettered_total"))} dead-lettered, ${int(metric("batch_failures_total"))} failed attempts`,
  );
  console.log(
    `persist.ts CPU in the steady window: ${run.stageCores.toFixed(2)} cores; whole machine ` +
      `${run.machineCores.toFixed(2)} of ${navigator.hardwareConcurrency} cores busy (stage + broker + PostgreSQL + others)`,
  );
  const rssVerdict = run.memory.peak <= RSS_TARGET_BYTES ? "pass" : "MISS";
  console.log(
    `persist.ts RSS: peak ${mib(run.memory.peak)}, at the end ${mib(run.memory.current)} ` +
      `(target <= ${mib(RSS_TARGET_BYTES)}: ${rssVerdict})`,
  );
  console.log(
    `locations holds ~${int(Number(table?.rows ?? 0))} rows with ${table?.indexes ?? "?"} of indexes; ` +
      `the ceilings write into ${SCRATCH}, emptied before each pass`,
  );
  console.log(`produce of the input: ${int(produceRate)} events/s`);
  if (backlog > count) {
    console.log(`note: ${int(backlog - count)} records beyond ours were in the backlog: another producer was writing`);
  }
  if (run.ownRecords < run.done * 0.95) {
    console.log(
      `note: the timed persist.ts read only ${int(run.ownRecords)} of the ${int(run.done)} records its group committed: ` +
        "another member (an integration test's persist?) shared the group, so the figure is not one instance's",
    );
  }
  if (run.timedOut) {
    console.log(
      `note: only ${int(run.done)} of ${int(backlog)} records were committed before the deadline; another member ` +
        "(an integration test's persist) may have owned some partitions of the group",
    );
  }
  console.log(`cleanup: dropped ${SCRATCH}, deleted ${int(deleted)} bench rows from locations`);
  const logged = readFileSync(logPath, "utf8").split("\n").filter(Boolean).length;
  if (logged > 0) console.log(`the stages logged ${logged} line(s) at warn or above: ${logPath}`);
  else rmSync(logPath);
  return 0;
}

process.exit(await main());
