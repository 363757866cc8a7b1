/**
 * `bun run bench:aggregate`: events/s of ONE aggregate.ts instance beside the rate of the pure window fold
 * (aggregate/windows.ts) on the same events, measured in the same run.
 *
 * 1. In this process: the fold alone, with a tick after every 5,000 events as the stage does after each batch.
 * 2. In a Kafka namespace of its own (topics and groups `bench-aggregate-<run>.*`, deleted at the end), produces
 *    the events to `logins.raw`, starts a fresh aggregate.ts and times it by its own records_in_total until it
 *    has consumed all of them. Committed offsets would not do here: the stage commits only up to its oldest open
 *    window, which by design trails what it has read.
 *
 * Needs the local stack (`bun run stack`). Options, as flags or environment:
 *   --events / BENCH_EVENTS (300000)      --timeout / BENCH_TIMEOUT_S (300)
 * The timed stage alone gets BENCH_STAGE_FLAGS and BENCH_STAGE_ENV, as in bench:enrich.
 * Targets: the fold at 200k events/s or more, the stage at 400k events/s or more.
 * Exits 0 when a target is missed (it reports, it does not assert); 1 when it cannot run.
 */
import { createWindowFold } from "../aggregate/windows.ts";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, kafkaConnection, partitionFor } from "../shared/kafka.ts";
import type { RawLogin } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import { inNamespace } from "../tools/harness.ts";
import { metricSum } from "../tools/metrics.ts";
import { BenchError, backlogOptions, int, printFigures, runBench } from "./cli.ts";
import { benchLogins, keyedByUser } from "./events.ts";
import { bestOf, printTimedRun, stageLog, timeBacklog, verdict } from "./stages.ts";

const FOLD_TARGET = 200_000;
/** One aggregate instance, in events/s (its ratio to the fold is printed beside it). */
const STAGE_TARGET_EVENTS = 400_000;
/** The fold ticks after every this many events, as the stage does after each batch. */
const BATCH = 5_000;

/** Events/s of the fold over `events`, ticking after every batch as the stage does. */
function foldRate(events: { event: RawLogin; partition: number }[], partitions: number): number {
  const fold = createWindowFold({ windowMs: 10_000, graceMs: 5_000 });
  const now = Date.now();
  for (let p = 0; p < partitions; p++) fold.restore(p, undefined, now);
  const offsets = new Array<bigint>(partitions).fill(0n);
  const started = performance.now();
  for (let i = 0; i < events.length; i++) {
    const { event, partition } = events[i] as { event: RawLogin; partition: number };
    const offset = offsets[partition] as bigint;
    offsets[partition] = offset + 1n;
    fold.add(partition, offset, event, now);
    if (i % BATCH === BATCH - 1) fold.tick(now);
  }
  fold.tick(now);
  return events.length / ((performance.now() - started) / 1000);
}

async function main(): Promise<number> {
  const { count, timeoutMs } = backlogOptions(300_000);
  const env = parseConfig(process.env);
  const kafka = kafkaConnection(env);
  const { TOPIC_PARTITIONS: partitions } = env;
  if (!(await brokerAnswers(kafka, 3_000)))
    throw new BenchError(`no broker at ${kafka.brokers.join(",")}; start the stack with: bun run stack`);
  const runId = Date.now().toString(36);
  const events = benchLogins(count, runId).map((event) => ({
    event,
    partition: partitionFor(event.user_id, partitions),
  }));
  console.log(`bun ${Bun.version}, ${navigator.hardwareConcurrency} cores; ${int(count)} login events`);

  const fold = bestOf(() => foldRate(events, partitions));

  const log = stageLog("aggregate", runId);
  const records = keyedByUser(
    TOPICS.loginsRaw,
    events.map(({ event }) => event),
  );
  const timed = await log.around(() =>
    inNamespace(`bench-aggregate-${runId}`, (kafka) =>
      timeBacklog({ kafka, log, timeoutMs }, "aggregate", records, "read"),
    ),
  );

  const { run } = timed;
  printFigures("events", "events/s", [
    {
      name: "window fold, no Kafka",
      rate: fold,
      target: `>= ${int(FOLD_TARGET)}/s`,
      result: fold >= FOLD_TARGET ? "pass" : "MISS",
    },
    {
      name: "aggregate.ts, one instance",
      rate: run.steadyRate,
      target: `>= ${int(STAGE_TARGET_EVENTS)}/s`,
      result: verdict(run, run.steadyRate, STAGE_TARGET_EVENTS),
    },
  ]);
  printTimedRun(timed);
  console.log(
    `aggregate.ts: ${int(metricSum(run.exposition, "windows_emitted_total"))} windows emitted, ` +
      `${int(metricSum(run.exposition, "late_events_total"))} late`,
  );
  log.report();
  return 0;
}

await runBench(main);
