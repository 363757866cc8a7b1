/**
 * One measured step: offer a rate for a fixed time, then wait until the pipeline has drained and read every
 * accepted event's row. Stage throughput comes from each stage's own counters over the sending window; memory
 * and CPU from /proc over the same window.
 */
import type { Sql } from "../../persist/postgres/db.ts";
import type { KafkaConnection } from "../../shared/kafka.ts";
import { TOPICS } from "../../shared/topics.ts";
import type { ProcessHandle, StageName } from "../../tools/harness.ts";
import {
  type HistogramDelta,
  histogramDelta,
  parseExposition,
  type Sample,
  scrape,
  sumOf,
} from "../../tools/metrics.ts";
import { pollEvery } from "../../tools/poll.ts";
import { consumerGroup, stageTweaks } from "../stages.ts";
import { foreignProcesses, lookForForeign } from "./foreign.ts";
import type { GroupWatcher } from "./groups.ts";
import { type Hops, locationEnds, measureHops } from "./hops.ts";
import { type LatencyResult, measureLatency, readRows } from "./latency.ts";
import { type LoadOptions, type LoadResult, offerLoad, type Table } from "./load.ts";
import { assertRunning } from "./pipeline.ts";
import { type PidSource, startUsage, type Usage } from "./resources.ts";

/** The load a step offers, and how long the pipeline may take to drain after sending stops before it fails. */
export interface StepOptions extends Omit<LoadOptions, "url" | "timeoutMs"> {
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
  /**
   * Events per second each stage took in over the sending window (ingest: accepted; others: records_in); the
   * load comes through ingest, so the other sources (capture, poll) have no part in it.
   */
  stageRates: Record<Exclude<StageName, "capture" | "poll">, number>;
  latency: Record<Table, LatencyResult>;
  /** Location events' time per hop, from the records' creation times. */
  hops: Hops;
  timings: StageTimings;
  usage: Usage;
  /** Anything foreign seen just before or just after the step. */
  interference: string[];
}

const FOREIGN_EVERY_MS = 2_000;
/** Generous: a stage's /metrics walks its heap, which takes a while under load. */
const SCRAPE_TIMEOUT_MS = 10_000;

/** The topics each group's lag is read on: all an accepted event passes through before its row exists. */
const DRAIN = {
  enrich: [TOPICS.locationsRaw],
  // Not logins.stats: the aggregate emits windows on its own clock, so that lag is never reliably zero.
  persist: [TOPICS.locationsEnriched, TOPICS.loginsRaw],
};

/** What enrich's and persist's groups have not committed of the topics an accepted event passes through. */
export async function pipelineLag(watcher: GroupWatcher): Promise<Record<keyof typeof DRAIN, number>> {
  const { env } = stageTweaks();
  return {
    enrich: await watcher.lag(consumerGroup("enrich", env), DRAIN.enrich),
    persist: await watcher.lag(consumerGroup("persist", env), DRAIN.persist),
  };
}

/** Resolves once enrich and persist have committed everything on the topics an accepted event passes through. */
export async function waitDrained(watcher: GroupWatcher, timeoutMs: number): Promise<void> {
  await pollEvery(
    "the pipeline to drain (enrich and persist lag 0)",
    async () => (Object.values(await pipelineLag(watcher)).every((lag) => lag === 0) ? true : undefined),
    timeoutMs,
    250,
  );
}

/** Each stage's /metrics, parsed. Scraped only at the ends of a window: a scrape costs a stage real CPU. */
async function scrapeAll(stages: ProcessHandle[]): Promise<Map<StageName, Sample[]>> {
  const scrapes = stages.map(async (stage) => {
    const text = await scrape(stage.url, SCRAPE_TIMEOUT_MS);
    if (text === undefined) throw new Error(`${stage.name} did not answer ${stage.url}/metrics`);
    return [stage.name, parseExposition(text)] as const;
  });
  return new Map(await Promise.all(scrapes));
}

/** Runs one step against the running `stages`. */
export async function runStep(
  options: StepOptions,
  context: {
    stages: ProcessHandle[];
    watcher: GroupWatcher;
    sql: Sql;
    sources: Map<string, PidSource>;
    kafka: KafkaConnection;
  },
): Promise<StepResult> {
  const { stages, watcher, sql, sources, kafka } = context;
  const ingest = stages.find((s) => s.name === "ingest") as ProcessHandle;
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
  const load = await offerLoad({ ...options, url: ingest.url, timeoutMs: 10_000 });
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
      intervals: delta("intervals", "records_in_total") / seconds,
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
