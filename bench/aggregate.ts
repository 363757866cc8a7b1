/**
 * `bun run bench:aggregate`: events/s of ONE aggregate.ts instance beside the rate of the pure window fold
 * (aggregate/windows.ts) on the same events, measured in the same run.
 *
 * 1. In this process: the fold alone, with a tick after every 5,000 events as the stage does after each batch.
 * 2. Drains the `aggregate` group, produces the events to `logins.raw`, starts a fresh aggregate.ts and times it
 *    by its own records_in_total until it has consumed all of them. Committed offsets would not do here: the
 *    stage commits only up to its oldest open window, which by design trails what it has read.
 *
 * Needs the local stack (`bun run stack`). Options, as flags or environment:
 *   --events / BENCH_EVENTS (300000)      --timeout / BENCH_TIMEOUT_S (300)
 * Targets from the issue: the fold at 200k events/s or more, the stage at 50% or more of the fold.
 * Exits 0 when a target is missed (it reports, it does not assert); 1 when it cannot run.
 */
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createWindowFold } from "../aggregate/windows.ts";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, kafkaConnection, partitionFor } from "../shared/kafka.ts";
import type { RawLogin } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import {
  bestOf,
  drainGroup,
  int,
  metricSum,
  mib,
  numberOptions,
  printTable,
  produceAll,
  seededRandom,
  stageTweaks,
  startStage,
  timeStage,
  topicSize,
  verdict,
} from "./stages.ts";

const FOLD_TARGET = 200_000;
const STAGE_TARGET_RATIO = 0.5;
const BATCH = 5_000;
const DEVICES = ["android", "ios", "iOS", "web", "", null];

/**
 * Logins of 5,000 users over the next minute of event time, some fields missing. Event time only moves forward per
 * partition, so the bench stays close to now: events timed further ahead would make later real events late.
 */
function logins(count: number, runId: string, partitions: number): { event: RawLogin; partition: number }[] {
  const random = seededRandom(2001);
  const start = Date.now();
  const spanMs = 60_000;
  return Array.from({ length: count }, (_, i) => {
    const user_id = `bench-${runId}-${Math.floor(random() * 5_000)}`;
    const device = DEVICES[Math.floor(random() * DEVICES.length)];
    const event: RawLogin = {
      event_id: `bench-${runId}-${i}`,
      user_id,
      timestamp: new Date(start + Math.floor((i * spanMs) / count + random() * 2_000)).toISOString(),
      ingested_at: new Date().toISOString(),
      ...(device !== undefined && { device_type: device }),
      ...(random() < 0.9 && { app_version: "2.3.0" }),
      ...(random() < 0.8 && { locale: "RU" }),
    };
    return { event, partition: partitionFor(user_id, partitions) };
  });
}

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
  const opts = numberOptions({
    events: { env: "BENCH_EVENTS", fallback: 300_000 },
    timeout: { env: "BENCH_TIMEOUT_S", fallback: 300 },
  });
  const count = Math.floor(opts.events);
  const timeoutMs = opts.timeout * 1000;
  const env = parseConfig(process.env);
  const [kafka, partitions] = [kafkaConnection(env), env.TOPIC_PARTITIONS];
  if (!(await brokerAnswers(kafka, 3_000))) {
    console.error(`no broker at ${kafka.brokers.join(",")}; start the stack with: bun run stack`);
    return 1;
  }
  const runId = Date.now().toString(36);
  const events = logins(count, runId, partitions);
  console.log(`bun ${Bun.version}, ${navigator.hardwareConcurrency} cores; ${int(count)} login events`);

  const fold = bestOf(() => foldRate(events, partitions));

  const logPath = join(tmpdir(), `bench-aggregate-${runId}.log`);
  const log = openSync(logPath, "a");
  let run: Awaited<ReturnType<typeof timeStage>>;
  let backlog: number;
  try {
    const drained = await drainGroup({
      kafka,
      script: "aggregate.ts",
      portVariable: "AGGREGATE_PORT",
      groupId: "aggregate",
      topic: TOPICS.loginsRaw,
      logFile: log,
      timeoutMs,
    });
    if (drained > 0) console.log(`drained a backlog of ${int(drained)} records of the aggregate group`);
    const before = await topicSize(kafka, TOPICS.loginsRaw);
    await produceAll(
      kafka,
      events.map(({ event }) => ({ topic: TOPICS.loginsRaw, key: event.user_id, value: JSON.stringify(event) })),
    );
    backlog = (await topicSize(kafka, TOPICS.loginsRaw)) - before;
    const stage = await startStage("aggregate.ts", "AGGREGATE_PORT", log, stageTweaks());
    const consumed = {
      base: 0,
      read: async () => metricSum(await stage.metrics(), "records_in_total"),
      close: async () => {},
    };
    try {
      run = await timeStage(stage, consumed, backlog, timeoutMs);
    } finally {
      await stage.stop();
    }
  } finally {
    closeSync(log);
  }

  const ratio = run.steadyRate / fold;
  console.log();
  printTable([
    ["figure (same events, same run)", "events/s", "/ fold", "target", "result"],
    [
      "ceiling: window fold, no Kafka",
      int(fold),
      "1.00x",
      `>= ${int(FOLD_TARGET)}/s`,
      fold >= FOLD_TARGET ? "pass" : "MISS",
    ],
    [
      "aggregate.ts, one instance",
      int(run.steadyRate),
      `${ratio.toFixed(2)}x`,
      `>= ${STAGE_TARGET_RATIO.toFixed(2)}x`,
      verdict(run, ratio, STAGE_TARGET_RATIO),
    ],
  ]);
  console.log();
  console.log(
    `aggregate.ts: ${int(run.done)} records read, ${int(metricSum(run.exposition, "windows_emitted_total"))} windows ` +
      `emitted, ${int(metricSum(run.exposition, "late_events_total"))} late; ${run.stageCores.toFixed(2)} cores; ` +
      `RSS peak ${mib(run.memory.peak)}`,
  );
  if (backlog > count) console.log(`note: ${int(backlog - count)} records beyond ours: another producer was writing`);
  const logged = readFileSync(logPath, "utf8").split("\n").filter(Boolean).length;
  if (logged > 0) console.log(`the stage logged ${logged} line(s) at warn or above: ${logPath}`);
  else rmSync(logPath);
  return 0;
}

process.exit(await main());
