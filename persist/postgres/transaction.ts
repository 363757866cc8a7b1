/**
 * Exactly-once writes: a batch's rows and its consumer offsets commit in one PostgreSQL transaction. The
 * transaction first locks the offsets of the batch's partitions and drops every record below them, so a replay
 * (a crash before the Kafka commit, a group reset, two members owning a partition during a rebalance) never
 * writes a row twice. Rows go in through COPY straight into their table, the fastest path postgres.js offers; only
 * when a key is already there does the batch take the conflict path, a COPY into a staging table and one
 * INSERT ... SELECT that applies the table's conflict rule.
 */
import type { TransactionSql } from "postgres";
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

/** One key per topic partition. */
export const slot = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/** PostgreSQL's SQLSTATE for a unique violation. */
const UNIQUE_VIOLATION = "23505";

/** How a transaction puts rows in: COPY straight into the table, or through its staging twin and the conflict rule. */
type Path = "copy" | "conflict";

/**
 * Writes `rows` and advances `groupId`'s offsets to `next` (one position per partition of the batch, past its
 * last record, dead letters included) in one transaction.
 *
 * The rows are COPYed straight into their tables. A unique violation means that a row's key is already stored (a
 * replay past the offsets: the same event produced twice) or twice in the batch: the transaction rolls back and
 * runs again on the conflict path. A savepoint around each COPY would spare that second run, but costs two more
 * round trips in every transaction, and replays are rare.
 */
export async function writeBatch(
  sql: Sql,
  groupId: string,
  rows: PendingRow[],
  next: Position[],
): Promise<BatchResult> {
  // The COPY text is built before the transaction opens, so the offset locks are held only for database work.
  const staged = rows.map((row) => ({ row, line: copyLine(row.values) }));
  try {
    return await transaction(sql, groupId, staged, next, "copy");
  } catch (error) {
    if ((error as { code?: string }).code !== UNIQUE_VIOLATION) throw error;
    return transaction(sql, groupId, staged, next, "conflict");
  }
}

type Staged = { row: PendingRow; line: string };

function transaction(sql: Sql, groupId: string, staged: Staged[], next: Position[], path: Path): Promise<BatchResult> {
  const topics = next.map((p) => p.topic);
  const partitions = next.map((p) => p.partition);
  const offsets = next.map((p) => p.offset.toString());
  return sql.begin(async (tx) => {
    const lock = () => tx<{ topic: string; partition: number; next_offset: string }[]>`
      select o.topic, o.partition, o.next_offset from consumer_offsets o
      join unnest(${topics}::text[], ${partitions}::int[]) as u(t, p) on o.topic = u.t and o.partition = u.p
      where o.group_id = ${groupId}
      order by o.topic, o.partition
      for update of o`;
    let stored = await lock();
    // A partition this group never stored gets its row first (one round trip more, once per partition), in the
    // lock's order: two members inserting rows for the same partitions in different orders could deadlock.
    if (stored.length < next.length) {
      await tx`
        insert into consumer_offsets (group_id, topic, partition, next_offset)
        select ${groupId}, t, p, 0 from unnest(${topics}::text[], ${partitions}::int[]) as u(t, p)
        order by t, p
        on conflict do nothing`;
      stored = await lock();
    }
    const floor = new Map(stored.map((s) => [slot(s.topic, s.partition), BigInt(s.next_offset)]));
    const fresh = staged.filter(
      ({ row }) => row.record.offset >= (floor.get(slot(row.record.topic, row.record.partition)) ?? 0n),
    );

    const tables = new Map<string, { written: number; conflicts: number }>();
    for (const table of new Set(fresh.map(({ row }) => row.table))) {
      const rowsOf = fresh.filter(({ row }) => row.table === table);
      const written =
        path === "copy" ? await copyRows(tx, table, rowsOf) : await insertThroughStaging(tx, table, rowsOf);
      tables.set(table.name, { written, conflicts: rowsOf.length - written });
    }
    await tx`
      update consumer_offsets o set next_offset = greatest(o.next_offset, u.n), updated_at = now()
      from unnest(${topics}::text[], ${partitions}::int[], ${offsets}::bigint[]) as u(t, p, n)
      where o.group_id = ${groupId} and o.topic = u.t and o.partition = u.p`;
    return { replayed: staged.length - fresh.length, tables };
  });
}

/** COPYs `rows` straight into `table`; a key already there fails it with a unique violation. */
async function copyRows(tx: TransactionSql, table: Table<never>, rows: Staged[]): Promise<number> {
  await copyInto(
    tx,
    `${table.name} (${table.columns.join(", ")})`,
    rows.map(({ line }) => line),
  );
  return rows.length;
}

/** Streams `lines` of COPY text into `target` (a table and its column list); rejects with the server's error. */
async function copyInto(tx: TransactionSql, target: string, lines: string[]): Promise<void> {
  const copy = await tx.unsafe(`copy ${target} from stdin`).writable();
  await new Promise<void>((resolve, reject) => {
    copy.on("error", reject);
    copy.end(lines.join(""), (error?: Error | null) => (error ? reject(error) : resolve()));
  });
}

/**
 * COPYs `rows` into the table's staging twin, each line with its record's offset appended (so that of two rows
 * with one key the later one is kept), then inserts them under the table's conflict rule.
 */
async function insertThroughStaging(tx: TransactionSql, table: Table<never>, rows: Staged[]): Promise<number> {
  const staging = `staging_${table.name}`;
  const columns = table.columns.join(", ");
  // One staging table per connection, emptied by every commit.
  await tx.unsafe(
    `create temp table if not exists ${staging} (like ${table.name} including defaults, staged_offset bigint) on commit delete rows`,
  );
  const lines = rows.map(({ row, line }) => `${line.slice(0, -1)}\t${row.record.offset}\n`);
  await copyInto(tx, `${staging} (${columns}, staged_offset)`, lines);
  const key = table.key.join(", ");
  const result = await tx.unsafe(
    `insert into ${table.name} (${columns})
     select distinct on (${key}) ${columns} from ${staging} order by ${key}, staged_offset desc
     ${table.conflictClause}`,
  );
  return result.count;
}
