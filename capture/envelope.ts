/**
 * Row changes as records of `cdc.<schema>.<table>`: the key is the primary key as a JSON object, the value
 * Debezium's change-event envelope (shared/change.ts), and a delete is followed by a tombstone. Every record,
 * the tombstone too, carries its source position in the `cdc.position` header, which sinks compare to drop what
 * capture published again after a crash.
 */
import { type ChangeEvent, POSITION_HEADER, positionText } from "../shared/change.ts";
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
  /**
   * What orders changes that share both LSNs: for snapshot rows, which all carry the consistent point, the row's
   * number in the snapshot, counted in publish order; 0 for a streamed change.
   */
  ordinal: number;
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
 * // [{ topic: "cdc.public.users", key: '{"id":1}', value: '{"before":null,"after":{"id":1},"op":"c",...}',
 * //    headers: { "cdc.position": "event_pipeline/24023119/24023128/0" } }]
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
  const at = (index: number) => ({
    [POSITION_HEADER]: positionText(origin.name, change.commitLsn, change.lsn, index),
  });
  const event: OutRecord = { topic, key, value: JSON.stringify(envelope), headers: at(change.ordinal) };
  // The tombstone shares its delete's LSNs and comes right after it.
  return change.op === "d" ? [event, { topic, key, value: null, headers: at(change.ordinal + 1) }] : [event];
}
