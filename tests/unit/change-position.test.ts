import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { changeRecords, type RowChange } from "../../capture/envelope.ts";
import { compareLsns, POSITION_HEADER, parsePosition, positionText, repeats } from "../../shared/change.ts";

const origin = { name: "event_pipeline", db: "source" };
const change = (at: Partial<RowChange>): RowChange => ({
  op: "c",
  schema: "public",
  table: "users",
  key: ["id"],
  before: null,
  after: { id: 1 },
  commitLsn: 200n,
  lsn: 150n,
  ordinal: 0,
  txId: 7,
  committedAt: 0,
  ...at,
});
const positions = (records: ReturnType<typeof changeRecords>) =>
  records.map((record) => record.headers?.[POSITION_HEADER]);

describe("the cdc.position header", () => {
  test("capture sets it on every record: a delete's tombstone comes right after its event", () => {
    const deleted = changeRecords(change({ op: "d", before: { id: 1 }, after: null }), origin);
    expect(deleted.map((record) => record.value === null)).toEqual([false, true]);
    expect(positions(deleted)).toEqual(["event_pipeline/200/150/0", "event_pipeline/200/150/1"]);
  });

  test("snapshot rows share their LSNs and are told apart by their number", () => {
    const rows = [0, 1, 2].map((ordinal) =>
      changeRecords(change({ op: "r", commitLsn: 90n, lsn: 90n, ordinal, after: { id: ordinal } }), origin),
    );
    expect(rows.flatMap(positions)).toEqual([
      "event_pipeline/90/90/0",
      "event_pipeline/90/90/1",
      "event_pipeline/90/90/2",
    ]);
  });

  test("reads back as its source and numbers; anything else is no position", () => {
    expect(parsePosition(positionText("a/b", 1n, 18446744073709551615n, 3))).toEqual({
      source: "a/b",
      at: [1n, 18446744073709551615n, 3n],
    });
    for (const text of [undefined, null, "", "event_pipeline/1/2", "/1/2/3", "s/1/x/3", "s/-1/2/3"])
      expect(parsePosition(text)).toBeUndefined();
  });

  test("orders by commit LSN, then change LSN, then index", () => {
    expect(compareLsns([2n, 1n, 0n], [1n, 9n, 9n])).toBe(1);
    expect(compareLsns([2n, 1n, 0n], [2n, 3n, 0n])).toBe(-1);
    expect(compareLsns([2n, 3n, 1n], [2n, 3n, 0n])).toBe(1);
    expect(compareLsns([2n, 3n], [2n, 3n])).toBe(0);
  });
});

describe("repeats", () => {
  test("a record not after the last stored one of its source repeats it", () => {
    expect(repeats("s/10/12/0", "s/10/12/0")).toBe(true);
    expect(repeats("s/10/11/0", "s/10/12/0")).toBe(true);
    expect(repeats("s/9/99/0", "s/10/12/0")).toBe(true);
  });

  test("a newer record, one of another source, or one without a position is never a repeat", () => {
    expect(repeats("s/10/12/1", "s/10/12/0")).toBe(false);
    expect(repeats("s/11/1/0", "s/10/12/0")).toBe(false);
    expect(repeats("t/1/1/0", "s/10/12/0")).toBe(false);
    expect(repeats(undefined, "s/10/12/0")).toBe(false);
    expect(repeats("s/1/1/0", null)).toBe(false);
    expect(repeats("s/1/1/0", undefined)).toBe(false);
    expect(repeats("s/1/1/0", "not a position")).toBe(false);
  });

  test("a partition as capture fills it, publishing again after crashes, is stored once each, in order", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.bigInt({ min: 1n, max: 1n << 40n }), { minLength: 1, maxLength: 60 }),
        fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 6 }),
        (lsns, crashes) => {
          const changes = lsns.sort((a, b) => compareLsns([a], [b])).map((lsn) => positionText("s", lsn, lsn, 0));
          // Each crash: capture had published up to `reached`, its slot confirmed up to `confirmed`, and it
          // publishes again from there.
          const partition: string[] = [];
          let next = 0;
          for (const [a, b] of crashes) {
            const reached = next + (a % (changes.length - next + 1));
            partition.push(...changes.slice(next, reached));
            next = b % (reached + 1);
          }
          partition.push(...changes.slice(next));
          const stored: string[] = [];
          for (const position of partition) if (!repeats(position, stored.at(-1))) stored.push(position);
          expect(stored).toEqual(changes);
        },
      ),
    );
  });
});
