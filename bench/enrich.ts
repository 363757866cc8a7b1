/**
 * `bun run bench:enrich`: events/s of ONE enrich.ts instance against geo-tz's raw lookup rate on the same points,
 * measured in the same run (absolute numbers drift between runs; the ratio is what the target is about).
 *
 * 1. In this process, over the same generated points: `find` from geo-tz in a tight loop (cold cache, as a freshly
 *    started stage has it, then warm), `enrichLocation` alone, and decode + enrich + JSON: the stage's per-record
 *    CPU without Kafka.
 * 2. Drains the `enrich` group (runs enrich.ts until it has committed everything on `locations.raw`), produces
 *    the events to `locations.raw`, starts a fresh enrich.ts and times it by the group's committed offsets (enrich
 *    commits a batch only after the broker acked its output) until it has committed all of them.
 * The ceiling is the cold-cache rate: a fresh stage fills geo-tz's cache during the timed run too. The warm rate
 * is printed beside it.
 * 3. Drains the `persist` group and deletes the bench rows it wrote, so no backlog is left for others.
 *
 * Needs the local stack (`bun run stack`). Options, as flags or environment:
 *   --events / BENCH_EVENTS (200000)      --timeout / BENCH_TIMEOUT_S (300): per wait (drain, measured run)
 * The spawned stages inherit the environment, so BATCH_MAX_RECORDS=... applies to them. For profiling, the
 * timed stage alone also gets BENCH_STAGE_FLAGS (`bun run` flags, e.g. "--cpu-prof-md --cpu-prof-dir=/tmp/prof")
 * and BENCH_STAGE_ENV (NAME=value pairs, e.g. "BUN_JSC_forceRAMSize=150000000").
 * Exits 0 when the target is missed (it reports, it does not assert); 1 when it cannot run.
 */
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { find, setCache } from "geo-tz/dist/find-1970";
import { enrichLocation } from "../enrich/timezone.ts";
import { createDb } from "../persist/postgres/db.ts";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, type InRecord, kafkaConnection } from "../shared/kafka.ts";
import { decode } from "../shared/records.ts";
import { RawLocation } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import {
  bestOf,
  commitCounter,
  deleteBenchRows,
  drainGroup,
  int,
  loopRate,
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

/** From the issue: one enrich instance at 60% or more of geo-tz's raw lookup rate. */
const TARGET_RATIO = 0.6;
/** From the issue: a consumer stage stays under ~120 MB resident. */
const RSS_TARGET_BYTES = 120 * 1_048_576;

/** A consumed record around `value`, as the stage's decode sees it. */
const asRecord = (value: Buffer): InRecord => ({
  topic: TOPICS.locationsRaw,
  partition: 0,
  offset: 0n,
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
  const { BATCH_MAX_RECORDS } = env;
  const kafka = kafkaConnection(env);
  if (!(await brokerAnswers(kafka, 3_000))) {
    console.error(`no broker at ${kafka.brokers.join(",")}; start the stack with: bun run stack`);
    return 1;
  }

  const runId = Date.now().toString(36);
  const points = randomPoints(count);
  const events = rawLocations(points, runId);
  const values = events.map((event) => Buffer.from(JSON.stringify(event)));
  console.log(
    `bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, broker ${kafka.brokers.join(",")}; ` +
      `${int(count)} events, BATCH_MAX_RECORDS=${BATCH_MAX_RECORDS}`,
  );

  // The same geo-tz module instance as enrich/timezone.ts uses. Each figure is the best of a few passes, since
  // other work on the machine can only slow a pass down; a cold pass starts from an emptied cache, as a freshly
  // started stage does (the tiles it reads are in the OS page cache either way).
  const findCold = bestOf(() => {
    setCache();
    return loopRate(points, ([lat, long]) => find(lat, long));
  });
  const findWarm = bestOf(() => loopRate(points, ([lat, long]) => find(lat, long)));
  const enrichOnly = bestOf(() => loopRate(events, (event) => enrichLocation(event)));
  const perRecord = bestOf(() =>
    loopRate(values, (value) => JSON.stringify(enrichLocation(decode(RawLocation, asRecord(value))))),
  );

  const logPath = join(tmpdir(), `bench-enrich-${runId}.log`);
  const log = openSync(logPath, "a");
  const drain = (script: string, portVariable: string, groupId: string, topic: string) =>
    drainGroup({ kafka, script, portVariable, groupId, topic, logFile: log, timeoutMs });
  let run: Awaited<ReturnType<typeof timeStage>>;
  let grew: number;
  let backlog: number;
  let produceRate: number;
  let startupDrained: number;
  let cleanupDrained = 0;
  let deleted = 0;
  try {
    startupDrained = await drain("enrich.ts", "ENRICH_PORT", "enrich", TOPICS.locationsRaw);
    if (startupDrained > 0) console.log(`drained a backlog of ${int(startupDrained)} records of the enrich group`);

    const before = await topicSize(kafka, TOPICS.locationsEnriched);
    ({ rate: produceRate } = await produceAll(
      kafka,
      events.map((event, i) => ({ topic: TOPICS.locationsRaw, key: event.user_id, value: values[i] as Buffer })),
    ));
    const counter = await commitCounter(kafka, "enrich", TOPICS.locationsRaw);
    // Ours, plus whatever others produced meanwhile: the stage has to work through all of it.
    backlog = (await topicSize(kafka, TOPICS.locationsRaw)) - counter.base;
    // This process's geo-tz cache is garbage now: collect it before the stage starts, not while it is timed.
    setCache();
    Bun.gc(true);
    const stage = await startStage("enrich.ts", "ENRICH_PORT", log, stageTweaks());
    try {
      run = await timeStage(stage, counter, backlog, timeoutMs);
    } finally {
      await Promise.all([stage.stop(), counter.close()]);
    }
    grew = (await topicSize(kafka, TOPICS.locationsEnriched)) - before;

    // Our enriched events would otherwise wait for the next persist (a test's, perhaps) to write them.
    cleanupDrained = await drain("persist.ts", "PERSIST_PORT", "persist", TOPICS.locationsEnriched);
    const sql = createDb(env, 1);
    try {
      deleted = await deleteBenchRows(sql);
    } finally {
      await sql.end({ timeout: 1 });
    }
  } catch (error) {
    console.error(`stage logs: ${logPath}`);
    throw error;
  } finally {
    closeSync(log);
  }

  const ratio = run.steadyRate / findCold;
  const rssVerdict = run.memory.peak <= RSS_TARGET_BYTES ? "pass" : "MISS";
  const row = (name: string, rate: number, target = "-", result = "-") => [
    name,
    int(rate),
    `${(rate / findCold).toFixed(2)}x`,
    target,
    result,
  ];
  console.log();
  printTable([
    ["figure (same points, same run)", "events/s", "/ ceiling", "target", "result"],
    row("ceiling: geo-tz find, cold cache", findCold),
    row("geo-tz find, warm cache", findWarm),
    row("enrichLocation (warm)", enrichOnly),
    row("decode + enrich + JSON, no Kafka", perRecord),
    row("enrich.ts, one instance", run.steadyRate, `>= ${TARGET_RATIO.toFixed(2)}x`, verdict(run, ratio, TARGET_RATIO)),
  ]);
  console.log();

  const batches = metricSum(run.exposition, "batch_seconds_count");
  const batchSeconds = metricSum(run.exposition, "batch_seconds_sum");
  const consumed = metricSum(run.exposition, "records_in_total");
  const deadLettered = metricSum(run.exposition, "records_dead_lettered_total");
  const failed = metricSum(run.exposition, "batch_failures_total");
  console.log(
    `enrich.ts: ${int(run.done)} records committed; from /healthz answering ${int(run.fromReadyRate)} events/s ` +
      `(group join + first batch took ${int(run.startupMs)} ms)`,
  );
  console.log(
    `enrich.ts: ${int(batches)} batches, ${int(consumed / batches)} records and ` +
      `${((batchSeconds / batches) * 1000).toFixed(1)} ms each on average; ` +
      `${int(deadLettered)} dead-lettered, ${int(failed)} failed batch attempts`,
  );
  console.log(
    `enrich.ts CPU in the steady window: ${run.stageCores.toFixed(2)} cores; whole machine ` +
      `${run.machineCores.toFixed(2)} of ${navigator.hardwareConcurrency} cores busy (stage + broker + anything else)`,
  );
  console.log(
    `enrich.ts RSS: peak ${mib(run.memory.peak)}, at the end ${mib(run.memory.current)} ` +
      `(target <= ${mib(RSS_TARGET_BYTES)}: ${rssVerdict})`,
  );
  console.log(`enrich.ts against the warm-cache lookup rate: ${(run.steadyRate / findWarm).toFixed(2)}x`);
  console.log(`produce of the input: ${int(produceRate)} events/s; ${TOPICS.locationsEnriched} grew by ${int(grew)}`);
  if (backlog > count) {
    console.log(`note: ${int(backlog - count)} records beyond ours were in the backlog: another producer was writing`);
  }
  if (run.ownRecords < run.done * 0.95) {
    console.log(
      `note: the timed enrich.ts read only ${int(run.ownRecords)} of the ${int(run.done)} records its group committed: ` +
        "another member (an integration test's enrich?) shared the group, so the figure is not one instance's",
    );
  }
  if (run.timedOut) {
    console.log(
      `note: only ${int(run.done)} of ${int(backlog)} records were committed before the deadline; another member ` +
        "(an integration test's enrich) may have owned some partitions of the group",
    );
  }
  console.log(
    `cleanup: persist drained ${int(cleanupDrained)} enriched records; deleted ${int(deleted)} bench rows from locations`,
  );
  const logged = readFileSync(logPath, "utf8").split("\n").filter(Boolean).length;
  if (logged > 0) console.log(`the stages logged ${logged} line(s) at warn or above: ${logPath}`);
  else rmSync(logPath);
  return 0;
}

process.exit(await main());
