import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { createWindowFold, type WindowFold } from "../../aggregate/windows.ts";
import {
  LoginWindowStats,
  OPTIONAL_LOGIN_FIELDS,
  type OptionalLoginField,
  type RawLogin,
} from "../../shared/schemas.ts";
import { mulberry32 as random } from "../../tools/generators.ts";

const WINDOW = 10_000;
const GRACE = 5_000;
/** Event times in the tests are milliseconds after T0, an instant on a window boundary. */
const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
/** Wall-clock time of the tests: arbitrary, and unrelated to event time. */
const NOW = Date.UTC(2030, 5, 1);

type Counts = Record<string, number>;

const iso = (ms: number) => new Date(T0 + ms).toISOString();

let sequence = 0;
/** A login at T0 + `ms` with every optional field present (device "ios"), then `fields` on top. */
function login(ms: number, fields: Partial<RawLogin> = {}): RawLogin {
  sequence++;
  return {
    event_id: `event-${sequence}`,
    user_id: `user-${sequence % 7}`,
    timestamp: iso(ms),
    ingested_at: iso(ms),
    app_version: "1.0.0",
    device_type: "ios",
    ip: "192.0.2.1",
    locale: "en_US",
    device_id: `device-${sequence}`,
    ...fields,
  };
}

/** A login without the given optional fields at all (not even as undefined). */
function without(ms: number, ...fields: OptionalLoginField[]): RawLogin {
  const event: Record<string, unknown> = login(ms);
  for (const field of fields) delete event[field];
  return event as RawLogin;
}

/** A missing-field histogram: every optional field, zero unless given. */
function missing(counts: Partial<Record<OptionalLoginField, number>> = {}): Counts {
  return { ...Object.fromEntries(OPTIONAL_LOGIN_FIELDS.map((field) => [field, 0])), ...counts };
}

/** The exact record a closed window should produce. Times are ms after T0. */
function closed(w: {
  start: number;
  partition?: number;
  messages: number;
  devices: Counts;
  missing?: Counts;
  late?: number;
  totalMessages: number;
  totalDevices: Counts;
  totalMissing?: Counts;
  offsetEnd: number;
  windowMs?: number;
}): LoginWindowStats {
  return {
    timestamp_start: iso(w.start),
    timestamp_end: iso(w.start + (w.windowMs ?? WINDOW)),
    partition: w.partition ?? 0,
    interval_messages_consumed: w.messages,
    interval_device_type_count: w.devices,
    interval_missing_field_count: w.missing ?? missing(),
    late_messages: w.late ?? 0,
    total_messages_consumed: w.totalMessages,
    total_device_type_count: w.totalDevices,
    total_missing_field_count: w.totalMissing ?? missing(),
    source_offset_end: w.offsetEnd,
  };
}

/** A fold with `partitions` restored from nothing, and each partition's offsets assigned in order. */
function harness(partitions: number[] = [0], options = { windowMs: WINDOW, graceMs: GRACE }) {
  const fold = createWindowFold(options);
  for (const partition of partitions) fold.restore(partition, undefined, NOW);
  const next = new Map(partitions.map((partition) => [partition, 0n]));
  return {
    fold,
    /** Adds `event` at the partition's next offset, arriving at wall-clock `now`. */
    add(event: RawLogin, partition = 0, now = NOW) {
      const offset = next.get(partition) ?? 0n;
      next.set(partition, offset + 1n);
      return fold.add(partition, offset, event, now);
    },
    /** A record that is not an event (a dead letter) at the partition's next offset. */
    deadLetter(partition = 0) {
      const offset = next.get(partition) ?? 0n;
      next.set(partition, offset + 1n);
      fold.advance(partition, offset);
    },
    tick: (now = NOW) => fold.tick(now),
    position: (partition = 0) => fold.positions().find((p) => p.partition === partition)?.offset,
  };
}

describe("closing windows", () => {
  test("in-order events: a window closes when the watermark reaches its end plus grace, not before", () => {
    const h = harness();
    expect(h.add(login(1_000))).toBe("counted");
    expect(h.add(login(2_000, { device_type: "android" }))).toBe("counted");
    expect(h.add(login(3_000))).toBe("counted");
    expect(h.tick()).toEqual([]);
    h.add(login(11_000));
    expect(h.tick()).toEqual([]);
    h.add(login(14_999));
    expect(h.tick()).toEqual([]);
    h.add(login(15_000));
    expect(h.tick()).toEqual([
      closed({
        start: 0,
        messages: 3,
        devices: { ios: 2, android: 1 },
        totalMessages: 3,
        totalDevices: { ios: 2, android: 1 },
        offsetEnd: 6,
      }),
    ]);
    // Emitted once: a second tick has nothing more to say.
    expect(h.tick()).toEqual([]);
    h.add(login(25_000));
    expect(h.tick()).toEqual([
      closed({
        start: 10_000,
        messages: 3,
        devices: { ios: 3 },
        totalMessages: 6,
        totalDevices: { ios: 5, android: 1 },
        offsetEnd: 7,
      }),
    ]);
  });

  test("out-of-order events within the grace period are counted in their own window", () => {
    const h = harness();
    expect(h.add(login(12_000))).toBe("counted");
    expect(h.add(login(4_000, { device_type: "android" }))).toBe("counted");
    expect(h.add(login(14_000))).toBe("counted");
    expect(h.add(login(9_999, { device_type: "web" }))).toBe("counted");
    expect(h.tick()).toEqual([]);
    h.add(login(15_000));
    expect(h.tick()).toEqual([
      closed({
        start: 0,
        messages: 2,
        devices: { android: 1, web: 1 },
        totalMessages: 2,
        totalDevices: { android: 1, web: 1 },
        offsetEnd: 5,
      }),
    ]);
    h.add(login(30_000));
    expect(h.tick()).toEqual([
      closed({
        start: 10_000,
        messages: 3,
        devices: { ios: 3 },
        totalMessages: 5,
        totalDevices: { android: 1, web: 1, ios: 3 },
        offsetEnd: 6,
      }),
    ]);
  });

  test("one tick closes every due window, oldest first", () => {
    const h = harness();
    h.add(login(25_000));
    h.add(login(1_000));
    h.add(login(11_000));
    h.add(login(50_000));
    expect(h.tick().map((w) => w.timestamp_start)).toEqual([iso(0), iso(10_000), iso(20_000)]);
  });

  test("a window with one event", () => {
    const h = harness();
    h.add(login(5_000, { device_type: "Android" }));
    h.add(login(20_000));
    expect(h.tick()).toEqual([
      closed({
        start: 0,
        messages: 1,
        devices: { android: 1 },
        totalMessages: 1,
        totalDevices: { android: 1 },
        offsetEnd: 2,
      }),
    ]);
  });

  test("a gap of empty windows produces no records, and totals carry over it", () => {
    const h = harness();
    h.add(login(1_000));
    h.add(login(45_000));
    expect(h.tick()).toEqual([
      closed({ start: 0, messages: 1, devices: { ios: 1 }, totalMessages: 1, totalDevices: { ios: 1 }, offsetEnd: 2 }),
    ]);
    h.add(login(60_000));
    expect(h.tick()).toEqual([
      closed({
        start: 40_000,
        messages: 1,
        devices: { ios: 1 },
        totalMessages: 2,
        totalDevices: { ios: 2 },
        offsetEnd: 3,
      }),
    ]);
  });

  test("an event for a skipped (empty) window after the last emitted one is counted, not late", () => {
    const h = harness();
    h.add(login(1_000));
    h.add(login(45_000));
    expect(h.tick()).toHaveLength(1);
    // Window 20s-30s produced nothing, so it is not closed: the straggler opens it, and it is due at once.
    expect(h.add(login(25_000))).toBe("counted");
    expect(h.tick()).toEqual([
      closed({
        start: 20_000,
        messages: 1,
        devices: { ios: 1 },
        totalMessages: 2,
        totalDevices: { ios: 2 },
        offsetEnd: 3,
      }),
    ]);
  });
});

describe("idle close", () => {
  test("a quiet partition closes its window once wall-clock idleness carries the watermark past end + grace", () => {
    const h = harness();
    h.add(login(3_000), 0, NOW);
    expect(h.tick(NOW)).toEqual([]);
    // The watermark is 3s + idle time; the window closes at 10s + 5s.
    expect(h.tick(NOW + 11_999)).toEqual([]);
    expect(h.tick(NOW + 12_000)).toEqual([
      closed({ start: 0, messages: 1, devices: { ios: 1 }, totalMessages: 1, totalDevices: { ios: 1 }, offsetEnd: 1 }),
    ]);
    // Nothing is open any more: a minute later the partition reports its progress, once, for the latest window
    // the watermark (3s + 60s) closed, with its totals and nothing counted in it.
    const progress = closed({
      start: 40_000,
      messages: 0,
      devices: {},
      totalMessages: 1,
      totalDevices: { ios: 1 },
      offsetEnd: 1,
    });
    expect(h.tick(NOW + 60_000)).toEqual([progress]);
    expect(h.tick(NOW + 60_000)).toEqual([]);
    expect(h.position()).toBe(1n);
  });

  test("within window + grace of the last arrival, whatever the event's place in its window", () => {
    const h = harness();
    h.add(login(0), 0, NOW);
    expect(h.tick(NOW + WINDOW + GRACE - 1)).toEqual([]);
    expect(h.tick(NOW + WINDOW + GRACE)).toHaveLength(1);
  });

  test("a new arrival restarts the idle clock", () => {
    const h = harness();
    h.add(login(3_000), 0, NOW);
    h.add(login(4_000), 0, NOW + 10_000);
    // 12s after the first arrival but only 2s after the second: the watermark is 4s + 2s.
    expect(h.tick(NOW + 12_000)).toEqual([]);
    expect(h.tick(NOW + 10_000 + 10_999)).toEqual([]);
    expect(h.tick(NOW + 10_000 + 11_000)).toEqual([
      closed({ start: 0, messages: 2, devices: { ios: 2 }, totalMessages: 2, totalDevices: { ios: 2 }, offsetEnd: 2 }),
    ]);
  });

  test("after an idle close, a straggler for the closed window is late", () => {
    const h = harness();
    h.add(login(3_000), 0, NOW);
    expect(h.tick(NOW + 20_000)).toHaveLength(1);
    expect(h.add(login(9_000), 0, NOW + 21_000)).toBe("late");
  });

  test("idleness of one partition does not close another's windows early", () => {
    const h = harness([0, 1]);
    h.add(login(3_000), 0, NOW);
    h.add(login(3_000), 1, NOW + 10_000);
    const out = h.tick(NOW + 12_000);
    expect(out.map((w) => w.partition)).toEqual([0]);
    // Partition 1's window closes 10s later; by then partition 0, with nothing open, reports progress (0 counted).
    expect(h.tick(NOW + 22_000).map((w) => [w.partition, w.interval_messages_consumed])).toEqual([
      [0, 0],
      [1, 1],
    ]);
  });
});

describe("progress reports of partitions with nothing open", () => {
  test("a quiet partition reports once per window length, not once per tick, each time for the latest window", () => {
    const h = harness();
    h.add(login(3_000), 0, NOW);
    expect(h.tick(NOW + 12_000)).toHaveLength(1); // window 0 closes at 3s + 12s
    const starts: string[] = [];
    for (let idle = 12_000; idle <= 42_000; idle += 100)
      starts.push(...h.tick(NOW + idle).map((w) => w.timestamp_start));
    // The watermark 3s + idle passes 10s + 10s + 5s at idle 22s, 30s + 5s at idle 32s, 40s + 5s at idle 42s.
    expect(starts).toEqual([iso(10_000), iso(20_000), iso(30_000)]);
  });

  test("after a long gap only the latest window closed is reported, with the totals and the pending late count", () => {
    const h = harness();
    h.add(login(3_000), 0, NOW);
    expect(h.tick(NOW + 12_000)).toHaveLength(1);
    expect(h.add(login(4_000), 0, NOW + 13_000)).toBe("late");
    // The late arrival restarted the idle clock: the watermark is 4s + 1000s, which closes up to 980s-990s.
    expect(h.tick(NOW + 13_000 + 1_000_000)).toEqual([
      closed({
        start: 980_000,
        messages: 0,
        devices: {},
        late: 1,
        totalMessages: 2,
        totalDevices: { ios: 1 },
        offsetEnd: 2,
      }),
    ]);
    // The late event is carried now: nothing holds the position any more.
    expect(h.position()).toBe(2n);
  });

  test("an open window reports instead: nothing is emitted while it waits for its grace", () => {
    const h = harness();
    h.add(login(3_000), 0, NOW);
    h.add(login(45_000), 0, NOW);
    expect(h.tick(NOW).map((w) => w.timestamp_start)).toEqual([iso(0)]);
    expect(h.tick(NOW + 4_999)).toEqual([]);
    expect(h.tick(NOW + 10_000).map((w) => [w.timestamp_start, w.interval_messages_consumed])).toEqual([
      [iso(40_000), 1],
    ]);
  });

  test("following the clock, a quiet partition whose event time trails it reports up to the wall clock", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE, followClock: true });
    fold.restore(0, undefined, NOW);
    fold.restore(1, undefined, NOW);
    fold.add(0, 0n, login(3_000), NOW);
    // Event time is years behind the clock: window 0 closes by idleness as before, then the report is for the
    // latest window the wall clock closed, and an event behind that is late.
    const [window, report] = fold.tick(NOW + 12_000);
    expect(window?.timestamp_start).toBe(iso(0));
    expect(Date.parse(report?.timestamp_end ?? "")).toBeLessThanOrEqual(NOW + 12_000 - GRACE);
    expect(Date.parse(report?.timestamp_end ?? "")).toBeGreaterThan(NOW + 12_000 - GRACE - WINDOW);
    expect(fold.add(0, 1n, login(20_000), NOW + 13_000)).toBe("late");
    // A partition that never had an event still reports nothing.
    expect(fold.tick(NOW + 100_000).every((w) => w.partition === 0)).toBe(true);
  });

  test("following the clock, idleness does not carry a partition whose events run ahead past the clock", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE, followClock: true });
    fold.restore(0, undefined, T0);
    fold.add(0, 0n, login(30_000), T0);
    // Its event time is 30s ahead of the clock: 40s of idleness bring the clock, not the watermark, past 45s.
    expect(fold.tick(T0 + 40_000)).toEqual([]);
    expect(fold.tick(T0 + 45_000).map((w) => [w.timestamp_start, w.interval_messages_consumed])).toEqual([
      [iso(30_000), 1],
    ]);
    // An event of the present after all that counts, since nothing reported past it.
    expect(fold.add(0, 1n, login(46_000), T0 + 46_000)).toBe("counted");
  });

  describe("idleness counts only for a partition that has read up to its end offset", () => {
    // The window before the crash: offsets 0-9 counted in it, and 10-13 were counted in the next window, which
    // was still open when the process died. The committed offset is 10, the records end at 20.
    const last = closed({
      start: 0,
      messages: 10,
      devices: { ios: 10 },
      totalMessages: 10,
      totalDevices: { ios: 10 },
      offsetEnd: 14,
    });
    const backlog = Array.from({ length: 10 }, (_, i) => ({ offset: BigInt(10 + i), event: login(10_000 + i * 500) }));
    const ends = new Map([[0, 20n]]);

    /** A fold following the clock, restored at wall-clock `at` long after the events, as after a crash. */
    function restored(at: number) {
      const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE, followClock: true });
      fold.restore(0, last, at, 10n);
      return fold;
    }

    test("a restored partition still replaying reports no progress, so its replay counts every record again", () => {
      const at = T0 + 3_600_000;
      const fold = restored(at);
      // Ticks before the replay's first record arrives: the clock is an hour past the events, the partition has
      // nothing open, and yet nothing closes or is reported, because records up to offset 20 are still to come.
      expect(fold.tick(at + 60_000, ends)).toEqual([]);
      const outcomes = backlog.map(({ offset, event }) => fold.add(0, offset, event, at + 61_000));
      expect(outcomes).toEqual(backlog.map(() => "counted"));
      // Read up to the end: idle from now on, so ten seconds later idleness closes the window with all ten.
      expect(fold.tick(at + 70_999, ends)).toEqual([]);
      const [window, report] = fold.tick(at + 71_000, ends);
      expect(window).toEqual(
        closed({
          start: 10_000,
          messages: 10,
          devices: { ios: 10 },
          totalMessages: 20,
          totalDevices: { ios: 20 },
          offsetEnd: 20,
        }),
      );
      expect(Date.parse(report?.timestamp_end ?? "")).toBeGreaterThan(at + 71_000 - GRACE - WINDOW);
    });

    test("the same ticks with every partition taken as caught up would have lost the replay", () => {
      // What the fold did when idleness counted during a replay: the report jumps to the wall clock, then the
      // records below the restored source_offset_end are taken as counted and the rest as late.
      const at = T0 + 3_600_000;
      const fold = restored(at);
      expect(fold.tick(at + 60_000).length).toBe(1);
      const outcomes = backlog.map(({ offset, event }) => fold.add(0, offset, event, at + 61_000));
      expect(outcomes).toEqual([...Array(4).fill("already counted"), ...Array(6).fill("late")]);
    });

    test("a partition short of its end offset closes nothing by idleness, only by events", () => {
      const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE, followClock: true });
      fold.restore(0, undefined, T0);
      fold.add(0, 0n, login(1_000), T0 + 1_000);
      expect(fold.tick(T0 + 30_000, new Map([[0, 2n]]))).toEqual([]);
      const [window] = fold.tick(T0 + 30_000, new Map([[0, 1n]]));
      expect([window?.timestamp_start, window?.interval_messages_consumed]).toEqual([iso(0), 1]);
    });

    test("a partition missing from the end offsets is not taken as caught up", () => {
      const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE, followClock: true });
      fold.restore(0, undefined, T0);
      fold.add(0, 0n, login(1_000), T0 + 1_000);
      expect(fold.tick(T0 + 30_000, new Map([[1, 0n]]))).toEqual([]);
    });

    test("a restored partition with nothing to replay reports up to the wall clock at once", () => {
      const at = T0 + 3_600_000;
      const fold = restored(at);
      const [report] = fold.tick(at, new Map([[0, 10n]]));
      expect(report?.interval_messages_consumed).toBe(0);
      expect(Date.parse(report?.timestamp_end ?? "")).toBeGreaterThan(at - GRACE - WINDOW);
    });
  });

  test("a partition that never had an event, and was never emitted, reports nothing", () => {
    const h = harness([0, 1]);
    h.add(login(3_000), 0, NOW);
    expect(h.tick(NOW + 100_000).every((w) => w.partition === 0)).toBe(true);
  });

  test("a restored partition that stays quiet reports from its restored window on, within a window length", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    const last = closed({
      start: 0,
      messages: 1,
      devices: { ios: 1 },
      totalMessages: 1,
      totalDevices: { ios: 1 },
      offsetEnd: 9,
    });
    fold.restore(0, last, NOW);
    expect(fold.tick(NOW + WINDOW - 1)).toEqual([]);
    const [report] = fold.tick(NOW + WINDOW);
    expect(report).toEqual(
      closed({ start: 10_000, messages: 0, devices: {}, totalMessages: 1, totalDevices: { ios: 1 }, offsetEnd: 9 }),
    );
    expect(v.parse(LoginWindowStats, JSON.parse(JSON.stringify(report)))).toEqual(report as LoginWindowStats);
  });
});

describe("late events", () => {
  test("are reported, counted in the next emitted window's late_messages and in the running total", () => {
    const h = harness();
    h.add(login(1_000));
    h.add(login(15_000));
    expect(h.tick()).toHaveLength(1);
    expect(h.add(login(9_000))).toBe("late");
    expect(h.add(login(3_000, { device_type: "android", ip: null }))).toBe("late");
    // Late events alone close nothing.
    expect(h.tick()).toEqual([]);
    h.add(login(16_000));
    h.add(login(25_000));
    expect(h.tick()).toEqual([
      closed({
        start: 10_000,
        messages: 2,
        devices: { ios: 2 },
        late: 2,
        totalMessages: 5,
        totalDevices: { ios: 3 },
        offsetEnd: 6,
      }),
    ]);
    // Counted once: the window after starts from zero late events again.
    h.add(login(40_000));
    expect(h.tick()).toEqual([
      closed({
        start: 20_000,
        messages: 1,
        devices: { ios: 1 },
        totalMessages: 6,
        totalDevices: { ios: 4 },
        offsetEnd: 7,
      }),
    ]);
  });

  test("an event for a window long closed is late too", () => {
    const h = harness();
    h.add(login(41_000));
    h.add(login(60_000));
    expect(h.tick()).toHaveLength(1);
    expect(h.add(login(1_000))).toBe("late");
    expect(h.add(login(49_999))).toBe("late");
    expect(h.add(login(50_000))).toBe("counted");
  });

  test("a window's end, not its grace, decides lateness once it has been emitted", () => {
    const h = harness();
    h.add(login(9_999));
    h.add(login(15_000));
    expect(h.tick()).toHaveLength(1);
    expect(h.add(login(9_999))).toBe("late");
    expect(h.add(login(10_000))).toBe("counted");
  });
});

describe("missing fields and device types", () => {
  test("absent, null, empty and whitespace-only values count as missing, per field", () => {
    const h = harness();
    h.add(login(1_000));
    h.add(without(1_100, ...OPTIONAL_LOGIN_FIELDS));
    h.add(login(1_200, { app_version: null, device_type: null, ip: null, locale: null, device_id: null }));
    h.add(login(1_300, { app_version: "", device_type: "", ip: "", locale: "", device_id: "" }));
    h.add(login(1_400, { app_version: "   ", device_type: "\t", ip: " \n ", locale: " ", device_id: "\u00a0" }));
    h.add(login(1_500, { ip: "", locale: null, device_id: undefined }));
    h.add(without(1_600, "locale"));
    h.add(login(20_000));
    const [window] = h.tick();
    expect(window?.interval_messages_consumed).toBe(7);
    expect(window?.interval_missing_field_count).toEqual(
      missing({ app_version: 4, device_type: 4, ip: 5, locale: 6, device_id: 5 }),
    );
    expect(window?.total_missing_field_count).toEqual(window?.interval_missing_field_count as Counts);
    // Only real values are device types; blank ones are missing.
    expect(window?.interval_device_type_count).toEqual({ ios: 3 });
  });

  test("all five fields are in the missing map even when nothing is missing", () => {
    const h = harness();
    h.add(login(1_000));
    h.add(login(20_000));
    const [window] = h.tick();
    expect(Object.keys(window?.interval_missing_field_count ?? {}).sort()).toEqual([...OPTIONAL_LOGIN_FIELDS].sort());
    expect(Object.keys(window?.total_missing_field_count ?? {}).sort()).toEqual([...OPTIONAL_LOGIN_FIELDS].sort());
    expect(window?.interval_missing_field_count).toEqual(missing());
  });

  test("device types are counted under their trimmed lower-case name, whatever it is", () => {
    const h = harness();
    for (const device_type of ["Android", "android ", " ANDROID", "iOS", "Windows Phone", "KaiOS", "kaios"]) {
      h.add(login(1_000, { device_type }));
    }
    h.add(without(2_000, "device_type"));
    h.add(login(3_000, { device_type: null }));
    h.add(login(20_000));
    const [window] = h.tick();
    expect(window?.interval_device_type_count).toEqual({ android: 3, ios: 1, "windows phone": 1, kaios: 2 });
    expect(window?.interval_missing_field_count).toEqual(missing({ device_type: 2 }));
  });

  test("running device and missing totals merge by name across windows", () => {
    const h = harness();
    const out: LoginWindowStats[] = [];
    for (const event of [
      login(1_000, { device_type: "Android", ip: "" }),
      login(11_000, { device_type: "android", ip: null, locale: null }),
      login(12_000, { device_type: "Web" }),
      login(21_000, { device_type: " ANDROID " }), // closes window 0
      login(45_000), // closes windows 10 and 20
    ]) {
      h.add(event);
      out.push(...h.tick());
    }
    expect(out).toEqual([
      closed({
        start: 0,
        messages: 1,
        devices: { android: 1 },
        missing: missing({ ip: 1 }),
        totalMessages: 1,
        totalDevices: { android: 1 },
        totalMissing: missing({ ip: 1 }),
        offsetEnd: 4,
      }),
      closed({
        start: 10_000,
        messages: 2,
        devices: { android: 1, web: 1 },
        missing: missing({ ip: 1, locale: 1 }),
        totalMessages: 3,
        totalDevices: { android: 2, web: 1 },
        totalMissing: missing({ ip: 2, locale: 1 }),
        offsetEnd: 5,
      }),
      closed({
        start: 20_000,
        messages: 1,
        devices: { android: 1 },
        totalMessages: 4,
        totalDevices: { android: 3, web: 1 },
        totalMissing: missing({ ip: 2, locale: 1 }),
        offsetEnd: 5,
      }),
    ]);
  });
});

describe("partitions and alignment", () => {
  test("partitions have their own windows, watermarks, offsets and totals", () => {
    const h = harness([0, 1]);
    h.add(login(1_000), 0);
    h.add(login(2_000, { device_type: "web" }), 1);
    h.add(login(3_000, { device_type: "web" }), 1);
    h.add(login(30_000), 0);
    // Partition 0's watermark closes only partition 0's window.
    expect(h.tick()).toEqual([
      closed({ start: 0, messages: 1, devices: { ios: 1 }, totalMessages: 1, totalDevices: { ios: 1 }, offsetEnd: 2 }),
    ]);
    h.add(login(40_000), 1);
    expect(h.tick()).toEqual([
      closed({
        start: 0,
        partition: 1,
        messages: 2,
        devices: { web: 2 },
        totalMessages: 2,
        totalDevices: { web: 2 },
        offsetEnd: 3,
      }),
    ]);
    expect(h.fold.positions()).toEqual([
      { partition: 0, offset: 1n },
      { partition: 1, offset: 2n },
    ]);
  });

  test("a partition must be restored before use, and a forgotten one is gone", () => {
    const h = harness([0, 1]);
    expect(() => h.fold.add(2, 0n, login(1_000), NOW)).toThrow(/partition 2/);
    expect(h.fold.partitions().sort()).toEqual([0, 1]);
    h.add(login(1_000), 1);
    h.add(login(1_000), 0);
    h.fold.forget(1);
    expect(h.fold.partitions()).toEqual([0]);
    expect(h.fold.positions()).toEqual([{ partition: 0, offset: 0n }]);
    h.add(login(30_000), 0);
    expect(h.tick().map((w) => w.partition)).toEqual([0]);
  });

  test("windows start at multiples of the window size since the epoch, in UTC", () => {
    const h = harness([0], { windowMs: 60_000, graceMs: 0 });
    h.fold.add(0, 0n, { ...login(0), timestamp: "2024-01-15T12:34:56.789Z" }, NOW);
    h.fold.add(0, 1n, { ...login(0), timestamp: "2024-01-15T12:35:59.999Z" }, NOW);
    h.fold.add(0, 2n, { ...login(0), timestamp: "2024-01-15T12:37:00.000Z" }, NOW);
    expect(h.tick().map((w) => [w.timestamp_start, w.timestamp_end, w.interval_messages_consumed])).toEqual([
      ["2024-01-15T12:34:00.000Z", "2024-01-15T12:35:00.000Z", 1],
      ["2024-01-15T12:35:00.000Z", "2024-01-15T12:36:00.000Z", 1],
    ]);
  });

  test("a window size that does not divide a minute still aligns to the epoch", () => {
    const windowMs = 7_000;
    const h = harness([0], { windowMs, graceMs: 0 });
    // 7000 x 243_617_143 = 1_705_320_001_000: a window boundary that is not on a whole 10 seconds.
    const times = [1_705_320_003_500, 1_705_320_007_999, 1_705_320_008_000, 1_705_320_020_000];
    times.forEach((ms, i) => {
      h.fold.add(0, BigInt(i), { ...login(0), timestamp: new Date(ms).toISOString() }, NOW);
    });
    const out = h.tick();
    const starts = out.map((w) => Date.parse(w.timestamp_start));
    expect(starts).toEqual([1_705_320_001_000, 1_705_320_008_000]);
    for (const start of starts) expect(start % windowMs).toBe(0);
    expect(out.map((w) => Date.parse(w.timestamp_end) - Date.parse(w.timestamp_start))).toEqual([windowMs, windowMs]);
    expect(out.map((w) => w.interval_messages_consumed)).toEqual([2, 1]);
  });

  test("boundaries: the first millisecond of a window belongs to it, the last to the one before", () => {
    const h = harness();
    h.add(login(9_999));
    h.add(login(10_000));
    h.add(login(19_999));
    h.add(login(40_000));
    expect(h.tick().map((w) => w.interval_messages_consumed)).toEqual([1, 2]);
  });

  test("the epoch itself", () => {
    const h = harness([0], { windowMs: WINDOW, graceMs: 0 });
    h.fold.add(0, 0n, { ...login(0), timestamp: "1970-01-01T00:00:04.000Z" }, NOW);
    h.fold.add(0, 1n, { ...login(0), timestamp: "1970-01-01T00:00:10.000Z" }, NOW);
    expect(h.tick().map((w) => w.timestamp_start)).toEqual(["1970-01-01T00:00:00.000Z"]);
  });
});

describe("emitted records", () => {
  test("pass the LoginWindowStats schema and survive JSON unchanged", () => {
    const h = harness();
    h.add(login(1_000, { device_type: "Android", locale: "" }));
    h.add(login(15_000));
    const [window] = h.tick();
    expect(v.parse(LoginWindowStats, window)).toEqual(window as LoginWindowStats);
    expect(JSON.parse(JSON.stringify(window))).toEqual(window);
  });

  test("later windows do not change a record already emitted", () => {
    const h = harness();
    h.add(login(1_000, { device_type: "android", ip: "" }));
    h.add(login(15_000, { device_type: "android", ip: "" }));
    const [first] = h.tick();
    const snapshot = structuredClone(first);
    h.add(login(30_000, { device_type: "android", ip: "" }));
    expect(h.tick()).toHaveLength(1);
    expect(first).toEqual(snapshot as LoginWindowStats);
  });
});

describe("positions", () => {
  test("the first offset still needed: an open window's or a pending late event's, else the next offset", () => {
    const h = harness();
    // Nothing read yet: offset 0, or no claim at all.
    expect([0n, undefined]).toContain(h.position());
    h.deadLetter(); // offset 0
    expect(h.position()).toBe(1n);
    h.add(login(1_000)); // 1, window 0
    expect(h.position()).toBe(1n);
    h.add(login(12_000)); // 2, window 10
    h.add(login(20_000)); // 3, window 20: closes window 0
    expect(h.tick()).toHaveLength(1);
    expect(h.position()).toBe(2n);
    expect(h.add(login(5_000))).toBe("late"); // 4
    h.add(login(31_000)); // 5, window 30: closes window 10 with the late event
    expect(h.tick()).toHaveLength(1);
    expect(h.position()).toBe(3n);
    h.add(login(32_000)); // 6
    expect(h.add(login(6_000))).toBe("late"); // 7
    // Windows 20 and 30, then the progress report of a partition with nothing open: none holds a position.
    expect(h.tick(NOW + 60_000).map((w) => w.interval_messages_consumed)).toEqual([1, 2, 0]);
    expect(h.position()).toBe(8n);
  });

  test("is the smallest first offset of all open windows, not the oldest window's", () => {
    const h = harness();
    h.add(login(12_000)); // 0, window 10
    h.add(login(4_000)); // 1, window 0
    expect(h.position()).toBe(0n);
    h.add(login(15_000)); // 2: closes window 0
    expect(h.tick()).toHaveLength(1);
    expect(h.position()).toBe(0n);
  });

  test("a pending late event holds the position until a window carries it", () => {
    const h = harness();
    h.add(login(1_000)); // 0
    h.add(login(15_000)); // 1
    expect(h.tick()).toHaveLength(1);
    // Idle closes window 10, then reports progress up to window 30: nothing is open.
    expect(h.tick(NOW + 30_000).map((w) => w.timestamp_start)).toEqual([iso(10_000), iso(30_000)]);
    expect(h.position()).toBe(2n);
    expect(h.add(login(2_000), 0, NOW + 31_000)).toBe("late"); // 2
    h.deadLetter(); // 3
    expect(h.position()).toBe(2n);
  });
});

describe("restore", () => {
  /** A partition that emitted window 0 (offsets 0 and 2) while window 10 (offsets 1 and 3) stays open. */
  function interrupted() {
    const h = harness();
    h.add(login(1_000, { device_type: "Android", ip: "" })); // 0, window 0
    h.add(login(12_000)); // 1, window 10
    h.add(login(5_000)); // 2, window 0, out of order
    h.add(login(16_000, { device_type: "web" })); // 3, window 10: closes window 0
    const [last] = h.tick();
    if (!last) throw new Error("window 0 did not close");
    return { h, last };
  }

  test("the emitted window says where the partition stands", () => {
    const { h, last } = interrupted();
    expect(last).toEqual(
      closed({
        start: 0,
        messages: 2,
        devices: { android: 1, ios: 1 },
        missing: missing({ ip: 1 }),
        totalMessages: 2,
        totalDevices: { android: 1, ios: 1 },
        totalMissing: missing({ ip: 1 }),
        offsetEnd: 4,
      }),
    );
    expect(h.position()).toBe(1n);
  });

  test("a restored partition that has read nothing yet claims no position past a record still to count", () => {
    // Window 0 was emitted with source_offset_end 4, but offsets 1 and 3 are in window 10, which was still open:
    // the partition must be replayed from offset 1. Until the replay reads a record, the fold cannot know more.
    const { last } = interrupted();
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, last, NOW);
    const position = fold.positions().find((p) => p.partition === 0)?.offset;
    expect({ position, safe: position === undefined || position <= 1n }).toEqual({ position, safe: true });
  });

  test("once the replay reads records, a restored partition's positions are the uninterrupted run's", () => {
    const { h, last } = interrupted();
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, last, NOW);
    const replayed: (bigint | undefined)[] = [];
    for (const [offset, ms] of [
      [1n, 12_000],
      [2n, 5_000],
      [3n, 16_000],
    ] as const) {
      fold.add(0, offset, login(ms), NOW);
      fold.tick(NOW);
      replayed.push(fold.positions()[0]?.offset);
    }
    expect(replayed).toEqual([1n, 1n, 1n]);
    const after: (bigint | undefined)[][] = [];
    for (const ms of [8_000, 26_000, 27_000, 40_000]) {
      h.add(login(ms));
      h.tick();
      fold.add(0, BigInt(after.length + 4), login(ms), NOW);
      fold.tick(NOW);
      after.push([h.position(), fold.positions()[0]?.offset]);
    }
    // 8s is late (window 10, open since offset 1, still holds the position); 26s closes window 10, 40s window 20.
    expect(after).toEqual([
      [1n, 1n],
      [5n, 5n],
      [5n, 5n],
      [7n, 7n],
    ]);
  });

  test("replaying from the committed position skips what the window counted and continues the totals", () => {
    const { h, last } = interrupted();
    const replay = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    // As aggregate restores it: the record read back from logins.stats.
    replay.restore(0, v.parse(LoginWindowStats, JSON.parse(JSON.stringify(last))), NOW + 99_000);
    const rest: [bigint, RawLogin][] = [
      [1n, login(12_000)],
      [2n, login(5_000)],
      [3n, login(16_000, { device_type: "web" })],
      [4n, login(8_000, { device_type: "web" })], // new, for closed window 0: late
      [5n, login(26_000)], // closes window 10
    ];
    const outcomes = rest.map(([offset, event]) => replay.add(0, offset, event, NOW + 99_000));
    expect(outcomes).toEqual(["counted", "already counted", "counted", "late", "counted"]);
    const expected = closed({
      start: 10_000,
      messages: 2,
      devices: { ios: 1, web: 1 },
      late: 1,
      totalMessages: 5,
      totalDevices: { android: 1, ios: 2, web: 1 },
      totalMissing: missing({ ip: 1 }),
      offsetEnd: 6,
    });
    expect(replay.tick(NOW + 99_000)).toEqual([expected]);
    // The uninterrupted fold says the same.
    h.add(login(8_000, { device_type: "web" }));
    h.add(login(26_000));
    expect(h.tick()).toEqual([expected]);
  });

  test("records below source_offset_end in windows after the restored one are counted normally", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    const last = closed({
      start: 0,
      messages: 1,
      devices: { ios: 1 },
      totalMessages: 10,
      totalDevices: { ios: 10 },
      offsetEnd: 50,
    });
    fold.restore(0, last, NOW);
    const step = (offset: bigint, ms: number) => {
      const outcome = fold.add(0, offset, login(ms), NOW);
      return { outcome, emitted: fold.tick(NOW) };
    };
    expect(step(40n, 9_000)).toEqual({ outcome: "already counted", emitted: [] });
    expect(step(41n, 11_000)).toEqual({ outcome: "counted", emitted: [] });
    expect(step(45n, 12_000)).toEqual({ outcome: "counted", emitted: [] });
    expect(step(50n, 2_000)).toEqual({ outcome: "late", emitted: [] });
    expect(step(51n, 31_000)).toEqual({
      outcome: "counted",
      emitted: [
        closed({
          start: 10_000,
          messages: 2,
          devices: { ios: 2 },
          late: 1,
          totalMessages: 13,
          totalDevices: { ios: 12 },
          offsetEnd: 52,
        }),
      ],
    });
  });

  test("restoring does not alias the restored record's histograms", () => {
    const { last } = interrupted();
    const snapshot = structuredClone(last);
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, last, NOW);
    fold.add(0, 4n, login(11_000, { device_type: "android", ip: "" }), NOW);
    fold.add(0, 5n, login(40_000), NOW);
    expect(fold.tick(NOW)).toHaveLength(1);
    expect(last).toEqual(snapshot);
  });

  test("restoring one partition leaves the others as they were", () => {
    const h = harness([0, 1]);
    h.add(login(1_000), 1);
    h.fold.restore(0, undefined, NOW);
    h.add(login(30_000), 1);
    expect(h.tick().map((w) => [w.partition, w.interval_messages_consumed])).toEqual([[1, 1]]);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The design's key guarantee: a crash at any point yields the same final windows as a crash-free run.

/** One input record: a login event, or a dead letter (no event) that only moves the position. */
interface InputRecord {
  partition: number;
  offset: bigint;
  event: RawLogin | undefined;
}

const PARTITIONS = [0, 1];
const COMMIT_EVERY = 7;

/**
 * A random interleaved stream over two partitions: event time mostly moves forward, some events are out of order
 * within the grace period, a few are far behind (late once their window has closed), some are dead letters,
 * and fields are randomly missing or oddly cased. Each partition ends with an event far ahead, so every window
 * before it closes and every late count is emitted.
 */
function randomStream(seed: number): InputRecord[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const clock = PARTITIONS.map(() => Math.floor(next() * 20_000));
  const offsets = PARTITIONS.map(() => 0n);
  const out: InputRecord[] = [];
  const length = 30 + Math.floor(next() * 120);
  for (let i = 0; i < length; i++) {
    const partition = pick(PARTITIONS);
    const offset = offsets[partition] as bigint;
    offsets[partition] = offset + 1n;
    const roll = next();
    if (roll < 0.04) {
      out.push({ partition, offset, event: undefined });
      continue;
    }
    const now = (clock[partition] as number) + Math.floor(next() * 2_500);
    clock[partition] = now;
    const time = roll < 0.2 ? now - Math.floor(next() * 6_000) : roll < 0.28 ? now - Math.floor(next() * 40_000) : now;
    const field = () => pick(["x", "x", "x", "x", null, "", " ", undefined]);
    out.push({
      partition,
      offset,
      event: {
        event_id: `s${seed}-${partition}-${offset}`,
        user_id: `user-${Math.floor(next() * 5)}`,
        timestamp: iso(Math.max(0, time)),
        ingested_at: iso(Math.max(0, time)),
        app_version: field(),
        device_type: pick(["ios", "Android", "android ", "WEB", null, "", undefined, "kaios"]),
        ip: field(),
        locale: field(),
        device_id: field(),
      },
    });
  }
  for (const partition of PARTITIONS) {
    const offset = offsets[partition] as bigint;
    const time = Math.max(...clock) + 60_000;
    out.push({ partition, offset, event: { ...login(time), event_id: `s${seed}-${partition}-end` } });
  }
  return out;
}

const key = (w: LoginWindowStats) => `${w.timestamp_start}/${w.partition}`;

/** What persist keeps: the last record of each (window, partition), in key order. */
function table(windows: Map<string, LoginWindowStats>) {
  return [...windows.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

interface RunOptions {
  /**
   * Which windows survive a crash: those emitted by the last commit, or every one emitted (aggregate produces a
   * batch's windows before committing its offsets, so a crash in between leaves them behind).
   */
  durable: "at commit" | "all emitted";
  /** Every partition as the process starts (the fold's plain contract), or just before its first record (as aggregate does). */
  restore: "at start" | "on first record";
  /**
   * A tick after every record, or one per batch of COMMIT_EVERY records, as aggregate ticks once per fetched
   * batch (batches after a restart start wherever the replay starts). Per batch, "all emitted" also skips every
   * other commit, as when a commit fails after the batch's windows were produced.
   */
  ticks?: "every record" | "every batch";
}

/**
 * Runs the stream the way aggregate does, with wall-clock time frozen (so only event time closes windows) and a
 * tick after every record. A batch of COMMIT_EVERY records ends with a commit of `positions()`. At each crash
 * point (counted in records consumed, replays included) the process dies: the next one starts a new fold,
 * restores each partition from its last durable window, and the broker redelivers from the committed positions.
 * Returns what persist would hold.
 */
function run(stream: InputRecord[], crashes: number[], options: RunOptions) {
  const persisted = new Map<string, LoginWindowStats>();
  const emitted = new Map<number, LoginWindowStats>();
  let committedWindows = new Map<number, LoginWindowStats>();
  const committed = new Map(PARTITIONS.map((partition) => [partition, 0n]));
  const pending = [...crashes].sort((a, b) => a - b);
  let consumed = 0;
  let perBatch = options.ticks === "every batch" ? 0 : undefined;
  const flush = (fold: WindowFold) => {
    for (const window of fold.tick(NOW)) {
      persisted.set(key(window), window);
      emitted.set(window.partition, window);
    }
  };
  for (;;) {
    const fold: WindowFold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    const restore = (partition: number) =>
      fold.restore(partition, (options.durable === "at commit" ? committedWindows : emitted).get(partition), NOW);
    if (options.restore === "at start") PARTITIONS.forEach(restore);
    const redelivered = stream.filter((r) => r.offset >= (committed.get(r.partition) ?? 0n));
    let crashed = false;
    let inBatch = 0;
    for (const record of redelivered) {
      if (pending[0] === consumed) {
        pending.shift();
        crashed = true;
        break;
      }
      consumed++;
      if (!fold.partitions().includes(record.partition)) restore(record.partition);
      fold.advance(record.partition, record.offset);
      if (record.event) fold.add(record.partition, record.offset, record.event, NOW);
      if (perBatch === undefined) flush(fold);
      if (++inBatch === COMMIT_EVERY) {
        inBatch = 0;
        if (perBatch !== undefined) flush(fold);
        if (perBatch === undefined || options.durable === "at commit" || perBatch++ % 2 === 0) {
          for (const { partition, offset } of fold.positions()) committed.set(partition, offset);
          committedWindows = new Map(emitted);
        }
      }
    }
    if (!crashed) {
      flush(fold);
      return table(persisted);
    }
  }
}

/** Seeds and crash points where the crashed run differs from the crash-free one; [] when the guarantee holds. */
function failures(options: RunOptions, crashesPerRun: number, seeds: number, trials = 5) {
  const found: { seed: number; crashes: number[] }[] = [];
  for (let seed = 1; seed <= seeds; seed++) {
    const stream = randomStream(seed);
    const expected = run(stream, [], options);
    const next = random(seed * 7919);
    for (let trial = 0; trial < trials; trial++) {
      const crashes = Array.from({ length: crashesPerRun }, () => Math.floor(next() * (stream.length * 1.5)));
      if (!Bun.deepEquals(run(stream, crashes, options), expected, true)) found.push({ seed, crashes });
    }
  }
  return found;
}

const AT_START_ALL_EMITTED: RunOptions = { durable: "all emitted", restore: "at start" };

describe("a crash at any point gives the same windows as no crash", () => {
  test("the crash-free run accounts for every event exactly once", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const stream = randomStream(seed);
      const windows = run(stream, [], AT_START_ALL_EMITTED).map(([, w]) => w);
      for (const partition of PARTITIONS) {
        const mine = windows.filter((w) => w.partition === partition);
        // Every event but the closing one (whose window stays open) is in a window or a late count.
        const events = stream.filter((r) => r.partition === partition && r.event).length - 1;
        const counted = mine.reduce((sum, w) => sum + w.interval_messages_consumed + w.late_messages, 0);
        expect({ seed, partition, counted }).toEqual({ seed, partition, counted: events });
        expect({ seed, partition, total: mine.at(-1)?.total_messages_consumed }).toEqual({
          seed,
          partition,
          total: events,
        });
      }
    }
  });

  test("the random streams exercise what the guarantee is about", () => {
    let late = 0;
    let windows = 0;
    let outOfOrder = 0;
    for (let seed = 1; seed <= 200; seed++) {
      const out = run(randomStream(seed), [], AT_START_ALL_EMITTED).map(([, w]) => w);
      windows += out.length;
      late += out.reduce((sum, w) => sum + w.late_messages, 0);
      const last = new Map<number, string>();
      for (const record of randomStream(seed)) {
        const time = record.event?.timestamp;
        if (!time) continue;
        if (time < (last.get(record.partition) ?? "")) outOfOrder++;
        last.set(record.partition, time);
      }
    }
    expect(windows).toBeGreaterThan(200 * 5);
    expect(late).toBeGreaterThan(200);
    expect(outOfOrder).toBeGreaterThan(200 * 5);
  });

  test("one crash, restoring the windows durable at the last commit (200 seeds x 5 crash points)", () => {
    expect(failures({ durable: "at commit", restore: "at start" }, 1, 200)).toEqual([]);
  });

  test("one crash, restoring windows emitted after the last commit too (200 seeds x 5 crash points)", () => {
    expect(failures({ durable: "all emitted", restore: "at start" }, 1, 200)).toEqual([]);
  });

  test("a crash at every point of one stream", () => {
    const stream = randomStream(4242);
    for (const durable of ["at commit", "all emitted"] as const) {
      const options: RunOptions = { durable, restore: "at start" };
      const expected = run(stream, [], options);
      for (let crash = 0; crash <= stream.length; crash++) {
        const same = Bun.deepEquals(run(stream, [crash], options), expected, true);
        expect({ durable, crash, same }).toEqual({ durable, crash, same: true });
      }
    }
  });

  test("several crashes, each partition restored just before its first record, as aggregate does (200 x 5 x 3)", () => {
    expect(failures({ durable: "at commit", restore: "on first record" }, 3, 200)).toEqual([]);
    expect(failures({ durable: "all emitted", restore: "on first record" }, 3, 200)).toEqual([]);
  });

  test("as aggregate runs the fold: a tick per fetched batch, restore on first record (200 x 5 x 1 and x 3)", () => {
    for (const durable of ["at commit", "all emitted"] as const) {
      const options: RunOptions = { durable, restore: "on first record", ticks: "every batch" };
      expect({ durable, crashes: 1, failed: failures(options, 1, 200) }).toEqual({ durable, crashes: 1, failed: [] });
      expect({ durable, crashes: 3, failed: failures(options, 3, 200) }).toEqual({ durable, crashes: 3, failed: [] });
    }
  });

  test("several crashes, every partition restored as the process starts (200 seeds x 5 runs of 3 crashes)", () => {
    // A commit before a restored partition has read anything must not skip its records in still-open windows.
    expect(failures({ durable: "at commit", restore: "at start" }, 3, 200)).toEqual([]);
    expect(failures({ durable: "all emitted", restore: "at start" }, 3, 200)).toEqual([]);
  });
});

describe("windows depend on the records, not on how often tick is called", () => {
  // aggregate ticks once per fetched batch, and a restart fetches differently sized batches from the backlog:
  // for a crash to give the same windows as no crash, the batching between ticks must not change them.

  /** The windows of `events` (seconds after T0) on one partition, ticking after the records at `tickAfter`. */
  function windowsOf(events: number[], tickAfter: (index: number) => boolean) {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, undefined, NOW);
    const out: LoginWindowStats[] = [];
    events.forEach((seconds, i) => {
      fold.add(0, BigInt(i), login(seconds * 1000), NOW);
      if (tickAfter(i)) out.push(...fold.tick(NOW));
    });
    return out;
  }

  test("the smallest case: a straggler fetched in the same batch as the event that closed its window", () => {
    // 16s carries the watermark past 0s-10s's end + grace, so 9s, read after it, is late...
    const everyRecord = windowsOf([1, 16, 9, 30], () => true);
    expect(everyRecord.map((w) => [w.interval_messages_consumed, w.late_messages])).toEqual([
      [1, 0],
      [1, 1],
    ]);
    // ... whether or not a tick ran between the two (as when a restart fetches 1s..30s in one batch).
    expect(windowsOf([1, 16, 9, 30], (i) => i === 0 || i === 3)).toEqual(everyRecord);
    expect(windowsOf([1, 16, 9, 30], (i) => i === 3)).toEqual(everyRecord);
  });

  test("random streams: a tick after every record, after every 7th, or once at the end give the same windows", () => {
    const differ: number[] = [];
    for (let seed = 1; seed <= 200; seed++) {
      const stream = randomStream(seed);
      const ticking = (every: number) => {
        const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
        for (const partition of PARTITIONS) fold.restore(partition, undefined, NOW);
        const out: LoginWindowStats[] = [];
        stream.forEach((record, i) => {
          fold.advance(record.partition, record.offset);
          if (record.event) fold.add(record.partition, record.offset, record.event, NOW);
          if ((i + 1) % every === 0 || i === stream.length - 1) out.push(...fold.tick(NOW));
        });
        return out.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
      };
      const reference = ticking(1);
      if (!Bun.deepEquals(ticking(7), reference, true) || !Bun.deepEquals(ticking(stream.length), reference, true)) {
        differ.push(seed);
      }
    }
    expect(differ).toEqual([]);
  });
});

describe("re-deliveries", () => {
  test("an event id seen twice in a window counts once (the producer wrote it twice)", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, undefined, NOW);
    const event = login(1_000);
    expect(fold.add(0, 0n, event, NOW)).toBe("counted");
    expect(fold.add(0, 70n, event, NOW)).toBe("duplicate");
    fold.add(0, 71n, login(30_000), NOW);
    const [first] = fold.tick(NOW);
    expect(first?.interval_messages_consumed).toBe(1);
    expect(first?.total_messages_consumed).toBe(1);
  });

  test("after a restore only the replay from the committed offset is in sequence; stale copies are not", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, undefined, NOW, 40n);
    // Fetched before the rebalance, delivered after it: ahead of the replay, so it must wait for it.
    expect(fold.inSequence(0, 45n)).toBe(false);
    expect(fold.inSequence(0, 40n)).toBe(true);
    fold.add(0, 40n, login(1_000), NOW);
    expect(fold.inSequence(0, 40n)).toBe(false);
    expect(fold.inSequence(0, 41n)).toBe(true);
    expect(fold.positions()).toEqual([{ partition: 0, offset: 40n }]);
  });

  test("without a known committed offset, the first record starts the sequence", () => {
    const fold = createWindowFold({ windowMs: WINDOW, graceMs: GRACE });
    fold.restore(0, undefined, NOW);
    expect(fold.inSequence(0, 7n)).toBe(true);
  });
});
