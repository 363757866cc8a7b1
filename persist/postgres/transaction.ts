/**
 * Exactly-once writes: a batch's rows and its consumer offsets commit in one PostgreSQL transaction. The
 * transaction first locks the offsets of the batch's partitions and drops every record below them, so a replay
 * (a crash before the Kafka commit, a group reset, two members owning a partition during a rebalance) never
 * writes a row twice. Rows go in through COPY into a staging table, the fastest path postgres.js offers, then
 * one INSERT ... SELECT that applies the table's conflict rule.
 */
import type { Position } from "../../shared/kafka.ts";
import type { Sql } from "./db.ts";
import { copyLine, type Table } from "./table.ts";

/** What one batch transaction did, per table. */
export interface BatchResult {
  /** Records below the stored offsets, dropped before writing. */
  replayed: number;
  /** Per table: rows inserted or updated, and rows the conflict rule turned away. */
  tables: Map<string, { written: number; conflicts: number }>;
}

/** A row bound for `table`, with the coordinates of the record it came from. */
export interface PendingRow {
  table: Table<never>;
  record: { topic: string; partition: number; offset: bigint };
  values: unknown[];
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
  next: Position[],
): Promise<BatchResult> {
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

    const tables = new Map<string, { written: number; conflicts: number }>();
    for (const table of new Set(fresh.map(({ row }) => row.table))) {
      const lines = fresh.filter(({ row }) => row.table === table).map(({ line }) => line);
      const written = await insertRows(tx as unknown as Sql, table, lines);
      tables.set(table.name, { written, conflicts: lines.length - written });
    }
    await tx`
      update consumer_offsets o set next_offset = greatest(o.next_offset, u.n), updated_at = now()
      from unnest(${topics}::text[], ${partitions}::int[], ${offsets}::bigint[]) as u(t, p, n)
      where o.group_id = ${groupId} and o.topic = u.t and o.partition = u.p`;
    return { replayed: rows.length - fresh.length, tables };
  });
}

/** COPYs `lines` (rows with their source offset last) into the table's staging twin, then inserts them. */
async function insertRows(tx: Sql, table: Table<never>, lines: string[]): Promise<number> {
  const staging = `staging_${table.name}`;
  const columns = table.columns.join(", ");
  // One staging table per connection, emptied by every commit.
  await tx.unsafe(
    `create temp table if not exists ${staging} (like ${table.name} including defaults, staged_offset bigint) on commit delete rows`,
  );
  const copy = await tx.unsafe(`copy ${staging} (${columns}, staged_offset) from stdin`).writable();
  await new Promise<void>((resolve, reject) => {
    copy.on("error", reject);
    copy.end(lines.join(""), resolve);
  });
  const key = table.key.join(", ");
  const result = await tx.unsafe(
    `insert into ${table.name} (${columns})
     select distinct on (${key}) ${columns} from ${staging} order by ${key}, staged_offset desc
     ${table.conflictClause}`,
  );
  return result.count;
}
