/**
 * Row changes as records of `cdc.<schema>.<table>`: the key is the primary key as a JSON object, the value
 * Debezium's change-event envelope (shared/change.ts), and a delete is followed by a tombstone.
 */
import type { ChangeEvent } from "../shared/change.ts";
import type { OutRecord } from "../shared/kafka.ts";
import { cdcTopicOf } from "../shared/topics.ts";

/** One row change as the stream or the snapshot saw it. */
export interface RowChange {
  op: "c" | "u" | "d" | "r";
  schema: string;
  table: string;
  /** The primary key's columns, in key order. */
  key: string[];
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  /** The LSN of the transaction's commit (the consistent point for snapshot rows), and of the change itself. */
  commitLsn: bigint;
  lsn: bigint;
  txId: number | null;
  /** When the transaction committed (when the snapshot was read), epoch milliseconds. */
  committedAt: number;
}

/** What every change of one capture names as its origin. */
export interface Origin {
  /** The logical name of the source, Debezium's `topic.prefix`: the slot's name. */
  name: string;
  db: string;
}

/**
 * The records of `change`: the change event, plus a tombstone after a delete.
 *
 * @example
 * changeRecords({ op: "c", schema: "public", table: "users", key: ["id"], before: null, after: { id: 1 }, ... }, origin);
 * // [{ topic: "cdc.public.users", key: '{"id":1}', value: '{"before":null,"after":{"id":1},"op":"c",...}' }]
 */
export function changeRecords(change: RowChange, origin: Origin): OutRecord[] {
  const row = (change.op === "d" ? change.before : change.after) ?? {};
  const key = JSON.stringify(Object.fromEntries(change.key.map((column) => [column, row[column] ?? null])));
  const topic = cdcTopicOf(`${change.schema}.${change.table}`);
  const envelope: ChangeEvent = {
    before: change.before,
    after: change.after,
    op: change.op,
    ts_ms: Date.now(),
    source: {
      connector: "postgresql",
      name: origin.name,
      ts_ms: change.committedAt,
      snapshot: change.op === "r" ? "true" : "false",
      db: origin.db,
      sequence: JSON.stringify([String(change.commitLsn), String(change.lsn)]),
      schema: change.schema,
      table: change.table,
      txId: change.txId,
      lsn: Number(change.lsn),
    },
  };
  const event: OutRecord = { topic, key, value: JSON.stringify(envelope) };
  return change.op === "d" ? [event, { topic, key, value: null }] : [event];
}
