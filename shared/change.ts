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

/**
 * Orders two source positions given as LSNs (and indexes) compared element by element.
 *
 * @example
 * compareLsns([24023119n, 24023128n], [24023119n, 24023200n]); // -1
 */
export const compareLsns = (a: readonly bigint[], b: readonly bigint[]): number => {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const [x = 0n, y = 0n] = [a[i], b[i]];
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
};

/**
 * The header capture sets on every record of a cdc topic, tombstones included: the record's place in its source's
 * history, `<source>/<commit LSN>/<change LSN>/<index>` (decimal numbers; the source is the envelope's
 * `source.name`, capture's slot). Records of one source compare by the three numbers in that order. `index`
 * separates records that share both LSNs: snapshot rows, which all carry the slot's consistent point, are numbered
 * in the order capture publishes them, and a delete's tombstone is 1 behind its change event's 0. Capture
 * publishes in source order and a key always lands in the same partition, so within a partition one source's
 * positions only grow, except where capture published again what the broker had but the slot had not confirmed.
 */
export const POSITION_HEADER = "cdc.position";

/**
 * The {@link POSITION_HEADER} value of a record.
 *
 * @example
 * positionText("event_pipeline", 24023119n, 24023128n, 0); // "event_pipeline/24023119/24023128/0"
 */
export const positionText = (source: string, commitLsn: bigint, lsn: bigint, index: number) =>
  `${source}/${commitLsn}/${lsn}/${index}`;

/** A {@link POSITION_HEADER} value read back: its source, and the numbers that order it. */
export interface SourcePosition {
  source: string;
  at: [bigint, bigint, bigint];
}

const POSITION = /^(.+)\/(\d{1,20})\/(\d{1,20})\/(\d{1,20})$/;

/**
 * A {@link POSITION_HEADER} value as a comparable position; undefined for anything else.
 *
 * @example
 * parsePosition("event_pipeline/24023119/24023128/0"); // { source: "event_pipeline", at: [24023119n, 24023128n, 0n] }
 */
export function parsePosition(text: string | null | undefined): SourcePosition | undefined {
  const match = text ? POSITION.exec(text) : null;
  if (!match) return undefined;
  const [, source = "", commit = "", lsn = "", index = ""] = match;
  return { source, at: [BigInt(commit), BigInt(lsn), BigInt(index)] };
}

/**
 * Whether a record at `position` repeats what a store holds whose last stored record (in offset order) is at
 * `last`: only when both are positions of the same source and `position` is not after `last`. A record without a
 * position, or from another source than the last one, is never taken for a repeat, so nothing is dropped that is
 * not shown to be stored already.
 *
 * @example
 * repeats("s/10/12/0", "s/10/12/0"); // true: published again
 * repeats("s/10/14/0", "s/10/12/0"); // false: newer
 * repeats("t/10/12/0", "s/10/14/0"); // false: another source
 */
export function repeats(position: string | undefined, last: string | null | undefined): boolean {
  const [record, stored] = [parsePosition(position), parsePosition(last)];
  return !!record && !!stored && record.source === stored.source && compareLsns(record.at, stored.at) <= 0;
}
