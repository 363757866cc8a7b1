/**
 * Exactly-once writes: a batch's rows and its consumer offsets commit in one PostgreSQL transaction. The
 * transaction first locks the offsets of the batch's partitions and drops every record below them, so a replay
 * (a crash before the Kafka commit, a group reset, two members owning a partition during a rebalance) never
 * writes a row twice. Rows go in through COPY into a staging table, the fastest path postgres.js offers, then
 * one INSERT ... SELECT that applies the table's conflict rule.
 */

import type { InRecord } from "../shared/kafka.ts";
import type { Sql } from "./db.ts";

/** Where a batch's rows go and what a second row with the same key does. */
export interface TableSpec {
  table: string;
  columns: string[];
  /** The `on conflict ...` clause of the final insert. */
  onConflict: string;
  /** Key columns: when one batch holds several rows for a key, only the one from the highest offset is kept. */
  key: string[];
}

/** A row bound for `table`, with the record it came from. */
export interface PendingRow {
  table: TableSpec;
  record: Pick<InRecord, "topic" | "partition" | "offset">;
  values: unknown[];
}

export interface WriteResult {
  /** Rows inserted or updated. */
  written: number;
  /** Rows the conflict rule turned away (a replay of an event already stored). */
  conflicts: number;
  /** Records below the stored offsets, dropped before writing. */
  replayed: number;
}

/** One value in COPY's text format: `\N` for null, backslash escapes for the separators. */
export function copyValue(value: unknown): string {
  if (value === null || value === undefined) return "\\N";
  if (typeof value === "number" || typeof value === "bigint") return String(value);
  const text = typeof value === "string" ? value : JSON.stringify(value);
  // Most values hold nothing to escape; testing first spares a replace per value on the hot path.
  return NEEDS_ESCAPE.test(text) ? text.replace(ESCAPABLE, (c) => ESCAPES[c] as string) : text;
}

const NEEDS_ESCAPE = /[\\\n\r\t]/;
const ESCAPABLE = /[\\\n\r\t]/g;
const ESCAPES: Record<string, string> = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** Rows as COPY text: tab between values, newline after each row. */
export function copyText(rows: unknown[][]): string {
  return rows.map(copyLine).join("");
}

function copyLine(row: unknown[]): string {
  return `${row.map(copyValue).join("\t")}\n`;
}

const slot = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/**
 * Writes `rows` and advances `groupId`'s offsets to `next` (one position per partition of the batch, past its
 * last record, dead letters included) in one transaction.
 */
export async function writeBatch(
  sql: Sql,
  groupId: string,
  rows: PendingRow[],
  next: { topic: string; partition: number; offset: bigint }[],
): Promise<WriteResult> {
  const topics = next.map((p) => p.topic);
  const partitions = next.map((p) => p.partition);
  const offsets = next.map((p) => p.offset.toString());
  // The COPY text is built before the transaction opens, so the offset locks are held only for database work.
  const staged = rows.map((row) => ({ row, line: copyLine([...row.values, row.record.offset]) }));
  return sql.begin(async (tx) => {
    await tx`
      insert into consumer_offsets (group_id, topic, partition, next_offset)
      select ${groupId}, t, p, 0 from unnest(${topics}::text[], ${partitions}::int[]) as u(t, p)
      on conflict do nothing`;
    const stored = await tx<{ topic: string; partition: number; next_offset: string }[]>`
      select o.topic, o.partition, o.next_offset from consumer_offsets o
      join unnest(${topics}::text[], ${partitions}::int[]) as u(t, p) on o.topic = u.t and o.partition = u.p
      where o.group_id = ${groupId}
      order by o.topic, o.partition
      for update of o`;
    const floor = new Map(stored.map((s) => [slot(s.topic, s.partition), BigInt(s.next_offset)]));
    const fresh = staged.filter(
      ({ row }) => row.record.offset >= (floor.get(slot(row.record.topic, row.record.partition)) ?? 0n),
    );

    let written = 0;
    for (const table of new Set(fresh.map(({ row }) => row.table))) {
      const lines = fresh.filter(({ row }) => row.table === table).map(({ line }) => line);
      written += await insertRows(tx as unknown as Sql, table, lines);
    }
    await tx`
      update consumer_offsets o set next_offset = greatest(o.next_offset, u.n), updated_at = now()
      from unnest(${topics}::text[], ${partitions}::int[], ${offsets}::bigint[]) as u(t, p, n)
      where o.group_id = ${groupId} and o.topic = u.t and o.partition = u.p`;
    return { written, conflicts: fresh.length - written, replayed: rows.length - fresh.length };
  });
}

/** COPYs `lines` (rows with their source offset last) into the table's staging twin, then inserts them. */
async function insertRows(tx: Sql, spec: TableSpec, lines: string[]): Promise<number> {
  const staging = `staging_${spec.table}`;
  const columns = spec.columns.join(", ");
  // One staging table per connection, emptied by every commit.
  await tx.unsafe(
    `create temp table if not exists ${staging} (like ${spec.table} including defaults, staged_offset bigint) on commit delete rows`,
  );
  const copy = await tx.unsafe(`copy ${staging} (${columns}, staged_offset) from stdin`).writable();
  await new Promise<void>((resolve, reject) => {
    copy.on("error", reject);
    copy.end(lines.join(""), resolve);
  });
  const key = spec.key.join(", ");
  const result = await tx.unsafe(
    `insert into ${spec.table} (${columns})
     select distinct on (${key}) ${columns} from ${staging} order by ${key}, staged_offset desc
     ${spec.onConflict}`,
  );
  return result.count;
}
