/**
 * Where an event's time goes between ingest and its row, per event: the broker stamps each record with its
 * producer's creation time, so reading back the step's range of `locations.raw` and `locations.enriched` gives
 * two more timestamps per event_id besides `ingested_at` and `persisted_at`:
 *   ingested_at -> raw created      ingest's coalescing queue (the 202 waits for the ack after this)
 *   raw created -> enriched created enrich: the raw produce's ack, fetching, waiting for the previous batch, enriching
 *   enriched created -> persisted_at persist: the enriched produce's ack, fetching, the previous batch, COPY, insert
 */
import { type KafkaConnection, type Position, scanRange } from "../../shared/kafka.ts";
import type { GroupWatcher } from "./groups.ts";
import { type Distribution, distribution } from "./latency.ts";

const READ_TIMEOUT_MS = 60_000;

/** End offsets of a topic, one position per partition. */
export type Ends = Position[];

/**
 * The creation time (epoch ms) of every record of `topic` between `from` and `to`, by the event_id in its JSON
 * value, for the event_ids in `wanted`.
 *
 * @example
 * const times = await creationTimes(kafka, "locations.raw", before.raw, after.raw, new Set(rows.keys()));
 */
export async function creationTimes(
  kafka: KafkaConnection,
  topic: string,
  from: Ends,
  to: Ends,
  wanted: Set<string>,
): Promise<Map<string, number>> {
  const times = new Map<string, number>();
  await scanRange({
    kafka,
    topic,
    from,
    until: to,
    timeoutMs: READ_TIMEOUT_MS,
    visit: (record) => {
      // Cheaper than JSON.parse of every value: event_id is a plain string field.
      const id = /"event_id":"([^"]+)"/.exec(record.value.toString())?.[1];
      if (id && wanted.has(id)) times.set(id, Number(record.timestamp));
    },
  });
  return times;
}

/** p50/p95/p99 of each hop of location events. */
export interface Hops {
  /** ingested_at -> locations.raw record created. */
  ingestQueue: Distribution;
  /** locations.raw created -> locations.enriched created. */
  enrich: Distribution;
  /** locations.enriched created -> persisted_at. */
  persist: Distribution;
  /** Events found in both topics (the rest were not matched and are left out). */
  matched: number;
}

/** Ends of both location topics now: call before a step, and again after its drain. */
export async function locationEnds(watcher: GroupWatcher): Promise<{ raw: Ends; enriched: Ends }> {
  return { raw: await watcher.ends("locations.raw"), enriched: await watcher.ends("locations.enriched") };
}

/** The hops of the step's location events; `rows` has ingested_at and persisted_at per event_id (epoch ms). */
export async function measureHops(
  kafka: KafkaConnection,
  before: { raw: Ends; enriched: Ends },
  after: { raw: Ends; enriched: Ends },
  rows: Map<string, { ingested: number; persisted: number }>,
): Promise<Hops> {
  const wanted = new Set(rows.keys());
  const raw = await creationTimes(kafka, "locations.raw", before.raw, after.raw, wanted);
  const enriched = await creationTimes(kafka, "locations.enriched", before.enriched, after.enriched, wanted);
  const ingestQueue: number[] = [];
  const enrich: number[] = [];
  const persist: number[] = [];
  for (const [id, row] of rows) {
    const r = raw.get(id);
    const e = enriched.get(id);
    if (r === undefined || e === undefined) continue;
    ingestQueue.push(r - row.ingested);
    enrich.push(e - r);
    persist.push(row.persisted - e);
  }
  return {
    ingestQueue: distribution(ingestQueue),
    enrich: distribution(enrich),
    persist: distribution(persist),
    matched: ingestQueue.length,
  };
}
