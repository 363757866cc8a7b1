/**
 * Change events for the cdc sinks' conformance runs, as capture.ts writes them to `cdc.public.users`: the row
 * of a series' `i`-th record has a numeric primary key of its own (the mirror's key is BIGINT) and the series
 * in its email, and its source position grows with `i`.
 */
import { changeRecords } from "../../capture/envelope.ts";

/** A numeric id range per series, far from the ids the source database's own users get. */
const bases = new Map<string, number>();
const baseOf = (series: string) => {
  let base = bases.get(series);
  if (base === undefined) {
    base = 9_000_000_000_000 + Math.floor(Math.random() * 1_000_000) * 1_000_000;
    bases.set(series, base);
  }
  return base;
};

/** The identity of the `i`-th record of `series`: what its mirrored row or stored line is found by. */
export const identity = (series: string, i: number) => `${series}-${i}`;

/** The `i`-th created user of `series`, as capture's record: key `{"id":...}`, a Debezium envelope. */
export function userCreated(series: string, i: number) {
  const id = baseOf(series) + i;
  const position = BigInt(id);
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
      txId: i,
      committedAt: Date.now(),
    },
    { name: "conformance", db: "source" },
  );
  return { key: String(record?.key), value: String(record?.value), id: identity(series, i) };
}

/** A change event the envelope's schema rejects (an unknown op), keyed like the series' users. */
export const invalidChange = (series: string) => {
  const { value } = userCreated(series, 0);
  return JSON.stringify({ ...JSON.parse(value), op: "x" });
};
