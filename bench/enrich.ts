/**
 * `bun run bench:enrich`: events/s of ONE enrich.ts instance against geo-tz's raw lookup rate on the same points,
 * measured in the same run (absolute numbers drift between runs; the ratio is what the target is about).
 *
 * 1. In this process, over the same generated points: `find` from geo-tz in a tight loop (cold cache, as a freshly
 *    started stage has it, then warm), `enrichLocation` alone, and decode + enrich + JSON: the stage's per-record
 *    CPU without Kafka.
 * 2. In a Kafka namespace of its own (`bench-enrich-<run>.locations.raw` and so on, and its own groups, deleted at
 *    the end), produces the events to `locations.raw`, starts a fresh enrich.ts and times it by the group's
 *    committed offsets (enrich commits a batch only after the broker acked its output) until it has committed
 *    all of them.
 * The ceiling is the cold-cache rate: a fresh stage fills geo-tz's cache during the timed run too. The warm rate
 * is printed beside it.
 *
 * Needs the local stack (`bun run stack`). Options, as flags or environment:
 *   --events / BENCH_EVENTS (200000)      --timeout / BENCH_TIMEOUT_S (300): per wait (drain, measured run)
 * The spawned stages inherit the environment, so BATCH_MAX_RECORDS=... applies to them. For profiling, the
 * timed stage alone also gets BENCH_STAGE_FLAGS (`bun run` flags, e.g. "--cpu-prof-md --cpu-prof-dir=/tmp/prof")
 * and BENCH_STAGE_ENV (NAME=value pairs, e.g. "BUN_JSC_forceRAMSize=150000000").
 * Exits 0 when the target is missed (it reports, it does not assert); 1 when it cannot run.
 */
import { find, setCache } from "geo-tz/dist/find-1970";
import { enrichLocation } from "../enrich/timezone.ts";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, kafkaConnection } from "../shared/kafka.ts";
import { DECODERS } from "../shared/records.ts";
import { TOPICS } from "../shared/topics.ts";
import { inNamespace } from "../tools/harness.ts";
import { metricSum } from "../tools/metrics.ts";
import { BenchError, backlogOptions, int, printFigures, runBench } from "./cli.ts";
import { benchLocations, consumed, keyedByUser } from "./events.ts";
import { bestOf, loopRate, printTimedRun, stageLog, timeBacklog, topicSize, verdict } from "./stages.ts";

/** One enrich instance at 150,000 events/s or more (its ratio to geo-tz's raw lookup rate is printed beside it). */
const TARGET_EVENTS = 150_000;

async function main(): Promise<number> {
  const { count, timeoutMs } = backlogOptions(200_000);
  const env = parseConfig(process.env);
  const kafka = kafkaConnection(env);
  const { BATCH_MAX_RECORDS } = env;
  if (!(await brokerAnswers(kafka, 3_000)))
    throw new BenchError(`no broker at ${kafka.brokers.join(",")}; start the stack with: bun run stack`);

  const runId = Date.now().toString(36);
  const events = benchLocations(count, runId);
  const points = events.map(({ lat, long }) => [lat, long] as const);
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
    loopRate(values, (value) =>
      JSON.stringify(enrichLocation(DECODERS[TOPICS.locationsRaw](consumed(TOPICS.locationsRaw, value)))),
    ),
  );
  // This process's geo-tz cache is garbage now: emptied here, it is collected before the stage starts.
  setCache();

  const log = stageLog("enrich", runId);
  const { timed, grew } = await log.around(() =>
    inNamespace(`bench-enrich-${runId}`, async (kafka) => {
      const records = keyedByUser(TOPICS.locationsRaw, events, values);
      const timed = await timeBacklog({ kafka, log, timeoutMs }, "enrich", records);
      return { timed, grew: await topicSize(kafka, TOPICS.locationsEnriched) };
    }),
  );

  const { run } = timed;
  printFigures("points", "events/s", [
    { name: "geo-tz find, cold cache", rate: findCold },
    { name: "geo-tz find, warm cache", rate: findWarm },
    { name: "enrichLocation (warm)", rate: enrichOnly },
    { name: "decode + enrich + JSON, no Kafka", rate: perRecord },
    {
      name: "enrich.ts, one instance",
      rate: run.steadyRate,
      target: `>= ${int(TARGET_EVENTS)}/s`,
      result: verdict(run, run.steadyRate, TARGET_EVENTS),
    },
  ]);
  printTimedRun(timed);
  const metric = (name: string) => metricSum(run.exposition, name);
  const batches = metric("batch_seconds_count");
  console.log(
    `enrich.ts: ${int(batches)} batches, ${int(metric("records_in_total") / batches)} records and ` +
      `${((metric("batch_seconds_sum") / batches) * 1000).toFixed(1)} ms each on average; ` +
      `${int(metric("records_dead_lettered_total"))} dead-lettered, ${int(metric("batch_failures_total"))} failed ` +
      "batch attempts",
  );
  console.log(`enrich.ts against the warm-cache lookup rate: ${(run.steadyRate / findWarm).toFixed(2)}x`);
  console.log(`${TOPICS.locationsEnriched} grew by ${int(grew)}`);
  log.report();
  return 0;
}

await runBench(main);
