/**
 * The compiled validators against valibot: on random valid and invalid inputs both give the same verdict, and on
 * valid ones the same output.
 */
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import * as v from "valibot";
import { compileSchema, INVALID } from "../../shared/compiled.ts";
import {
  EnrichedLocation,
  EnrichedVehicle,
  LocationEvent,
  LoginEvent,
  LoginInterval,
  LoginWindowStats,
  RawLocation,
  RawLogin,
  RawVehicle,
  VehicleEvent,
} from "../../shared/schemas.ts";

const enrichment = {
  timezone: "America/Argentina/Cordoba",
  utc_offset_minutes: -180,
  local_time: "2023-09-11T21:45:51.000-03:00",
};
const ingested = { event_id: "01a23189-0035-7616-8ba7-73ad0154fbc7", ingested_at: "2024-01-29T18:08:17.444Z" };
const location = { user_id: "u-1", timestamp: "2024-01-29T18:08:13.000Z", lat: 29.69, long: 75.01 };
const vehicle = {
  vehicle_id: "van-7",
  timestamp: 1694479551,
  lat: -31.4,
  long: -64.2,
  speed: 42.5,
  heading: 270,
  metadata: { driver: "d-12", odometer_km: 80211.4 },
};
const login = {
  user_id: "u-2",
  timestamp: "2024-01-31 12:00:00.123456",
  app_version: "2.3.0",
  device_type: null,
  ip: "",
};
const counts = { ios: 3, android: 1 };
const windowStats = {
  timestamp_start: "2024-01-31T12:00:00Z",
  timestamp_end: "2024-01-31T12:00:10Z",
  partition: 2,
  interval_messages_consumed: 4,
  interval_device_type_count: counts,
  interval_missing_field_count: { ip: 1 },
  late_messages: 0,
  total_messages_consumed: 40,
  total_device_type_count: counts,
  total_missing_field_count: {},
  source_offset_end: 123,
};
const interval = {
  timestamp_start: 1706702400,
  timestamp_end: 1706702410,
  interval_messages_consumed: 4,
  total_messages_consumed: 40,
  interval_device_type_count: counts,
  interval_missing_field_count: {},
  total_device_type_count: counts,
  total_missing_field_count: { ip: 2 },
  late_messages: 1,
  source_offsets: { "0": 12 },
  source_progress: { "0": 1706702410 },
};

/** Each schema with a value it accepts, the starting point of the mutations. */
const CASES: [string, v.GenericSchema, Record<string, unknown>][] = [
  ["LocationEvent", LocationEvent, location],
  ["RawLocation", RawLocation, { ...location, ...ingested }],
  ["EnrichedLocation", EnrichedLocation, { ...location, ...ingested, ...enrichment }],
  ["LoginEvent", LoginEvent, login],
  ["RawLogin", RawLogin, { ...login, event_id: "e.1" }],
  ["VehicleEvent", VehicleEvent, vehicle],
  ["RawVehicle", RawVehicle, { ...vehicle, ingested_at: 1694479552000 }],
  ["EnrichedVehicle", EnrichedVehicle, { ...vehicle, ...ingested, ...enrichment }],
  ["LoginWindowStats", LoginWindowStats, windowStats],
  ["LoginInterval", LoginInterval, interval],
];

/** Values near the schemas' edges: limits, forms of time, text PostgreSQL cannot hold, keys that reach prototypes. */
const EDGES = [
  "",
  " ",
  "  padded  ",
  "\u0000",
  "a\uD800",
  "x".repeat(257),
  "2024-01-31T12:00:00Z",
  "2024-02-30T00:00:00Z",
  "2024-01-31 12:00:00.1234567",
  "2024-01-31T12:00:00.123456789+05:30",
  "2024-01-31T12:00:00+2400",
  "2101-01-01T00:00:00Z",
  "1694479551",
  "1694479551.5",
  "2024-01-29T23:38:13.000+05:30",
  "ok-id_1:2.3",
  "-starts-badly",
  "__proto__",
  "constructor",
  "12",
  0,
  -0,
  90,
  90.0001,
  -180,
  180.5,
  500,
  500.1,
  360,
  359.99,
  1440,
  1441,
  -1,
  0.5,
  1e11,
  1e12,
  Number.POSITIVE_INFINITY,
  Number.NaN,
  null,
  undefined,
  true,
];

const scalar = fc.oneof(
  fc.constantFrom(...EDGES),
  fc.string({ maxLength: 20 }),
  fc.double(),
  fc.integer({ min: -2_000, max: 2_000_000_000_000 }),
);
const value = fc.oneof(
  { weight: 4, arbitrary: scalar },
  { weight: 1, arbitrary: fc.array(scalar, { maxLength: 3 }) },
  {
    weight: 1,
    arbitrary: fc.dictionary(fc.oneof(fc.string({ maxLength: 4 }), fc.constantFrom(...EDGES.map(String))), scalar, {
      maxKeys: 18,
    }),
  },
);

/** One change to an event: a field set to another value, a field removed, or one added. */
const mutation = (fields: string[]) =>
  fc.record({
    field: fc.oneof(fc.constantFrom(...fields), fc.constantFrom("extra", "__proto__", "constructor")),
    remove: fc.boolean(),
    value,
    // A change inside a nested object (metadata, counts) rather than of the field itself.
    nested: fc.option(fc.oneof(fc.string({ maxLength: 3 }), fc.constantFrom(...EDGES.map(String))), { nil: undefined }),
  });

type Mutation = { field: string; remove: boolean; value: unknown; nested: string | undefined };

function mutate(base: Record<string, unknown>, changes: Mutation[]) {
  const event: Record<string, unknown> = structuredClone(base);
  for (const { field, remove, value, nested } of changes) {
    const inner = event[field];
    if (nested !== undefined && inner && typeof inner === "object") {
      const copy = { ...(inner as Record<string, unknown>) };
      if (remove) delete copy[nested];
      else copy[nested] = value;
      event[field] = copy;
    } else if (remove) delete event[field];
    else event[field] = value;
  }
  return event;
}

/** Both verdicts agree; on acceptance, both outputs too. */
function agree(schema: v.GenericSchema, check: (input: unknown) => unknown, input: unknown) {
  const expected = v.safeParse(schema, input, { abortPipeEarly: true });
  const actual = check(input);
  expect(actual === INVALID).toBe(!expected.success);
  if (expected.success) expect(actual).toStrictEqual(expected.output);
}

describe("compiled validators agree with valibot", () => {
  for (const [name, schema, base] of CASES) {
    const check = compileSchema(schema);

    test(`${name}: its fixture is accepted with the same output`, () => {
      expect(check(base)).not.toBe(INVALID);
      agree(schema, check, base);
    });

    test(`${name}: mutated events, as objects and as JSON parses them`, () => {
      fc.assert(
        fc.property(fc.array(mutation(Object.keys(base)), { maxLength: 3 }), (changes) => {
          const event = mutate(base, changes);
          agree(schema, check, event);
          // JSON.parse keeps "__proto__" as an own key, and drops undefined and non-finite numbers.
          const text = JSON.stringify(event);
          if (text !== undefined) agree(schema, check, JSON.parse(text));
        }),
        { numRuns: 3_000 },
      );
    });

    test(`${name}: anything at all`, () => {
      fc.assert(
        fc.property(fc.anything(), (input) => agree(schema, check, input)),
        { numRuns: 500 },
      );
    });
  }
});
