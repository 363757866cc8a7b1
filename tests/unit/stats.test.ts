import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type Aggregator,
  deviceTypes,
  type LoginFields,
  loginStats,
  messageCount,
  missingFields,
  recompute,
  type TimedLogin,
  windowStart,
} from "../../aggregate/stats.ts";
import { createWindowFold } from "../../aggregate/windows.ts";
import { OPTIONAL_LOGIN_FIELDS, type OptionalLoginField, type RawLogin } from "../../shared/schemas.ts";

const fold = <A>(aggregator: Aggregator<A>, events: LoginFields[]): A =>
  aggregator.result(events.reduce((acc, event) => aggregator.add(acc, event), aggregator.initial()));

/** Values that hit every branch: blank in several ways, device names in several spellings, and anything else. */
const value = fc.oneof(
  fc.constantFrom(null, "", " ", "\t\n", "\u00a0", "iOS", " ios ", "ANDROID", "web", "2.3.0"),
  fc.string({ maxLength: 6 }),
);
/** A login whose optional fields are each absent, null or a string. */
const loginArb: fc.Arbitrary<LoginFields> = fc.record(
  Object.fromEntries(OPTIONAL_LOGIN_FIELDS.map((field) => [field, value])) as Record<OptionalLoginField, typeof value>,
  { requiredKeys: [] },
);
const loginsArb = fc.array(loginArb, { maxLength: 40 });

const aggregators: [string, Aggregator<unknown>][] = [
  ["messageCount", messageCount],
  ["deviceTypes", deviceTypes],
  ["missingFields", missingFields],
  ["loginStats", loginStats],
];

describe.each(aggregators)("%s", (_, aggregator) => {
  test("merging the folds of two lists is the fold of both lists", () => {
    fc.assert(
      fc.property(loginsArb, loginsArb, (a, b) => {
        expect(aggregator.merge(fold(aggregator, a), fold(aggregator, b))).toEqual(fold(aggregator, [...a, ...b]));
      }),
    );
  });

  test("initial() is the identity of merge, on either side", () => {
    fc.assert(
      fc.property(loginsArb, (events) => {
        const folded = fold(aggregator, events);
        expect(aggregator.merge(aggregator.initial(), folded)).toEqual(folded);
        expect(aggregator.merge(folded, aggregator.initial())).toEqual(folded);
      }),
    );
  });

  test("merge groups in any order", () => {
    fc.assert(
      fc.property(loginsArb, loginsArb, loginsArb, (a, b, c) => {
        const [x, y, z] = [a, b, c].map((events) => fold(aggregator, events));
        expect(aggregator.merge(aggregator.merge(x, y), z)).toEqual(aggregator.merge(x, aggregator.merge(y, z)));
        expect(aggregator.merge(x, y)).toEqual(aggregator.merge(y, x));
      }),
    );
  });

  test("add and merge leave their inputs as they were", () => {
    fc.assert(
      fc.property(loginsArb, loginArb, (events, event) => {
        const folded = fold(aggregator, events);
        const copy = structuredClone(folded);
        aggregator.add(folded, event);
        aggregator.merge(folded, folded);
        expect(folded).toEqual(copy);
      }),
    );
  });
});

describe("messageCount", () => {
  test("counts every login, whatever it holds", () => {
    expect(fold(messageCount, [{}, { device_type: "ios" }, { ip: null }])).toBe(3);
    expect(messageCount.initial()).toBe(0);
  });
});

describe("deviceTypes", () => {
  test("trims and lower-cases device types, so spellings of one device share a key", () => {
    expect(fold(deviceTypes, [{ device_type: "iOS" }, { device_type: " ios\t" }, { device_type: "Android" }])).toEqual({
      ios: 2,
      android: 1,
    });
  });

  test("ignores absent, null, empty and whitespace-only device types", () => {
    expect(fold(deviceTypes, [{}, { device_type: null }, { device_type: "" }, { device_type: " \n\u00a0" }])).toEqual(
      {},
    );
  });
});

describe("missingFields", () => {
  test("has a key for every optional field, at 0 before any login", () => {
    expect(missingFields.initial()).toEqual(Object.fromEntries(OPTIONAL_LOGIN_FIELDS.map((field) => [field, 0])));
    expect(Object.keys(fold(missingFields, [{ app_version: "1", device_type: "ios" }])).sort()).toEqual(
      [...OPTIONAL_LOGIN_FIELDS].sort(),
    );
  });

  test("counts absent, null, empty and whitespace-only values as missing, per field", () => {
    const events: LoginFields[] = [
      { app_version: "2.3.0", device_type: "ios", ip: "192.0.2.1", locale: "en_US", device_id: "d1" },
      {},
      { app_version: null, device_type: null, ip: null, locale: null, device_id: null },
      { app_version: "", device_type: "", ip: "", locale: "", device_id: "" },
      { app_version: "   ", device_type: "\t", ip: " \n ", locale: " ", device_id: "\u00a0" },
      { app_version: "2.3.0", device_type: "web", ip: "", locale: null },
    ];
    expect(fold(missingFields, events)).toEqual({ app_version: 4, device_type: 4, ip: 5, locale: 5, device_id: 5 });
  });
});

describe("loginStats", () => {
  test("is the three statistics side by side", () => {
    const events: LoginFields[] = [{ device_type: "Web", app_version: "1" }, { device_type: " " }];
    expect(fold(loginStats, events)).toEqual({
      messages: fold(messageCount, events),
      devices: fold(deviceTypes, events),
      missing: fold(missingFields, events),
    });
  });
});

describe("windowStart", () => {
  test("aligns windows to the epoch, start inclusive, end exclusive", () => {
    const t = Date.UTC(2024, 0, 15, 12, 0, 0);
    expect(windowStart(t, 10_000)).toBe(t);
    expect(windowStart(t + 9_999, 10_000)).toBe(t);
    expect(windowStart(t + 10_000, 10_000)).toBe(t + 10_000);
    expect(windowStart(t - 1, 10_000)).toBe(t - 10_000);
  });
});

describe("recompute", () => {
  const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);
  const at = (ms: number) => new Date(T0 + ms).toISOString();

  test("gives each window the statistics of its events, keyed by ISO start, earliest first", () => {
    const events: TimedLogin[] = [
      { timestamp: at(12_000), device_type: "Android", app_version: "1", ip: "x", locale: "ru", device_id: "d" },
      { timestamp: at(1_000), device_type: "iOS" },
      { timestamp: at(9_999), device_type: "" },
      // A `logins` row's event_time is a Date.
      { timestamp: new Date(T0 + 10_000), device_type: "ios", app_version: null },
    ];
    const windows = recompute(events, 10_000);
    expect([...windows.keys()]).toEqual([at(0), at(10_000)]);
    expect(windows.get(at(0))).toEqual({
      messages: 2,
      devices: { ios: 1 },
      missing: { app_version: 2, device_type: 1, ip: 2, locale: 2, device_id: 2 },
    });
    expect(windows.get(at(10_000))).toEqual({
      messages: 2,
      devices: { android: 1, ios: 1 },
      missing: { app_version: 1, device_type: 0, ip: 1, locale: 1, device_id: 1 },
    });
  });

  test("has no windows for no events", () => {
    expect(recompute([], 10_000).size).toBe(0);
  });

  test("the window fold emits, per window, what recompute expects of its events", () => {
    const windowMs = 10_000;
    const timed = fc.array(fc.tuple(fc.integer({ min: 0, max: 60_000 }), loginArb), { maxLength: 60 });
    fc.assert(
      fc.property(timed, (pairs) => {
        const events: RawLogin[] = pairs
          .sort(([a], [b]) => a - b)
          .map(([ms, fields], i) => ({
            ...fields,
            event_id: `e-${i}`,
            user_id: "u",
            timestamp: at(ms),
            ingested_at: at(ms),
          }));
        const windows = createWindowFold({ windowMs, graceMs: 5_000 });
        windows.restore(0, undefined, 0);
        events.forEach((event, i) => {
          windows.add(0, BigInt(i), event, 0);
        });
        // Closing everything ends with the partition's progress report, an empty window recompute has no key for
        // (at an instant a Date can still hold, since the report is a window of its own).
        const emitted = windows.tick(Date.UTC(9999, 0)).filter((w) => w.interval_messages_consumed > 0);
        const got = new Map(
          emitted.map((w) => [
            w.timestamp_start,
            {
              messages: w.interval_messages_consumed,
              devices: w.interval_device_type_count,
              missing: w.interval_missing_field_count,
            },
          ]),
        );
        expect(got).toEqual(recompute(events, windowMs));
      }),
    );
  });
});
