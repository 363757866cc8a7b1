/**
 * One measured step: offer a rate for a fixed time, then wait until the pipeline has drained and read every
 * accepted event's row. Stage throughput comes from each stage's own counters over the sending window; memory
 * and CPU from /proc over the same window.
 */
import type { Sql } from "../../persist/postgres/db.ts";
import type { KafkaConnection } from "../../shared/kafka.ts";
import { TOPICS } from "../../shared/topics.ts";
import { pollEvery } from "../../tools/poll.ts";
import { foreignProcesses, lookForForeign } from "./foreign.ts";
import type { GroupWatcher } from "./groups.ts";
import { type Hops, locationEnds, measureHops } from "./hops.ts";
import { type LatencyResult, measureLatency, readRows } from "./latency.ts";
import { type LoadResult, offerLoad, type Table } from "./load.ts";
import { assertRunning, type Stage, type StageName } from "./pipeline.ts";
import { type HistogramDelta, histogramDelta, type Sample, sumOf } from "./prom.ts";
import { type PidSource, startUsage, type Usage } from "./resources.ts";

export interface StepOptions {
  /** Offered events per second. */
  rate: number;
  durationMs: number;
  batch: number;
  loginShare: number;
  /** Unique per run and step (event_id and user prefix). */
  tag: string;
  seed: string;
  /** How long the pipeline may take to drain after sending stops before the step fails. */
  drainTimeoutMs: number;
}

/** Histograms that say where a step's time went, as changes over its window. */
export interface StageTimings {
  ingestProduce: HistogramDelta;
  enrichBatch: HistogramDelta;
  aggregateBatch: HistogramDelta;
  persistBatch: HistogramDelta;
  persistWrite: HistogramDelta;
}

export interface StepResult {
  options: StepOptions;
  /** Seconds from the first request to the last answer. */
  seconds: number;
  load: LoadResult;
  /** Events per second each stage took in over the sending window (ingest: accepted; others: records_in). */
  stageRates: Record<StageName, number>;
  latency: Record<Table, LatencyResult>;
  /** Location events' time per hop, from the records' creation times. */
  hops: Hops;
  timings: StageTimings;
  usage: Usage;
  /** Anything foreign seen just before or just after the step. */
  interference: string[];
}

const FOREIGN_EVERY_MS = 2_000;

/** The topics each check waits on: all an accepted event passes through before its row exists. */
const DRAIN: { group: string; topics: string[] }[] = [
  { group: "enrich", topics: [TOPICS.locationsRaw] },
  // Not logins.stats: the aggregate emits windows on its own clock, so that lag is never reliably zero.
  { group: "persist", topics: [TOPICS.locationsEnriched, TOPICS.loginsRaw] },
];

/** Resolves once enrich and persist have committed everything on the topics an accepted event passes through. */
export async function waitDrained(watcher: GroupWatcher, timeoutMs: number): Promise<void> {
  await pollEvery(
    "the pipeline to drain (enrich and persist lag 0)",
    async () => {
      for (const { group, topics } of DRAIN) if ((await watcher.lag(group, topics)) > 0) return undefined;
      return true;
    },
    timeoutMs,
    250,
  );
}

async function scrapeAll(stages: Stage[]): Promise<Map<StageName, Sample[]>> {
  return new Map(await Promise.all(stages.map(async (s) => [s.name, await s.scrape()] as const)));
}

/** Runs one step against the running `stages`. */
export async function runStep(
  options: StepOptions,
  context: {
    stages: Stage[];
    watcher: GroupWatcher;
    sql: Sql;
    sources: Map<string, PidSource>;
    kafka: KafkaConnection;
  },
): Promise<StepResult> {
  const { stages, watcher, sql, sources, kafka } = context;
  const ingest = stages.find((s) => s.name === "ingest") as Stage;
  const pids = stages.map((s) => s.child.pid);
  // Only the step's own traffic may be in flight: other work (or the previous step) can have left a backlog.
  await waitDrained(watcher, options.drainTimeoutMs);
  const interference = await lookForForeign(watcher, pids, 1);

  // Other work can start in the middle of a step: look every few seconds (ps only; the groups after the step).
  const watch = setInterval(() => interference.push(...foreignProcesses(pids)), FOREIGN_EVERY_MS);
  const ends = await locationEnds(watcher);
  const before = await scrapeAll(stages);
  const usage = startUsage(
    sources,
    stages.map((s) => s.name),
  );
  const load = await offerLoad({
    url: ingest.url,
    rate: options.rate,
    durationMs: options.durationMs,
    batch: options.batch,
    loginShare: options.loginShare,
    tag: options.tag,
    seed: options.seed,
    timeoutMs: 10_000,
  });
  const used = usage.stop();
  clearInterval(watch);
  const after = await scrapeAll(stages);
  assertRunning(stages);
  const seconds = (load.endedAt - load.startedAt) / 1000;

  await waitDrained(watcher, options.drainTimeoutMs);
  interference.push(...(await lookForForeign(watcher, pids, 1)));

  const window = { startedAt: load.startedAt, endedAt: load.endedAt };
  const locationRows = await readRows(sql, "locations", [...load.acked.locations.keys()]);
  const loginRows = await readRows(sql, "logins", [...load.acked.logins.keys()]);
  const latency = {
    locations: measureLatency(locationRows, load.acked.locations, window),
    logins: measureLatency(loginRows, load.acked.logins, window),
  };
  const hops = await measureHops(kafka, ends, await locationEnds(watcher), locationRows);

  const delta = (stage: StageName, name: string, where: Record<string, string> = {}) =>
    sumOf(after.get(stage) ?? [], name, where) - sumOf(before.get(stage) ?? [], name, where);
  const histogram = (stage: StageName, name: string) =>
    histogramDelta(before.get(stage) ?? [], after.get(stage) ?? [], name);
  return {
    options,
    seconds,
    load,
    stageRates: {
      ingest: delta("ingest", "ingest_events_total", { outcome: "accepted" }) / seconds,
      enrich: delta("enrich", "records_in_total") / seconds,
      aggregate: delta("aggregate", "records_in_total") / seconds,
      persist: delta("persist", "records_in_total") / seconds,
    },
    latency,
    hops,
    timings: {
      ingestProduce: histogram("ingest", "ingest_produce_seconds"),
      enrichBatch: histogram("enrich", "batch_seconds"),
      aggregateBatch: histogram("aggregate", "batch_seconds"),
      persistBatch: histogram("persist", "batch_seconds"),
      persistWrite: histogram("persist", "write_seconds"),
    },
    usage: used,
    interference: [...new Set(interference)],
  };
}
