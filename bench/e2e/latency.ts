/**
 * End-to-end latency of one step, from the rows themselves: for every accepted event, `persisted_at` (the
 * row's clock_timestamp() at insert, inside persist's transaction, so a little before the commit makes it
 * visible) minus the moment the client read the 202. Same machine, same clock; no sampling, every event counts.
 */
import type { Sql } from "../../persist/postgres/db.ts";
import type { Table } from "./load.ts";

/** Ids per query: a `= any(array)` over the primary key, kept well under postgres.js's message limits. */
const CHUNK = 20_000;

/** Percentiles of a set of durations, in milliseconds. */
export interface Distribution {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** The latency picture of one table's events in one step. */
export interface LatencyResult {
  /** Accepted events with a row. */
  found: number;
  /** Accepted events without one (after the drain: lost, which the pipeline promises never happens). */
  missing: number;
  /** 202 read -> persisted_at: what the end-to-end latency goal is about. */
  endToEnd: Distribution;
  /** ingested_at (ingest, before producing) -> 202 read: the ack path, inside the 202. */
  ack: Distribution;
  /** ingested_at -> persisted_at: the consumer stages and the database. */
  pipeline: Distribution;
  /** End-to-end p99 of events acked in the first and in the last third of the step: equal when it keeps up. */
  p99FirstThird: number;
  p99LastThird: number;
  /** Events persisted after the last 202 of the step: what was still in the pipeline when sending stopped. */
  backlogAtEnd: number;
  /** Milliseconds from the last 202 to the last row. */
  drainMs: number;
}

/** p50, p95, p99 and max of `values` (milliseconds); zeros when empty. */
export function distribution(values: number[]): Distribution {
  const sorted = Float64Array.from(values).sort();
  const at = (q: number) =>
    sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) : 0;
  return { count: sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted.at(-1) ?? 0 };
}

/** ingested_at and persisted_at of a row, as epoch milliseconds with persisted_at's microseconds. */
export interface RowTimes {
  ingested: number;
  persisted: number;
}

/** The times of the rows of `ids` in `table`, by event_id (ids without a row are absent). */
export async function readRows(sql: Sql, table: Table, ids: string[]): Promise<Map<string, RowTimes>> {
  const rows = new Map<string, RowTimes>();
  for (let i = 0; i < ids.length; i += CHUNK) {
    // Epoch milliseconds as float8 keep persisted_at's microseconds; timestamps would come back as Dates (ms).
    const chunk = await sql<({ event_id: string } & RowTimes)[]>`
      select event_id,
        extract(epoch from persisted_at)::float8 * 1000 as persisted,
        extract(epoch from ingested_at)::float8 * 1000 as ingested
      from ${sql(table)} where event_id = any(${ids.slice(i, i + CHUNK)}::text[])`;
    for (const { event_id, ...times } of chunk) rows.set(event_id, times);
  }
  return rows;
}

/** Measures the rows of a step against the moments their 202s were read (`acked`, event_id -> epoch ms). */
export function measureLatency(
  rows: Map<string, RowTimes>,
  acked: Map<string, number>,
  window: { startedAt: number; endedAt: number },
): LatencyResult {
  const endToEnd: number[] = [];
  const ack: number[] = [];
  const pipeline: number[] = [];
  const firstThird: number[] = [];
  const lastThird: number[] = [];
  const third = (window.endedAt - window.startedAt) / 3;
  let backlogAtEnd = 0;
  let lastRow = window.endedAt;
  for (const [id, row] of rows) {
    const acknowledged = acked.get(id);
    if (acknowledged === undefined) continue;
    const latency = row.persisted - acknowledged;
    endToEnd.push(latency);
    ack.push(acknowledged - row.ingested);
    pipeline.push(row.persisted - row.ingested);
    if (acknowledged < window.startedAt + third) firstThird.push(latency);
    else if (acknowledged >= window.endedAt - third) lastThird.push(latency);
    if (row.persisted > window.endedAt) backlogAtEnd++;
    lastRow = Math.max(lastRow, row.persisted);
  }
  return {
    found: endToEnd.length,
    missing: acked.size - endToEnd.length,
    endToEnd: distribution(endToEnd),
    ack: distribution(ack),
    pipeline: distribution(pipeline),
    p99FirstThird: distribution(firstThird).p99,
    p99LastThird: distribution(lastThird).p99,
    backlogAtEnd,
    drainMs: lastRow - window.endedAt,
  };
}

/** Deletes the rows of `ids` from `table` (the bench's own rows: the tables should not grow with every run). */
export async function deleteRows(sql: Sql, table: Table, ids: string[]): Promise<number> {
  let deleted = 0;
  for (let i = 0; i < ids.length; i += CHUNK) {
    const { count } = await sql`delete from ${sql(table)} where event_id = any(${ids.slice(i, i + CHUNK)}::text[])`;
    deleted += count;
  }
  return deleted;
}
