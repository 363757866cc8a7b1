/**
 * Change events for the cdc sinks' conformance runs, as capture.ts writes them to `cdc.public.users`: the row
 * of a series' `i`-th record has a numeric primary key of its own (the mirror's key is BIGINT) and the series
 * in its email. Source positions grow as a capture's do: with `i`, and from one series to the next (in the
 * order the series are first used), under a source name of this run's own.
 */
import { changeRecords } from "../../capture/envelope.ts";

/** The source name of this run's records: positions are compared only between records of one source. */
const origin = { name: `conformance_${crypto.randomUUID().slice(0, 8)}`, db: "source" };
/** Records per series at most, so that the next series' positions start above the last one's. */
const SERIES_RECORDS = 1_000_000;

/** A numeric id range per series, far from the ids the source database's own users get, and its number. */
const bases = new Map<string, { id: number; order: number }>();
const baseOf = (series: string) => {
  let base = bases.get(series);
  if (base === undefined) {
    base = { id: 9_000_000_000_000 + Math.floor(Math.random() * 1_000_000) * SERIES_RECORDS, order: bases.size + 1 };
    bases.set(series, base);
  }
  return base;
};

/** The identity of the `i`-th record of `series`: what its mirrored row or stored line is found by. */
export const identity = (series: string, i: number) => `${series}-${i}`;

/**
 * The `i`-th created user of `series`, as capture's record: key `{"id":...}`, a Debezium envelope, and its
 * `cdc.position` header.
 */
export function userCreated(series: string, i: number) {
  const base = baseOf(series);
  const id = base.id + i;
  const position = BigInt(base.order * SERIES_RECORDS + i);
  const [record] = changeRecords(
    {
      op: "c",
      schema: "public",
      table: "users",
      key: ["id"],
      before: null,
      after: { id, email: identity(series, i), name: `user ${i}` },
      commitLsn: position,
      lsn: position,
      ordinal: 0,
      txId: i,
      committedAt: Date.now(),
    },
    origin,
  );
  return { key: String(record?.key), value: String(record?.value), headers: record?.headers, id: identity(series, i) };
}

/** A change event the envelope's schema rejects (an unknown op), keyed like the series' users. */
export const invalidChange = (series: string) => {
  const { value } = userCreated(series, 0);
  return JSON.stringify({ ...JSON.parse(value), op: "x" });
};
