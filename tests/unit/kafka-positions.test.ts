import { describe, expect, test } from "bun:test";
import { nextPositions, RangeProgress, uncommitted } from "../../shared/kafka/positions.ts";
import type { InRecord, Position } from "../../shared/kafka/types.ts";

const at = (partition: number, offset: bigint, topic = "t"): Position => ({ topic, partition, offset });
const record = (partition: number, offset: bigint, topic = "t"): InRecord => ({
  ...at(partition, offset, topic),
  key: undefined,
  value: Buffer.from("{}"),
  headers: {},
  timestamp: 0n,
});

describe("nextPositions", () => {
  test("is the offset after the last record of each partition", () => {
    const records = [record(0, 4n), record(1, 9n), record(0, 5n), record(0, 7n, "u")];
    expect(nextPositions(records)).toEqual([at(0, 6n), at(1, 10n), at(0, 8n, "u")]);
  });

  test("is empty for no records", () => {
    expect(nextPositions([])).toEqual([]);
  });
});

describe("uncommitted", () => {
  const ends = [at(0, 10n), at(1, 5n), at(2, 7n)];

  test("sums end minus committed per partition", () => {
    expect(uncommitted(ends, [at(0, 4n), at(1, 5n), at(2, 7n)])).toBe(6);
  });

  test("counts a partition never committed, absent or -1, in full", () => {
    expect(uncommitted(ends, [at(0, -1n), at(1, 5n)])).toBe(17);
  });

  test("matches committed offsets by topic, not partition alone", () => {
    expect(uncommitted([at(0, 10n)], [at(0, 10n, "other")])).toBe(10);
  });
});

describe("RangeProgress", () => {
  const ends = [at(0, 10n), at(1, 5n), at(2, 0n)];

  test("ends at the end offsets with until 'end'; partitions left out of from start at 0", () => {
    const progress = new RangeProgress("t", ends, [at(0, 8n)], "end");
    expect(progress.startAt()).toEqual([at(0, 8n), at(1, 0n), at(2, 0n)]);
    for (const offset of [8n, 9n]) expect(progress.accept(record(0, offset))).toBe(true);
    expect(progress.complete).toBe(false);
    expect(progress.describe()).toBe("t:1 at 0 of 5");
    for (const offset of [0n, 1n, 2n, 3n, 4n]) progress.accept(record(1, offset));
    expect(progress.complete).toBe(true);
    expect(progress.read).toBe(7);
  });

  test("drops records outside the range: before it, past it, other partitions, other topics", () => {
    const progress = new RangeProgress("t", ends, [at(0, 2n), at(1, 1n)], [at(0, 4n), at(1, 3n)]);
    expect(progress.accept(record(0, 1n))).toBe(false);
    expect(progress.accept(record(0, 4n))).toBe(false);
    expect(progress.accept(record(2, 0n))).toBe(false);
    expect(progress.accept(record(0, 2n, "u"))).toBe(false);
    expect(progress.accept(record(0, 3n))).toBe(true);
    expect(progress.read).toBe(1);
  });

  test("reads only the partitions an explicit until lists; the others start at their end", () => {
    const progress = new RangeProgress("t", ends, [], [at(1, 2n)]);
    expect(progress.startAt()).toEqual([at(0, 10n), at(1, 0n), at(2, 0n)]);
    expect(progress.accept(record(0, 0n))).toBe(false);
    expect(progress.describe()).toBe("t:1 at 0 of 2");
  });

  test("is complete at once when nothing lies in the range", () => {
    expect(new RangeProgress("t", ends, ends, "end").complete).toBe(true);
    expect(new RangeProgress("t", ends, [], [at(0, 0n)]).complete).toBe(true);
  });

  test("completes on the last offset even when earlier ones never arrive (compacted or skipped)", () => {
    const progress = new RangeProgress("t", [at(0, 10n)], [at(0, 0n)], "end");
    progress.accept(record(0, 9n));
    expect(progress.complete).toBe(true);
  });

  test("without until, never completes and describes every partition", () => {
    const progress = new RangeProgress("t", ends, [at(0, 3n)], undefined);
    progress.accept(record(0, 3n));
    progress.accept(record(0, 50n));
    expect(progress.complete).toBe(false);
    expect(progress.describe()).toBe("t:0 at 51, t:1 at 0, t:2 at 0");
  });

  test("describes partitions in partition order, whatever order the end offsets came in", () => {
    const progress = new RangeProgress("t", [at(2, 1n), at(0, 1n), at(1, 1n)], [], "end");
    expect(progress.describe()).toBe("t:0 at 0 of 1, t:1 at 0 of 1, t:2 at 0 of 1");
  });

  test("ignores start positions of other topics", () => {
    const progress = new RangeProgress("t", [at(0, 10n)], [at(0, 8n, "u")], "end");
    expect(progress.startAt()).toEqual([at(0, 0n)]);
  });
});
