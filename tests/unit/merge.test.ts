import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { createMerge, type Merge } from "../../intervals/merge.ts";
import { LoginInterval, type LoginWindowStats, OPTIONAL_LOGIN_FIELDS } from "../../shared/schemas.ts";
import { mulberry32 as random } from "../../tools/generators.ts";

const WINDOW = 10_000;
/** Windows in the tests start at T0 + n windows, an instant on a window boundary. */
const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
const S0 = T0 / 1000;

type Counts = Record<string, number>;
const missing = (n = 0): Counts => Object.fromEntries(OPTIONAL_LOGIN_FIELDS.map((field) => [field, n]));

/** The partial of window `n` of a partition: `messages` logins on `device`, each missing every optional field. */
function partial(n: number, messages: number, { late = 0, device = "ios", partition = 0 } = {}): LoginWindowStats {
  return {
    timestamp_start: new Date(T0 + n * WINDOW).toISOString(),
    timestamp_end: new Date(T0 + (n + 1) * WINDOW).toISOString(),
    partition,
    interval_messages_consumed: messages,
    interval_device_type_count: messages > 0 ? { [device]: messages } : {},
    interval_missing_field_count: missing(messages),
    late_messages: late,
    // The merge reads the interval counts only; the partials' own totals are the aggregate's business.
    total_messages_consumed: 0,
    total_device_type_count: {},
    total_missing_field_count: missing(),
    source_offset_end: 0,
  };
}

/**
 * A merge restored from nothing, with each partition's offsets assigned in order. The partitions in `reported`
 * have reported the window before window 0, empty, at offset 0: from then on the merge waits for them.
 */
function harness(reported: number[] = []) {
  const merge = createMerge();
  merge.restore(undefined, []);
  const next = new Map<number, bigint>();
  const add = (partition: number, window: LoginWindowStats) => {
    const offset = next.get(partition) ?? 0n;
    next.set(partition, offset + 1n);
    return merge.add(partition, offset, window);
  };
  for (const partition of reported) add(partition, partial(-1, 0));
  return { merge, add, take: () => merge.take() };
}

describe("one record per window over all partitions", () => {
  test("is emitted once every partition that reported has passed its end, with the counts summed", () => {
    const h = harness([0, 1, 2]);
    expect(h.add(0, partial(0, 2))).toBe("counted");
    expect(h.add(1, partial(0, 3, { device: "web" }))).toBe("counted");
    expect(h.take()).toEqual([]);
    expect(h.add(2, partial(0, 1))).toBe("counted");
    const [first, ...rest] = h.take();
    expect(rest).toEqual([]);
    expect(first).toEqual({
      timestamp_start: S0,
      timestamp_end: S0 + 10,
      interval_messages_consumed: 6,
      total_messages_consumed: 6,
      interval_device_type_count: { ios: 3, web: 3 },
      interval_missing_field_count: missing(6),
      total_device_type_count: { ios: 3, web: 3 },
      total_missing_field_count: missing(6),
      late_messages: 0,
      source_offsets: { 0: 2, 1: 2, 2: 2 },
      source_progress: { 0: S0 + 10, 1: S0 + 10, 2: S0 + 10 },
    });
    expect(v.parse(LoginInterval, JSON.parse(JSON.stringify(first)))).toEqual(first as LoginInterval);
  });

  test("waits for a partition that reported before, until it reports this window's end or later", () => {
    const h = harness([0, 1]);
    h.add(0, partial(0, 1));
    h.add(1, partial(0, 1));
    expect(h.take()).toHaveLength(1);
    h.add(0, partial(1, 4));
    expect(h.take()).toEqual([]);
    // Partition 1 had no events in window 1: its empty window says so, and window 1 goes out.
    expect(h.add(1, partial(1, 0))).toBe("progress");
    expect(h.take().map((w) => [w.timestamp_start, w.interval_messages_consumed])).toEqual([[S0 + 10, 4]]);
  });

  test("a report past several windows releases all of them, in order; windows without events emit nothing", () => {
    const h = harness([0, 1]);
    h.add(0, partial(0, 1));
    h.add(1, partial(0, 1));
    h.take();
    h.add(0, partial(1, 1));
    h.add(0, partial(3, 2));
    h.add(0, partial(4, 0));
    expect(h.take()).toEqual([]);
    h.add(1, partial(5, 0));
    expect(h.take().map((w) => w.timestamp_start)).toEqual([S0 + 10, S0 + 30]);
  });

  test("a partition that never reported is not waited for; its partial for an emitted window counts as late", () => {
    const h = harness();
    h.add(0, partial(0, 2));
    expect(h.take()).toHaveLength(1);
    expect(h.add(1, partial(0, 5, { late: 1 }))).toBe("late");
    // From now on partition 1 is waited for too.
    h.add(0, partial(1, 1));
    expect(h.take()).toEqual([]);
    h.add(1, partial(1, 0));
    expect(h.take()).toEqual([
      expect.objectContaining({
        timestamp_start: S0 + 10,
        interval_messages_consumed: 1,
        late_messages: 6,
        total_messages_consumed: 2 + 1 + 6,
        // Histograms add interval histograms only, as the partials' totals do.
        total_device_type_count: { ios: 3 },
      }),
    ]);
  });

  test("late counts of a window that had no events wait for the next window that has some", () => {
    const h = harness();
    h.add(0, partial(0, 1));
    h.take();
    h.add(0, partial(1, 0, { late: 2 }));
    expect(h.take()).toEqual([]);
    h.add(0, partial(2, 3));
    expect(h.take().map((w) => [w.timestamp_start, w.interval_messages_consumed, w.late_messages])).toEqual([
      [S0 + 20, 3, 2],
    ]);
  });

  test("a second copy of a partial counts nothing; after a restore only the replay in order is in sequence", () => {
    const h = harness();
    h.add(0, partial(0, 1));
    expect(h.add(0, partial(0, 1))).toBe("copy");
    const merge = createMerge();
    merge.restore(undefined, [{ partition: 0, offset: 5n }]);
    expect(merge.inSequence(0, 7n)).toBe(false);
    expect(merge.inSequence(0, 5n)).toBe(true);
    merge.advance(0, 5n); // a dead letter
    expect(merge.inSequence(0, 6n)).toBe(true);
    expect(merge.add(0, 6n, partial(0, 1))).toBe("counted");
    expect(merge.inSequence(0, 6n)).toBe(false);
  });
});

describe("positions", () => {
  test("never pass the last emitted record's cut: the first record whose counts are in no record yet", () => {
    const h = harness([0, 1]);
    // Progress reports alone are in no record: nothing to commit yet.
    expect(h.merge.positions()).toEqual([]);
    h.add(0, partial(0, 1)); // 0:1
    h.add(1, partial(0, 1)); // 1:1
    h.add(0, partial(1, 1)); // 0:2, waits for partition 1
    expect(h.take()).toHaveLength(1);
    expect(h.merge.positions()).toEqual([
      { partition: 0, offset: 2n },
      { partition: 1, offset: 2n },
    ]);
    h.add(1, partial(1, 0)); // 1:2, releases window 1
    const [second] = h.take();
    expect(second?.source_offsets).toEqual({ 0: 3, 1: 3 });
    expect(h.merge.positions()).toEqual([
      { partition: 0, offset: 3n },
      { partition: 1, offset: 3n },
    ]);
  });

  test("restoring from the last record skips what it counted and continues its totals", () => {
    const h = harness([0, 1]);
    h.add(0, partial(0, 1));
    h.add(1, partial(0, 2));
    h.add(0, partial(1, 3));
    const [last] = h.take();
    const merge = createMerge();
    // The committed positions may trail the record's cut (a commit that failed after the record was produced).
    merge.restore(last, [
      { partition: 0, offset: 1n },
      { partition: 1, offset: 1n },
    ]);
    expect(merge.add(0, 1n, partial(0, 1))).toBe("already counted");
    expect(merge.add(1, 1n, partial(0, 2))).toBe("already counted");
    expect(merge.add(0, 2n, partial(1, 3))).toBe("counted");
    // Partition 1 is still waited for: the record says it reported.
    expect(merge.take()).toEqual([]);
    expect(merge.add(1, 2n, partial(1, 0))).toBe("progress");
    expect(merge.take().map((w) => [w.timestamp_start, w.total_messages_consumed])).toEqual([[S0 + 10, 6]]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The guarantee: a crash at any point, then a restore from the last record emitted and a replay from the
// committed positions, gives the same records as no crash; no window is emitted twice or changed.

interface StatsRecord {
  partition: number;
  offset: bigint;
  window: LoginWindowStats;
}

const PARTITIONS = [0, 1, 2];
const BATCH = 5;

/**
 * What aggregate writes to logins.stats, interleaved at random: per partition, windows in order, each with events,
 * empty (a progress report), or skipped (closed later by an open window), late counts now and then, a partition
 * that starts reporting only after others have emitted windows, and now and then a second copy of a record.
 */
function randomStream(seed: number): StatsRecord[] {
  const next = random(seed);
  const queues = PARTITIONS.map((partition) => {
    const windows: LoginWindowStats[] = [];
    const first = partition === 2 ? Math.floor(next() * 6) : 0;
    for (let n = first; n < 14; n++) {
      const roll = next();
      if (roll < 0.2) continue;
      const messages = roll < 0.45 ? 0 : 1 + Math.floor(next() * 9);
      const late = next() < 0.15 ? 1 + Math.floor(next() * 3) : 0;
      const device = ["ios", "android", "web"][Math.floor(next() * 3)] as string;
      windows.push(partial(n, messages, { late, device, partition }));
      if (next() < 0.05) windows.push(windows.at(-1) as LoginWindowStats);
    }
    windows.push(partial(20, 0, { partition }));
    return windows;
  });
  const offsets = PARTITIONS.map(() => 0n);
  const out: StatsRecord[] = [];
  while (queues.some((q) => q.length > 0)) {
    const partition = Math.floor(next() * PARTITIONS.length);
    const window = queues[partition]?.shift();
    if (!window) continue;
    out.push({ partition, offset: offsets[partition] as bigint, window });
    offsets[partition] = (offsets[partition] as bigint) + 1n;
  }
  return out;
}

/**
 * Runs the stream as intervals.ts does: batches of BATCH records, each produced then committed (every other
 * commit skipped when `skipCommits`, as when a commit fails after the batch's records were produced). At each
 * crash point the process dies with its unproduced records: the next one restores from the last record produced
 * and the broker redelivers from the committed positions. Returns every record produced, in order.
 */
function run(stream: StatsRecord[], crashes: number[], skipCommits: boolean) {
  const produced: LoginInterval[] = [];
  const committed = new Map<number, bigint>();
  const pending = [...crashes].sort((a, b) => a - b);
  let consumed = 0;
  let batches = 0;
  for (;;) {
    const merge: Merge = createMerge();
    merge.restore(
      produced.at(-1),
      [...committed].map(([partition, offset]) => ({ partition, offset })),
    );
    const flush = () => {
      produced.push(...merge.take());
      if (!skipCommits || batches++ % 2 === 0)
        for (const { partition, offset } of merge.positions()) committed.set(partition, offset);
    };
    let crashed = false;
    let inBatch = 0;
    for (const record of stream.filter((r) => r.offset >= (committed.get(r.partition) ?? 0n))) {
      if (pending[0] === consumed) {
        pending.shift();
        crashed = true;
        break;
      }
      consumed++;
      merge.add(record.partition, record.offset, record.window);
      if (++inBatch === BATCH) {
        inBatch = 0;
        flush();
      }
    }
    if (!crashed) {
      flush();
      return produced;
    }
  }
}

/** Records by window start; fails the test if one window was produced twice with different content. */
function byWindow(records: LoginInterval[]) {
  const seen = new Map<number, LoginInterval>();
  for (const record of records) {
    const before = seen.get(record.timestamp_start);
    if (before) expect(record).toEqual(before);
    seen.set(record.timestamp_start, record);
  }
  return [...seen.values()];
}

describe("a crash at any point gives the same records as no crash", () => {
  test("the crash-free run counts every message once and exercises late partials and copies", () => {
    let late = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const stream = randomStream(seed);
      const records = run(stream, [], false);
      expect(byWindow(records)).toEqual(records);
      const starts = records.map((r) => r.timestamp_start);
      expect(starts).toEqual([...starts].sort((a, b) => a - b));
      const copies = new Set<LoginWindowStats>();
      const sent = stream.reduce((sum, { window }) => {
        if (copies.has(window)) return sum;
        copies.add(window);
        return sum + window.interval_messages_consumed + window.late_messages;
      }, 0);
      // Whatever the last window with events left behind is carried by no record: it counts only the rest.
      const counted = records.at(-1)?.total_messages_consumed ?? 0;
      expect(counted).toBeLessThanOrEqual(sent);
      expect(records.reduce((sum, r) => sum + r.interval_messages_consumed + r.late_messages, 0)).toBe(counted);
      late += records.reduce((sum, r) => sum + r.late_messages, 0);
    }
    expect(late).toBeGreaterThan(100);
  });

  test("a crash at every point of 60 streams, with and without skipped commits", () => {
    for (let seed = 1; seed <= 60; seed++) {
      const stream = randomStream(seed);
      for (const skipCommits of [false, true]) {
        const expected = run(stream, [], skipCommits);
        for (let crash = 0; crash <= stream.length * 1.5; crash++) {
          const records = run(stream, [crash], skipCommits);
          expect({ seed, skipCommits, crash, records: byWindow(records) }).toEqual({
            seed,
            skipCommits,
            crash,
            records: expected,
          });
        }
      }
    }
  });

  test("three crashes at random points (200 streams x 5)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const stream = randomStream(seed);
      const expected = run(stream, [], true);
      const next = random(seed * 7919);
      for (let trial = 0; trial < 5; trial++) {
        const crashes = Array.from({ length: 3 }, () => Math.floor(next() * stream.length * 1.5));
        expect({ seed, crashes, records: byWindow(run(stream, crashes, true)) }).toEqual({
          seed,
          crashes,
          records: expected,
        });
      }
    }
  });
});
