/**
 * A PostgreSQL table declared once: its columns, each with the function that computes its value from a row, its
 * key, and what a second row with the same key does. The COPY column list, the COPY text of a row and the
 * `insert ... on conflict` clause all come from that one declaration, so a column cannot be added to one and
 * forgotten in another.
 */
import type { SinkRow } from "../sink.ts";

/** What a row whose key is already stored does: nothing (an event is immutable), or overwrite the stored row. */
export type OnConflict = "ignore" | "update";

export interface TableOptions<T> {
  name: string;
  /** Key columns: the conflict target, and within one batch only the row from the highest offset is kept. */
  key: string[];
  /** Every column the sink writes, in order, with the function that computes its value. */
  columns: Record<string, (row: SinkRow<T>) => unknown>;
  onConflict: OnConflict;
  /** A column set to the time of each update (not written on insert, where its default applies). */
  updatedAt?: string;
  /** Which records become rows; the others are consumed and stored as nothing (all of them when not given). */
  keep?: (row: SinkRow<T>) => boolean;
}

/** A declared table; see {@link defineTable}. */
export interface Table<T> {
  name: string;
  key: string[];
  columns: string[];
  /** Whether the record becomes a row at all. */
  keeps: (row: SinkRow<T>) => boolean;
  /** The row's values in column order. */
  values: (row: SinkRow<T>) => unknown[];
  /** The `on conflict ...` clause of the final insert. */
  conflictClause: string;
}

/**
 * Declares a table.
 *
 * @example
 * const users = defineTable<{ id: string; name: string }>({
 *   name: "users",
 *   key: ["id"],
 *   columns: { id: (row) => row.value.id, name: (row) => row.value.name },
 *   onConflict: "update",
 * });
 * users.conflictClause; // "on conflict (id) do update set name = excluded.name"
 */
export function defineTable<T>(options: TableOptions<T>): Table<T> {
  const columns = Object.keys(options.columns);
  for (const key of options.key) {
    if (!columns.includes(key)) throw new Error(`table ${options.name}: key column ${key} is not among its columns`);
  }
  const compute = Object.values(options.columns);
  const updates = columns.filter((column) => !options.key.includes(column)).map((c) => `${c} = excluded.${c}`);
  if (options.updatedAt) updates.push(`${options.updatedAt} = clock_timestamp()`);
  const target = `on conflict (${options.key.join(", ")})`;
  return {
    name: options.name,
    key: options.key,
    columns,
    keeps: options.keep ?? (() => true),
    values: (row) => compute.map((value) => value(row) ?? null),
    conflictClause:
      options.onConflict === "ignore" ? `${target} do nothing` : `${target} do update set ${updates.join(", ")}`,
  };
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

/** One row as a line of COPY text: a tab between values, a newline after the row. */
export function copyLine(values: unknown[]): string {
  return `${values.map(copyValue).join("\t")}\n`;
}

/** Rows as COPY text. */
export function copyText(rows: unknown[][]): string {
  return rows.map(copyLine).join("");
}
