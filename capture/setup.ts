/**
 * What capture.ts needs in the source database before it streams: a publication of the captured tables, REPLICA
 * IDENTITY FULL on each (so an update's and a delete's `before` is the whole old row, not only its key), their
 * primary keys (the record keys), and a durable logical replication slot with, on first start, a snapshot of
 * the rows that were there before it.
 *
 * Snapshot and stream meet exactly: the slot is created in a replication connection with EXPORT_SNAPSHOT, which
 * returns the slot's consistent point and the name of a snapshot taken at that very point. The rows are read in
 * a REPEATABLE READ transaction that adopts that snapshot, so they hold every transaction committed before the
 * consistent point and none after, and the slot streams exactly those committed after it: no row is missed and
 * none is counted twice, with no LSN filtering. (Snapshot-then-filter-by-LSN cannot do this for rows changed by
 * transactions in flight while the snapshot is read.) The exported snapshot lives only as long as the
 * replication connection runs no other command, so that connection stays open, idle, until the rows are read.
 *
 * A snapshot interrupted by a crash leaves a slot whose rows never all reached the broker; the
 * `event_pipeline_capture` table in the source database says which slots completed theirs, and a slot without
 * that mark is dropped and made again, with a new snapshot (its rows are then published twice at most: at
 * least once, like the stream). The new slot's consistent point lies after the old one, so the new snapshot's
 * rows are positioned after every row of the interrupted one: sinks keep both (two reads of the row), never
 * taking the second for a repeat of the first.
 */
import pg from "pg";
import type { Logger } from "../shared/log.ts";
import type { RowChange } from "./envelope.ts";
import { lsnValue } from "./lsn.ts";

/** A captured table and its primary key columns. */
export interface CapturedTable {
  schema: string;
  table: string;
  key: string[];
}

/** Rows per read of the snapshot cursor, and so per publish. */
const SNAPSHOT_CHUNK_ROWS = 2_000;

/** Text of an identifier for SQL: double quotes doubled. */
export const ident = (name: string) => `"${name.replaceAll('"', '""')}"`;
const qualified = ({ schema, table }: { schema: string; table: string }) => `${ident(schema)}.${ident(table)}`;

/** The tables of CAPTURE_TABLES with their primary keys; throws naming a table that is missing or has none. */
export async function capturedTables(db: pg.Client, names: string[]): Promise<CapturedTable[]> {
  const tables: CapturedTable[] = [];
  for (const name of names) {
    const [schema = "", table = ""] = name.split(".");
    const { rows } = await db.query<{ column: string }>(
      `select a.attname as column
         from pg_index i
         join pg_class c on c.oid = i.indrelid
         join pg_namespace n on n.oid = c.relnamespace
         join pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
        where n.nspname = $1 and c.relname = $2 and i.indisprimary
        order by array_position(i.indkey::int2[], a.attnum)`,
      [schema, table],
    );
    if (rows.length === 0) {
      const exists = await db.query("select to_regclass($1) as oid", [`${ident(schema)}.${ident(table)}`]);
      throw new Error(
        exists.rows[0]?.oid
          ? `CAPTURE_TABLES: ${name} has no primary key, and a change needs one for its record key`
          : `CAPTURE_TABLES: ${name} does not exist in the source database`,
      );
    }
    tables.push({ schema, table, key: rows.map((row) => row.column) });
  }
  return tables;
}

/** Makes `publication` publish exactly `tables`, each with REPLICA IDENTITY FULL. */
export async function ensurePublication(db: pg.Client, publication: string, tables: CapturedTable[]): Promise<void> {
  for (const table of tables) {
    const { rows } = await db.query<{ identity: string }>(
      "select relreplident as identity from pg_class where oid = $1::regclass",
      [qualified(table)],
    );
    if (rows[0]?.identity !== "f") await db.query(`alter table ${qualified(table)} replica identity full`);
  }
  const list = tables.map(qualified).join(", ");
  const { rowCount } = await db.query("select 1 from pg_publication where pubname = $1", [publication]);
  await db.query(
    rowCount
      ? `alter publication ${ident(publication)} set table ${list}`
      : `create publication ${ident(publication)} for table ${list}`,
  );
}

/** Where a slot stands: missing, present with its snapshot published, or present without. */
export async function slotState(db: pg.Client, slot: string): Promise<"missing" | "ready" | "unfinished"> {
  await db.query(`create table if not exists event_pipeline_capture (
    slot_name text primary key,
    consistent_point pg_lsn not null,
    snapshot_done_at timestamptz not null default now()
  )`);
  const { rows } = await db.query<{ active: boolean; done: boolean }>(
    `select s.active, c.slot_name is not null as done from pg_replication_slots s
       left join event_pipeline_capture c on c.slot_name = s.slot_name
      where s.slot_name = $1`,
    [slot],
  );
  const found = rows[0];
  if (!found) return "missing";
  if (found.active) throw new Error(`the replication slot ${slot} is in use by another process (one capture per slot)`);
  return found.done ? "ready" : "unfinished";
}

/** What {@link createSlotWithSnapshot} needs. */
export interface SnapshotOptions {
  /** Connection settings of the source database. */
  connection: pg.ClientConfig;
  slot: string;
  tables: CapturedTable[];
  log: Logger;
  /** Publishes one chunk of snapshot rows; resolves once the broker acknowledged them all. */
  publish: (changes: RowChange[]) => Promise<void>;
}

/**
 * Creates the slot (dropping an unfinished one first), publishes a snapshot of every captured table consistent
 * with it, then marks the slot's snapshot done. Returns the slot's consistent point.
 *
 * @example
 * await createSlotWithSnapshot({ connection, slot: "event_pipeline", tables, log, publish });
 */
export async function createSlotWithSnapshot(options: SnapshotOptions): Promise<bigint> {
  const { connection, slot, tables, log, publish } = options;
  const replication = new pg.Client({ ...connection, replication: "database" } as pg.ClientConfig);
  const reader = new pg.Client(connection);
  await Promise.all([replication.connect(), reader.connect()]);
  try {
    await reader.query("select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = $1", [
      slot,
    ]);
    await reader.query("delete from event_pipeline_capture where slot_name = $1", [slot]);
    const created = await replication.query<{ consistent_point: string; snapshot_name: string }>(
      `CREATE_REPLICATION_SLOT ${ident(slot)} LOGICAL pgoutput EXPORT_SNAPSHOT`,
    );
    const { consistent_point: point, snapshot_name: snapshot } = created.rows[0] ?? {};
    if (!point || !snapshot) throw new Error(`creating the slot ${slot} returned no snapshot`);
    const consistentPoint = lsnValue(point);
    log.info({ slot, consistentPoint: point }, "replication slot created; reading the snapshot");
    await reader.query("begin isolation level repeatable read read only");
    await reader.query(`set transaction snapshot '${snapshot.replaceAll("'", "''")}'`);
    const readAt = Date.now();
    // The rows share the consistent point as their LSNs; their number in publish order tells them apart.
    let ordinal = 0;
    for (const table of tables) {
      let rows = 0;
      await reader.query(`declare snapshot_rows no scroll cursor for select * from ${qualified(table)}`);
      for (;;) {
        const chunk = await reader.query(`fetch ${SNAPSHOT_CHUNK_ROWS} from snapshot_rows`);
        if (chunk.rows.length === 0) break;
        rows += chunk.rows.length;
        await publish(
          chunk.rows.map((row) => ({
            op: "r",
            ...table,
            before: null,
            after: row,
            commitLsn: consistentPoint,
            lsn: consistentPoint,
            ordinal: ordinal++,
            txId: null,
            committedAt: readAt,
          })),
        );
      }
      await reader.query("close snapshot_rows");
      log.info({ table: `${table.schema}.${table.table}`, rows }, "snapshot of the table published");
    }
    await reader.query("commit");
    await reader.query("insert into event_pipeline_capture (slot_name, consistent_point) values ($1, $2)", [
      slot,
      point,
    ]);
    return consistentPoint;
  } finally {
    await Promise.all([replication.end(), reader.end()]).catch(() => {});
  }
}

/**
 * int8 columns as JSON numbers where they fit one exactly (ids, counters), as Debezium writes int64; larger
 * ones stay decimal strings. pg's parsers are global: the snapshot and the stream read values the same way.
 */
export function readBigintsAsNumbers(): void {
  pg.types.setTypeParser(pg.types.builtins.INT8, (text: string) => {
    const value = Number(text);
    return Number.isSafeInteger(value) ? value : text;
  });
}
