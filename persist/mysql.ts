/**
 * The MySQL/MariaDB sink, a transactional store for captured changes: each `cdc.<schema>.<table>` topic is
 * mirrored into the table `<schema>_<table>` of MYSQL_URL's database, one row per source primary key.
 * - The mirror is created from the first change's columns, and a column the source gains is added (MySQL
 *   commits DDL at once, so schema changes run before the batch's transaction; both are idempotent). Types come
 *   from the JSON values: whole numbers BIGINT, other numbers DOUBLE, booleans BOOLEAN, objects and arrays
 *   JSON, key strings VARCHAR(191), other strings and values first seen as null LONGTEXT.
 * - Creates, updates and snapshot reads are upserts by primary key; deletes delete. A batch keeps each row's
 *   latest change only and writes them with multi-row statements: one upsert per table and column set, one
 *   delete per table, in chunks of at most ROWS_PER_STATEMENT rows (and about STATEMENT_BYTES of values, well
 *   under the server's default 16 MiB packet).
 * - Exactly once in effect: the rows and the group's positions (`cdc_consumer_offsets`) commit in one
 *   transaction that first locks the batch's positions and drops every record below them.
 * - An older change never overwrites a newer one: each row keeps its change's source position
 *   (`_cdc_commit_lsn`, `_cdc_lsn`), and an upsert or a delete applies to a row only when its position is newer,
 *   a guard each statement evaluates per row. (A change replayed by capture after the row was deleted recreates
 *   it until the replayed delete follows.)
 */
import mysql from "mysql2/promise";
import { type ChangeEvent, compareLsns, positionOf, rowOf } from "../shared/change.ts";
import { within } from "../shared/deadline.ts";
import type { Position } from "../shared/kafka.ts";
import { cdcTopicOf } from "../shared/topics.ts";
import type { SinkFactory, SinkRow } from "./sink.ts";

/** The source position columns every mirror ends with. */
const POSITION_COLUMNS = ["_cdc_commit_lsn", "_cdc_lsn"] as const;
/** Rows per multi-row statement at most, and the size of their values, roughly, before a statement is cut. */
const ROWS_PER_STATEMENT = 2_000;
const STATEMENT_BYTES = 4 * 1024 * 1024;

/** A MySQL identifier, backquoted. */
const quote = (name: string) => `\`${name.replaceAll("`", "``")}\``;

/** The mirror table of a cdc topic: `cdc.public.users` to `public_users`. */
export const mirrorOf = (topic: string) => topic.slice("cdc.".length).replace(".", "_");

/** The column type a JSON value suggests; key columns need a bounded type to be indexed. */
function columnType(value: unknown, isKey: boolean): string {
  if (typeof value === "number") return Number.isInteger(value) ? "BIGINT" : "DOUBLE";
  if (typeof value === "boolean") return "BOOLEAN";
  if (value !== null && typeof value === "object") return "JSON";
  return isKey ? "VARCHAR(191)" : "LONGTEXT";
}

/** A JSON value as a MySQL parameter. */
const parameter = (value: unknown) =>
  value !== null && typeof value === "object" ? JSON.stringify(value) : value === undefined ? null : value;

/** One row's latest change in a batch. */
interface Latest {
  table: string;
  key: string[];
  event: ChangeEvent;
  position: [bigint, bigint];
}

/** The primary key columns of a change: the fields of its record key, `{"id":42}` (checked by decodeChange). */
const keyColumns = (row: SinkRow<ChangeEvent>): string[] => Object.keys(JSON.parse(String(row.key)) as object);

/**
 * The MySQL sink at MYSQL_URL, for the topics of CAPTURE_TABLES.
 *
 * @example
 * const sink = mysqlSink({ env, log, group: "persist-mysql" });
 * await sink.open(); // creates cdc_consumer_offsets
 * await sink.write(rows, positions); // mirrors, upserts, deletes, and stores positions, in one transaction
 */
export const mysqlSink: SinkFactory = ({ env, log, group }) => {
  const pool = mysql.createPool({
    uri: env.MYSQL_URL,
    connectionLimit: 4,
    connectTimeout: 5_000,
    supportBigNumbers: true,
    bigNumberStrings: true,
    // A row an upsert's guard leaves as it is then counts 0 in affectedRows, not 1: see upserted().
    flags: ["-FOUND_ROWS"],
  });
  /** Known columns per mirror table, from the catalog or our own DDL. */
  const columns = new Map<string, Set<string>>();

  async function loadColumns(table: string): Promise<Set<string> | undefined> {
    const [rows] = await pool.query<mysql.RowDataPacket[]>(
      `select column_name as name from information_schema.columns
        where table_schema = database() and table_name = ? order by ordinal_position`,
      [table],
    );
    if (rows.length === 0) return undefined;
    return new Set(rows.map((row) => String(row.name)));
  }

  /** Creates or widens the mirrors the batch's changes need, before its transaction. */
  async function prepareTables(changes: Latest[]): Promise<void> {
    for (const { table, key, event } of changes) {
      const row = rowOf(event);
      let known = columns.get(table) ?? (await loadColumns(table));
      if (!known) {
        const definitions = Object.entries(row).map(
          ([name, value]) =>
            `${quote(name)} ${columnType(value, key.includes(name))}${key.includes(name) ? " NOT NULL" : ""}`,
        );
        await pool.query(
          `create table if not exists ${quote(table)} (${definitions.join(", ")},
             _cdc_commit_lsn BIGINT UNSIGNED NOT NULL, _cdc_lsn BIGINT UNSIGNED NOT NULL,
             _cdc_updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
             primary key (${key.map(quote).join(", ")}))`,
        );
        log.info({ table, columns: Object.keys(row) }, "mirror table created");
        known = (await loadColumns(table)) as Set<string>;
      }
      const added = Object.keys(row).filter((name) => !known.has(name));
      for (const name of added) {
        await pool.query(
          `alter table ${quote(table)} add column if not exists ${quote(name)} ${columnType(row[name], false)} null`,
        );
        log.info({ table, column: name }, "mirror column added");
        known.add(name);
      }
      columns.set(table, known);
    }
  }

  return {
    topics: env.CAPTURE_TABLES.map(cdcTopicOf),
    async open() {
      await pool
        .query(
          `create table if not exists cdc_consumer_offsets (
             group_id varchar(191) not null, topic varchar(191) not null, \`partition\` int not null,
             next_offset bigint not null, updated_at timestamp(6) not null default current_timestamp(6),
             primary key (group_id, topic, \`partition\`))`,
        )
        .catch((error: Error) => {
          throw new Error(`cannot prepare MySQL: is it up at MYSQL_URL? (${error.message})`);
        });
    },
    async write(rows, positions: Position[]) {
      // Only each row's latest change matters, by source position: a change capture published again after a
      // crash comes later in the partition but is no newer.
      const latest = new Map<string, Latest & { offset: bigint; topic: string; partition: number }>();
      for (const row of rows as SinkRow<ChangeEvent>[]) {
        const table = mirrorOf(row.topic);
        const key = keyColumns(row);
        const source = rowOf(row.value);
        const id = `${table}\u0000${JSON.stringify(key.map((k) => source[k]))}`;
        const position = positionOf(row.value);
        const held = latest.get(id);
        if (!held || compareLsns(position, held.position) >= 0)
          latest.set(id, {
            table,
            key,
            event: row.value,
            position,
            topic: row.topic,
            partition: row.partition,
            offset: row.offset,
          });
      }
      // MySQL commits DDL at once, so the mirrors are made ready before the transaction (idempotently).
      await prepareTables([...latest.values()]);
      const connection = await pool.getConnection();
      try {
        await connection.beginTransaction();
        await connection.query(
          "insert ignore into cdc_consumer_offsets (group_id, topic, `partition`, next_offset) values ?",
          [positions.map((p) => [group, p.topic, p.partition, 0])],
        );
        const [stored] = await connection.query<mysql.RowDataPacket[]>(
          `select topic, \`partition\`, next_offset from cdc_consumer_offsets
            where group_id = ? and (topic, \`partition\`) in (?) order by topic, \`partition\` for update`,
          [group, positions.map((p) => [p.topic, p.partition])],
        );
        const floor = new Map(stored.map((s) => [`${s.topic}\u0000${s.partition}`, BigInt(s.next_offset)]));
        const isFresh = (row: { topic: string; partition: number; offset: bigint }) =>
          row.offset >= (floor.get(`${row.topic}\u0000${row.partition}`) ?? 0n);
        const written: Record<string, number> = {};
        const conflicts: Record<string, number> = {};
        for (const statement of statements([...latest.values()].filter(isFresh), columns)) {
          const applied = await statement.run(connection);
          written[statement.table] = (written[statement.table] ?? 0) + applied;
          conflicts[statement.table] = (conflicts[statement.table] ?? 0) + statement.rows - applied;
        }
        await connection.query(
          `insert into cdc_consumer_offsets (group_id, topic, \`partition\`, next_offset) values ?
           on duplicate key update next_offset = greatest(next_offset, values(next_offset)),
             updated_at = current_timestamp(6)`,
          [positions.map((p) => [group, p.topic, p.partition, p.offset.toString()])],
        );
        await connection.commit();
        return { written, conflicts, replayed: rows.filter((row) => !isFresh(row)).length };
      } catch (error) {
        await connection.rollback().catch(() => {});
        throw error;
      } finally {
        connection.release();
      }
    },
    ready: () =>
      within(
        pool.query("select 1").then(
          () => true,
          () => false,
        ),
        1_000,
        false,
      ),
    close: () => pool.end(),
  };
};

/** One multi-row statement of a batch: its table, how many changes it carries, and how it runs. */
interface Statement {
  table: string;
  rows: number;
  /** Runs it; resolves how many of its rows it changed (the others were no newer than the row stored). */
  run: (connection: mysql.PoolConnection) => Promise<number>;
}

/** Cuts `items` into runs of at most ROWS_PER_STATEMENT, and about STATEMENT_BYTES of `sizeOf`. */
function* chunks<T>(items: T[], sizeOf: (item: T) => number): Generator<T[]> {
  let chunk: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = sizeOf(item);
    if (chunk.length > 0 && (chunk.length === ROWS_PER_STATEMENT || bytes + size > STATEMENT_BYTES)) {
      yield chunk;
      [chunk, bytes] = [[], 0];
    }
    chunk.push(item);
    bytes += size;
  }
  if (chunk.length > 0) yield chunk;
}

/**
 * The rows an upsert inserted or updated. With FOUND_ROWS off, affectedRows counts 1 per inserted row, 2 per
 * updated one and 0 per row the guard kept; the server's info reports the updated ones ("Records: 3
 * Duplicates: 1 ...", absent for a single row, where affectedRows alone tells).
 */
function upserted(result: Pick<mysql.ResultSetHeader, "affectedRows" | "info">): number {
  const reported = /Duplicates: (\d+)/.exec(result.info ?? "")?.[1];
  const updated = reported === undefined ? (result.affectedRows === 2 ? 1 : 0) : Number(reported);
  return result.affectedRows - updated;
}

/**
 * The statements that apply a batch's latest changes, each newer than what its row holds: per table, one upsert
 * per set of columns the changes carry (a column the source gained shows in the newer changes only) and one
 * delete, cut into chunks.
 */
function statements(changes: Latest[], columns: Map<string, Set<string>>): Statement[] {
  const groups = new Map<string, { table: string; key: string[]; names?: string[]; changes: Latest[] }>();
  for (const change of changes) {
    const row = rowOf(change.event);
    // A delete needs the key only; an upsert every known column its row has.
    const names =
      change.event.op === "d" ? undefined : [...(columns.get(change.table) as Set<string>)].filter((n) => n in row);
    const id = `${change.table}\u0000${names?.join("\u0000") ?? ""}`;
    const group = groups.get(id) ?? { table: change.table, key: change.key, ...(names && { names }), changes: [] };
    group.changes.push(change);
    groups.set(id, group);
  }
  return [...groups.values()].flatMap(({ table, key, names, changes }) => {
    const rows = changes.map((change) => {
      const row = rowOf(change.event);
      return [...(names ?? key).map((n) => parameter(row[n])), ...change.position.map(String)];
    });
    // Objects are JSON text by now: a row's size is about the length of its texts.
    const sizeOf = (values: unknown[]) =>
      values.reduce<number>((n, v) => n + (typeof v === "string" ? v.length : 8), 0);
    return [...chunks(rows, sizeOf)].map((chunk) => ({
      table,
      rows: chunk.length,
      run: names ? upsert(table, key, names, chunk) : remove(table, key, chunk),
    }));
  });
}

/** Inserts `rows` (the values of `names`, then the position), or updates each stored row its position is newer than. */
function upsert(table: string, key: string[], names: string[], rows: unknown[][]) {
  const newer = "(values(_cdc_commit_lsn), values(_cdc_lsn)) > (_cdc_commit_lsn, _cdc_lsn)";
  // Assignments run left to right: the position columns go last, so every column compares to the old position.
  const updates = [...names.filter((n) => !key.includes(n)), ...POSITION_COLUMNS].map(
    (n) => `${quote(n)} = if(${newer}, values(${quote(n)}), ${quote(n)})`,
  );
  const sql = `insert into ${quote(table)} (${[...names, ...POSITION_COLUMNS].map(quote).join(", ")}) values ?
     on duplicate key update ${updates.join(", ")}`;
  return async (connection: mysql.PoolConnection) =>
    upserted((await connection.query<mysql.ResultSetHeader>(sql, [rows]))[0]);
}

/** Deletes the rows `rows` name (their key values, then the delete's position) that are no newer than it. */
function remove(table: string, key: string[], rows: unknown[][]) {
  // The deletes as a derived table, joined to the mirror: each row compares to its own delete's position. Every
  // row casts its positions, as a union's column types come from all its rows and text compares as a double.
  const row = `select ${[...key.map((k) => `? as ${quote(k)}`), "cast(? as unsigned) as c", "cast(? as unsigned) as l"].join(", ")}`;
  const deletes = rows.map(() => row).join(" union all ");
  const sql = `delete m from ${quote(table)} m join (${deletes}) d
     on ${key.map((k) => `m.${quote(k)} = d.${quote(k)}`).join(" and ")}
     and (m._cdc_commit_lsn, m._cdc_lsn) <= (d.c, d.l)`;
  return async (connection: mysql.PoolConnection) =>
    (await connection.query<mysql.ResultSetHeader>(sql, rows.flat()))[0].affectedRows;
}
