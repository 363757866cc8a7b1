/**
 * The change event capture.ts writes to `cdc.<schema>.<table>` and the cdc sinks read: Debezium's envelope as its
 * JSON converter writes it without schemas (`value.converter.schemas.enable=false`), so tools that read Debezium
 * topics read ours. One record per row change, keyed by the row's primary key as a JSON object (`{"id":42}`); a
 * delete is followed by a tombstone (same key, null value) so that a compacted topic forgets the row.
 */
import * as v from "valibot";

/** Debezium's operation codes: create, update, delete, and read (a row of the initial snapshot). */
export const CHANGE_OPS = ["c", "u", "d", "r"] as const;

/** A row as a JSON object, column name to value (PostgreSQL's text form for types JSON has no equal of). */
const Row = v.record(v.string(), v.unknown());

/** A decimal string of an unsigned 64-bit number: a WAL position. */
const Lsn = v.pipe(v.string(), v.regex(/^\d{1,20}$/));
const LsnPair = v.tuple([Lsn, Lsn]);

/**
 * Where a change comes from. `lsn` is the change's WAL position, `sequence` Debezium's
 * `["<commit lsn>","<change lsn>"]` pair (decimal strings): in that order, two changes of one row compare as
 * they happened, which is how a sink tells an older change from a newer one. Snapshot rows carry the slot's
 * consistent point as both.
 */
export const ChangeSource = v.looseObject({
  connector: v.literal("postgresql"),
  name: v.string(),
  ts_ms: v.number(),
  snapshot: v.picklist(["true", "false", "last"]),
  db: v.string(),
  // Kept as the text it is on the topic, so a sink stores the event as it was published.
  sequence: v.pipe(
    v.string(),
    v.check((text) => {
      try {
        return v.is(LsnPair, JSON.parse(text));
      } catch {
        return false;
      }
    }, 'must be a JSON pair of decimal LSNs, ["<commit lsn>","<change lsn>"]'),
  ),
  schema: v.string(),
  table: v.string(),
  txId: v.nullable(v.number()),
  lsn: v.number(),
});

/** A change event, validated: `after` for c/u/r, `before` for d (REPLICA IDENTITY FULL gives it for u too). */
export const ChangeEvent = v.pipe(
  v.looseObject({
    before: v.nullable(Row),
    after: v.nullable(Row),
    op: v.picklist(CHANGE_OPS, `op must be one of ${CHANGE_OPS.join(", ")}`),
    ts_ms: v.number(),
    source: ChangeSource,
  }),
  v.check(
    (event) => (event.op === "d" ? event.before !== null : event.after !== null),
    "a c/u/r needs after, a d before",
  ),
);

export type ChangeEvent = v.InferOutput<typeof ChangeEvent>;

/** The row a change leaves behind (`after`), or the row it removed (`before`) for a delete. */
export const rowOf = (event: ChangeEvent): Record<string, unknown> =>
  (event.op === "d" ? event.before : event.after) as Record<string, unknown>;

/**
 * The change's position in the source's history, for comparing two changes of the same row: commit LSN, then
 * change LSN.
 *
 * @example
 * const [commit, change] = positionOf(event); // 24023119n, 24023128n
 */
export const positionOf = (event: ChangeEvent): [bigint, bigint] => {
  const [commit, change] = JSON.parse(event.source.sequence) as [string, string];
  return [BigInt(commit), BigInt(change)];
};
