import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import * as v from "valibot";
import {
  EnrichedLocation,
  EnrichedVehicle,
  EventId,
  LocationEvent,
  LoginEvent,
  LoginWindowStats,
  parseTimestamp,
  RawLocation,
  RawLogin,
  RawVehicle,
  Timestamp,
  VehicleEvent,
} from "../../shared/schemas.ts";

/** The output of `schema` for `input`; fails the test with the issues when it is rejected. */
function accept<S extends v.GenericSchema>(schema: S, input: unknown): v.InferOutput<S> {
  const result = v.safeParse(schema, input);
  if (!result.success) {
    const issues = result.issues.map((issue) => `${v.getDotPath(issue) ?? ""}: ${issue.message}`);
    throw new Error(`expected ${JSON.stringify(input)} to be accepted, got ${issues.join("; ")}`);
  }
  return result.output;
}

/** The dot paths of the issues `schema` reports for `input` (parsed the way ingest does); [] when accepted. */
function rejectedPaths(schema: v.GenericSchema, input: unknown): string[] {
  const result = v.safeParse(schema, input, { abortPipeEarly: true });
  return result.success ? [] : result.issues.map((issue) => v.getDotPath(issue) ?? "");
}

/** The messages of the issues `schema` reports for `input`. */
function messages(schema: v.GenericSchema, input: unknown): string[] {
  const result = v.safeParse(schema, input, { abortPipeEarly: true });
  return result.success ? [] : result.issues.map((issue) => issue.message);
}

const USER = "6f1c1e4e-9a51-4a2b-9d0e-3d7c2a4b5e61";
const SEED_ISO = "2023-09-12T00:45:51.000Z";

/** A mobile client's location payload, verbatim apart from the elided user id. */
const seedLocation = () => ({ timestamp: "1694479551", lat: -31.677696, long: -65.030317, user_id: USER });

/** A login producer's payload, verbatim apart from the elided ids. */
const seedLogin = () => ({
  user_id: USER,
  app_version: "2.3.0",
  device_type: "android",
  ip: "199.172.111.135",
  locale: "RU",
  device_id: "3c1b7a4e-2f0d-4b8e-8a6c-1e5d9f2a7b30",
  timestamp: 1694479551,
});

/** A fleet device's position report, with every optional field. */
const seedVehicle = () => ({
  vehicle_id: "van-0042",
  timestamp: "1694479551",
  lat: -31.41,
  long: -64.18,
  speed: 42.5,
  heading: 271.5,
  metadata: { driver: "d-12", depot: "córdoba-north", odometer_km: 80211.4 },
});

/** Metadata with `n` keys k0, k1, ... */
const metadataOf = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]));

describe("Timestamp", () => {
  test.each([
    ["ISO with Z", "2023-09-12T00:45:51Z", SEED_ISO],
    ["ISO with Z and millis", "2023-09-12T00:45:51.250Z", "2023-09-12T00:45:51.250Z"],
    ["ISO with a positive offset", "2023-09-12T02:45:51+02:00", SEED_ISO],
    ["ISO with a negative offset", "2023-09-11T21:45:51-03:00", SEED_ISO],
    ["ISO with an offset without colon", "2023-09-12T02:45:51+0200", SEED_ISO],
    ["ISO with -00:00", "2023-09-12T00:45:51-00:00", SEED_ISO],
    ["epoch seconds as a number", 1694479551, SEED_ISO],
    ["epoch seconds as a string (seed data)", "1694479551", SEED_ISO],
    ["epoch seconds with a fraction", 1694479551.5, "2023-09-12T00:45:51.500Z"],
    ["epoch seconds as a string with a fraction", "1694479551.5", "2023-09-12T00:45:51.500Z"],
    ["epoch milliseconds as a number", 1694479551123, "2023-09-12T00:45:51.123Z"],
    ["epoch milliseconds as a string", "1694479551123", "2023-09-12T00:45:51.123Z"],
    ["epoch milliseconds before 2001 (between 1e11 and 1e12)", 946684800000, "2000-01-01T00:00:00.000Z"],
    ["epoch milliseconds at the 1e11 switch", 100000000000, "1973-03-03T09:46:40.000Z"],
    ["epoch seconds with surrounding whitespace", " 1694479551 ", SEED_ISO],
    ["epoch zero", 0, "1970-01-01T00:00:00.000Z"],
    ["the last accepted second", 4102444799, "2099-12-31T23:59:59.000Z"],
    ["the last accepted ISO instant", "2099-12-31T23:59:59.999Z", "2099-12-31T23:59:59.999Z"],
    ["the first accepted ISO instant", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z"],
    ["ISO with a space instead of T", "2023-09-12 00:45:51Z", SEED_ISO],
    ["ISO with nanoseconds and a zone", "2023-09-12T00:45:51.123456789Z", "2023-09-12T00:45:51.123Z"],
    ["ISO without a zone, taken as UTC", "2023-09-12T00:45:51", SEED_ISO],
    ["Python's isoformat() of a naive datetime", "2023-09-17T00:32:50.156000", "2023-09-17T00:32:50.156Z"],
    ["Python's str() of a naive datetime", "2023-09-17 00:32:50.156000", "2023-09-17T00:32:50.156Z"],
    ["naive without seconds", "2023-09-12T00:45", "2023-09-12T00:45:00.000Z"],
    ["naive with one fractional digit", "2023-09-12T00:45:51.5", "2023-09-12T00:45:51.500Z"],
  ])("accepts %s and normalises it to ISO UTC", (_, input, expected) => {
    expect(accept(Timestamp, input)).toBe(expected);
  });

  test("normalised output is a millisecond ISO UTC string", () => {
    const out = accept(Timestamp, "2023-09-12T10:45:51+10:00");
    expect(out).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    expect(out).toBe(SEED_ISO);
  });

  test.each([
    ["ISO date only", "2023-09-12"],
    ["naive with more than microseconds", "2023-09-12T00:45:51.1234567"],
    ["naive on a day that does not exist", "2023-02-29 12:00:00"],
    ["naive hour 24", "2023-09-12T24:00:00"],
    ["a two-digit year, which Date.UTC would read as 1970", "0070-01-01T00:00:00Z"],
    ["a two-digit year without a zone", "0099-12-31 23:59:59"],
    ["second 60", "2023-09-12T00:45:60Z"],
    ["two spaces between date and time", "2023-09-12  00:45:51"],
    ["month 13", "2023-13-01T00:00:00Z"],
    ["hour 25", "2023-09-12T25:00:00Z"],
    ["minute 60", "2023-09-12T00:60:00Z"],
    ["offset +99:99", "2023-09-12T00:45:51+99:99"],
    ["before 1970 (ISO)", "1969-12-31T23:59:59Z"],
    ["before 1970 (negative epoch seconds)", -1],
    ["2100 itself (ISO)", "2100-01-01T00:00:00Z"],
    ["2100 itself (epoch seconds)", 4102444800],
    ["after 2100 (epoch milliseconds)", 4102444800000],
    ["a huge number", 1e20],
    ["the largest epoch seconds value (year 5138)", 99999999999],
    ["epoch seconds in exponent notation", "1.694479551e9"],
    ["a negative number in a string", "-1694479551"],
    ["the empty string", ""],
    ["blank", "   "],
    ["garbage", "yesterday"],
    ["NaN", Number.NaN],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["-Infinity", Number.NEGATIVE_INFINITY],
    ["null", null],
    ["a boolean", true],
    ["an object", { seconds: 1694479551 }],
    ["an array", [1694479551]],
  ])("rejects %s", (_, input) => {
    expect(v.safeParse(Timestamp, input).success).toBe(false);
  });

  test("a garbage timestamp reports the expected format, and that a missing zone means UTC", () => {
    expect(messages(Timestamp, "yesterday")).toEqual([
      "must be an ISO-8601 date-time (e.g. 2024-01-31T12:00:00Z; without a zone, such as 2024-01-31 12:00:00.123456, it is taken as UTC), or epoch seconds or milliseconds",
    ]);
  });

  test("an out-of-range timestamp reports the range", () => {
    expect(messages(Timestamp, "1969-12-31T23:59:59Z")).toEqual(["must be between 1970 and 2100"]);
  });

  // Date.UTC rolls impossible calendar dates over to the next month: they must be refused, not stored as another day.
  test.each(["2023-02-29T00:00:00Z", "2023-09-31T00:00:00Z", "2024-02-30T12:00:00Z"])(
    "rejects the nonexistent calendar date %s",
    (input) => {
      expect(v.safeParse(Timestamp, input).success).toBe(false);
    },
  );

  test("with a zone, the instant is the one Date.parse reads (for every zone, fraction and separator)", () => {
    const two = (n: number) => String(n).padStart(2, "0");
    fc.assert(
      fc.property(
        fc.date({ min: new Date("1971-01-01T00:00:00Z"), max: new Date("2098-12-31T00:00:00Z"), noInvalidDate: true }),
        fc.integer({ min: -14 * 60, max: 14 * 60 }),
        fc.constantFrom("", ".5", ".25", ".125"),
        fc.constantFrom("T", " "),
        (date, offsetMinutes, fraction, separator) => {
          const iso = date.toISOString().slice(0, 19).replace("T", separator);
          const zone = `${offsetMinutes < 0 ? "-" : "+"}${two(Math.floor(Math.abs(offsetMinutes) / 60))}:${two(Math.abs(offsetMinutes) % 60)}`;
          const text = `${iso}${fraction}${zone}`;
          expect(parseTimestamp(text)).toBe(Date.parse(text.replace(" ", "T")));
        },
      ),
    );
  });

  test("the normalised form, read digit by digit, gives what the general parser gives for the same text", () => {
    // Every field of YYYY-MM-DDTHH:MM:SS.mmmZ drawn from all its digits, so impossible dates and times are in too;
    // the same text with "+00:00" for "Z" goes through the general parser.
    const digits = (count: number) =>
      fc.string({ unit: fc.constantFrom(..."0123456789"), minLength: count, maxLength: count });
    const near = (count: number, likely: string[]) => fc.oneof(digits(count), fc.constantFrom(...likely));
    fc.assert(
      fc.property(
        fc.tuple(
          near(4, ["1970", "2000", "2023", "2024", "2099", "2100", "1969", "0099", "0100"]),
          near(2, ["01", "02", "09", "12", "00", "13"]),
          near(2, ["01", "28", "29", "30", "31", "00", "32"]),
          near(2, ["00", "23", "24"]),
          near(2, ["00", "59", "60"]),
          near(2, ["00", "59", "60"]),
          digits(3),
        ),
        ([year, month, day, hour, minute, second, ms]) => {
          const text = `${year}-${month}-${day}T${hour}:${minute}:${second}.${ms}Z`;
          const general = parseTimestamp(text.replace("Z", "+00:00"));
          expect(parseTimestamp(text)).toBe(general);
          const result = v.safeParse(Timestamp, text, { abortPipeEarly: true });
          const inRange = general >= Date.UTC(1970, 0, 1) && general < Date.UTC(2100, 0, 1);
          expect(result.success).toBe(inRange);
          if (result.success) expect(result.output).toBe(new Date(general).toISOString());
        },
      ),
      { numRuns: 5_000 },
    );
  });

  test("a timestamp in another form is normalised even right after one in the normalised form", () => {
    expect(v.parse(Timestamp, "2023-09-12T00:45:51.000Z")).toBe("2023-09-12T00:45:51.000Z");
    expect(v.parse(Timestamp, "2023-09-12T03:45:51+03:00")).toBe("2023-09-12T00:45:51.000Z");
    expect(v.parse(Timestamp, 1694479551)).toBe("2023-09-12T00:45:51.000Z");
    expect(v.parse(Timestamp, "2023-09-12T00:45:51.000Z")).toBe("2023-09-12T00:45:51.000Z");
    expect(v.parse(Timestamp, "2024-01-31 12:00:00")).toBe("2024-01-31T12:00:00.000Z");
  });

  test("a garbage timestamp reports one issue without abortPipeEarly", () => {
    const result = v.safeParse(Timestamp, "yesterday");
    expect(result.issues?.map((issue) => issue.message)).toEqual([
      "must be an ISO-8601 date-time (e.g. 2024-01-31T12:00:00Z; without a zone, such as 2024-01-31 12:00:00.123456, it is taken as UTC), or epoch seconds or milliseconds",
    ]);
  });
});

describe("EventId", () => {
  test.each([
    ["a UUID", "018f3c5e-8a2b-7c3d-9e4f-0a1b2c3d4e5f"],
    ["one character", "a"],
    ["letters, digits and . _ : -", "Order_42.retry:3-b"],
    ["exactly 128 characters", "a".repeat(128)],
  ])("accepts %s", (_, id) => {
    expect(accept(EventId, id)).toBe(id);
  });

  test.each([
    ["the empty string", ""],
    ["129 characters", "a".repeat(129)],
    ["a leading dash", "-abc"],
    ["a leading dot", ".abc"],
    ["a space", "a b"],
    ["a slash", "a/b"],
    ["a non-ASCII letter", "café"],
    ["a trailing newline", "abc\n"],
    ["a number", 42],
    ["null", null],
  ])("rejects %s", (_, id) => {
    expect(v.safeParse(EventId, id).success).toBe(false);
  });
});

describe("LocationEvent", () => {
  test("accepts a mobile client's location payload and normalises the string epoch", () => {
    expect(accept(LocationEvent, seedLocation())).toEqual({
      timestamp: SEED_ISO,
      lat: -31.677696,
      long: -65.030317,
      user_id: USER,
    });
  });

  test("keeps a client's event_id", () => {
    expect(accept(LocationEvent, { ...seedLocation(), event_id: "client-1" }).event_id).toBe("client-1");
  });

  test("rejects a bad event_id", () => {
    expect(rejectedPaths(LocationEvent, { ...seedLocation(), event_id: "bad id" })).toEqual(["event_id"]);
    expect(rejectedPaths(LocationEvent, { ...seedLocation(), event_id: null })).toEqual(["event_id"]);
  });

  test.each(["user_id", "timestamp", "lat", "long"])("requires %s", (field) => {
    const input: Record<string, unknown> = seedLocation();
    delete input[field];
    expect(rejectedPaths(LocationEvent, input)).toEqual([field]);
  });

  test.each([
    ["lat", 90],
    ["lat", -90],
    ["lat", 0],
    ["long", 180],
    ["long", -180],
  ])("accepts %s = %p (boundary)", (field, value) => {
    expect(accept(LocationEvent, { ...seedLocation(), [field]: value })[field as "lat" | "long"]).toBe(value);
  });

  test.each([
    ["lat", 90.000001],
    ["lat", -90.000001],
    ["long", 180.000001],
    ["long", -180.000001],
    ["lat", Number.NaN],
    ["long", Number.NaN],
    ["lat", Number.POSITIVE_INFINITY],
    ["long", Number.NEGATIVE_INFINITY],
    ["lat", "-31.677696"],
    ["long", null],
    ["lat", true],
  ])("rejects %s = %p", (field, value) => {
    expect(rejectedPaths(LocationEvent, { ...seedLocation(), [field]: value })).toEqual([field]);
  });

  test("an out-of-range coordinate names its range", () => {
    expect(messages(LocationEvent, { ...seedLocation(), lat: 91 })).toEqual(["must be between -90 and 90"]);
    expect(messages(LocationEvent, { ...seedLocation(), long: -181 })).toEqual(["must be between -180 and 180"]);
  });

  test("trims user_id", () => {
    expect(accept(LocationEvent, { ...seedLocation(), user_id: "  u-1 \t" }).user_id).toBe("u-1");
  });

  test.each([
    ["empty", ""],
    ["blank", "   "],
    ["257 characters", "u".repeat(257)],
    ["a number", 42],
    ["null", null],
  ])("rejects a user_id that is %s", (_, userId) => {
    expect(rejectedPaths(LocationEvent, { ...seedLocation(), user_id: userId })).toEqual(["user_id"]);
  });

  test("accepts a user_id of exactly 256 characters", () => {
    const userId = "u".repeat(256);
    expect(accept(LocationEvent, { ...seedLocation(), user_id: userId }).user_id).toBe(userId);
  });

  test("rejects an unknown field by name", () => {
    expect(rejectedPaths(LocationEvent, { ...seedLocation(), speed: 12 })).toEqual(["speed"]);
  });

  test("rejects ingest's own fields from a client", () => {
    expect(rejectedPaths(LocationEvent, { ...seedLocation(), ingested_at: SEED_ISO })).toEqual(["ingested_at"]);
  });

  test.each([
    ["null", null],
    ["a string", "location"],
    ["a number", 1],
  ])("rejects %s as the event", (_, input) => {
    expect(messages(LocationEvent, input)).toEqual(["must be a JSON object"]);
    expect(rejectedPaths(LocationEvent, input)).toEqual([""]);
  });

  test("rejects an array as the event", () => {
    expect(v.safeParse(LocationEvent, [seedLocation()]).success).toBe(false);
    expect(v.safeParse(LocationEvent, []).success).toBe(false);
  });

  // An array passes valibot's "is an object" check: without a rule of its own it would be reported as
  // "user_id/timestamp/lat/long missing" plus "0 is not a known field".
  test("reports an array as the event with one root issue", () => {
    expect(rejectedPaths(LocationEvent, [seedLocation()])).toEqual([""]);
  });

  test("reports every bad field of one event", () => {
    const paths = v
      .safeParse(LocationEvent, { user_id: "", timestamp: "soon", lat: 100, long: 200, extra: 1 })
      .issues?.map((issue) => v.getDotPath(issue));
    expect(new Set(paths)).toEqual(new Set(["user_id", "timestamp", "lat", "long", "extra"]));
  });
});

describe("LoginEvent", () => {
  test("accepts a login producer's payload and normalises the numeric epoch", () => {
    expect(accept(LoginEvent, seedLogin())).toEqual({ ...seedLogin(), timestamp: SEED_ISO });
  });

  test("only user_id and timestamp are required", () => {
    expect(accept(LoginEvent, { user_id: USER, timestamp: "1694479551" })).toEqual({
      user_id: USER,
      timestamp: SEED_ISO,
    });
  });

  test.each(["user_id", "timestamp"])("requires %s", (field) => {
    const input: Record<string, unknown> = seedLogin();
    delete input[field];
    expect(rejectedPaths(LoginEvent, input)).toEqual([field]);
  });

  test.each(["app_version", "device_type", "ip", "locale", "device_id"])(
    "keeps %s when null or empty (the aggregate counts it as missing)",
    (field) => {
      expect(accept(LoginEvent, { ...seedLogin(), [field]: null })).toHaveProperty(field, null);
      expect(accept(LoginEvent, { ...seedLogin(), [field]: "" })).toHaveProperty(field, "");
    },
  );

  test.each(["app_version", "device_type", "ip", "locale", "device_id"])("rejects %s of the wrong type", (field) => {
    expect(rejectedPaths(LoginEvent, { ...seedLogin(), [field]: 230 })).toEqual([field]);
    expect(rejectedPaths(LoginEvent, { ...seedLogin(), [field]: false })).toEqual([field]);
    expect(rejectedPaths(LoginEvent, { ...seedLogin(), [field]: { v: "2.3.0" } })).toEqual([field]);
    expect(messages(LoginEvent, { ...seedLogin(), [field]: 230 })).toEqual(["must be a string"]);
  });

  test("rejects an optional field over 256 characters", () => {
    expect(rejectedPaths(LoginEvent, { ...seedLogin(), device_id: "d".repeat(257) })).toEqual(["device_id"]);
    expect(accept(LoginEvent, { ...seedLogin(), device_id: "d".repeat(256) }).device_id).toHaveLength(256);
  });

  test("rejects an unknown field by name", () => {
    expect(rejectedPaths(LoginEvent, { ...seedLogin(), os: "android 14" })).toEqual(["os"]);
  });

  test("a login's timestamp follows the same rules as a location's", () => {
    expect(rejectedPaths(LoginEvent, { ...seedLogin(), timestamp: "2023-09-12" })).toEqual(["timestamp"]);
    expect(accept(LoginEvent, { ...seedLogin(), timestamp: "2023-09-12 00:45:51" }).timestamp).toBe(SEED_ISO);
    expect(accept(LoginEvent, { ...seedLogin(), timestamp: "2023-09-12T03:45:51+03:00" }).timestamp).toBe(SEED_ISO);
  });
});

describe("VehicleEvent", () => {
  test("accepts a position report and normalises the string epoch, keeping speed, heading and metadata", () => {
    expect(accept(VehicleEvent, seedVehicle())).toEqual({ ...seedVehicle(), timestamp: SEED_ISO });
  });

  test("heading, metadata and event_id are optional", () => {
    const { heading: _, metadata: __, ...required } = seedVehicle();
    expect(accept(VehicleEvent, required)).toEqual({ ...required, timestamp: SEED_ISO });
    expect(accept(VehicleEvent, { ...required, event_id: "client-1" }).event_id).toBe("client-1");
  });

  test.each(["vehicle_id", "timestamp", "lat", "long", "speed"])("requires %s", (field) => {
    const input: Record<string, unknown> = seedVehicle();
    delete input[field];
    expect(rejectedPaths(VehicleEvent, input)).toEqual([field]);
  });

  test("a vehicle's id follows the user_id rules: trimmed, 1 to 256 characters, no NUL", () => {
    expect(accept(VehicleEvent, { ...seedVehicle(), vehicle_id: "  van-1\t" }).vehicle_id).toBe("van-1");
    expect(accept(VehicleEvent, { ...seedVehicle(), vehicle_id: "v".repeat(256) }).vehicle_id).toHaveLength(256);
    for (const bad of ["", "   ", "v".repeat(257), 42, null, "a\u0000b", "v\ud800"])
      expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), vehicle_id: bad })).toEqual(["vehicle_id"]);
  });

  test("a user_id is not a vehicle_id", () => {
    const { vehicle_id, ...rest } = seedVehicle();
    expect(new Set(rejectedPaths(VehicleEvent, { ...rest, user_id: vehicle_id }))).toEqual(
      new Set(["vehicle_id", "user_id"]),
    );
  });

  test("coordinates and timestamp follow the location rules", () => {
    expect(messages(VehicleEvent, { ...seedVehicle(), lat: 91 })).toEqual(["must be between -90 and 90"]);
    expect(messages(VehicleEvent, { ...seedVehicle(), long: -181 })).toEqual(["must be between -180 and 180"]);
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), timestamp: "2023-09-12" })).toEqual(["timestamp"]);
    expect(accept(VehicleEvent, { ...seedVehicle(), timestamp: "2023-09-12 00:45:51" }).timestamp).toBe(SEED_ISO);
  });

  test.each([0, 0.1, 130, 499.99, 500])("accepts speed = %p km/h", (speed) => {
    expect(accept(VehicleEvent, { ...seedVehicle(), speed }).speed).toBe(speed);
  });

  test.each([
    [-0.01, "must be between 0 and 500 km/h"],
    [-1, "must be between 0 and 500 km/h"],
    [500.01, "must be between 0 and 500 km/h"],
    [1e6, "must be between 0 and 500 km/h"],
    [Number.POSITIVE_INFINITY, "must be finite"],
    [Number.NaN, "must be a number"],
    ["42", "must be a number"],
    [null, "must be a number"],
    [true, "must be a number"],
  ])("rejects speed = %p: %s", (speed, message) => {
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), speed })).toEqual(["speed"]);
    expect(messages(VehicleEvent, { ...seedVehicle(), speed })).toEqual([message]);
  });

  test.each([0, 0.5, 90, 180, 359.9, 359.999999])("accepts heading = %p", (heading) => {
    expect(accept(VehicleEvent, { ...seedVehicle(), heading }).heading).toBe(heading);
  });

  const HEADING = "must be at least 0 and less than 360 (degrees clockwise from north)";
  test.each([
    [360, HEADING],
    [360.5, HEADING],
    [-0.1, HEADING],
    [720, HEADING],
    [Number.NEGATIVE_INFINITY, "must be finite"],
    ["270", "must be a number"],
    [null, "must be a number"],
  ])("rejects heading = %p: %s", (heading, message) => {
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), heading })).toEqual(["heading"]);
    expect(messages(VehicleEvent, { ...seedVehicle(), heading })).toEqual([message]);
  });

  test("metadata takes strings and numbers, up to 16 keys of up to 64 characters and values of up to 256", () => {
    const metadata = { ...metadataOf(14), ["k".repeat(64)]: "v".repeat(256), negative: -1.5 };
    expect(Object.keys(metadata)).toHaveLength(16);
    expect(accept(VehicleEvent, { ...seedVehicle(), metadata }).metadata).toEqual(metadata);
    expect(accept(VehicleEvent, { ...seedVehicle(), metadata: {} }).metadata).toEqual({});
    expect(accept(VehicleEvent, { ...seedVehicle(), metadata: { "a.b c/d": "" } }).metadata).toEqual({ "a.b c/d": "" });
  });

  test.each([
    [
      "a nested object",
      { trailer: { id: "t-1" } },
      "metadata.trailer",
      "must be a string or a number: metadata is flat",
    ],
    ["an array value", { stops: [1, 2] }, "metadata.stops", "must be a string or a number: metadata is flat"],
    [
      "a boolean value",
      { refrigerated: true },
      "metadata.refrigerated",
      "must be a string or a number: metadata is flat",
    ],
    ["a null value", { driver: null }, "metadata.driver", "must be a string or a number: metadata is flat"],
    ["an infinite number", { odometer_km: Number.POSITIVE_INFINITY }, "metadata.odometer_km", "must be finite"],
    ["17 keys", metadataOf(17), "metadata", "must have at most 16 keys"],
    ["a 65-character key", { ["k".repeat(65)]: 1 }, `metadata.${"k".repeat(65)}`, "key must be at most 64 characters"],
    ["an empty key", { "": 1 }, "metadata.", "key must not be empty"],
    ["a 257-character value", { note: "n".repeat(257) }, "metadata.note", "must be at most 256 characters"],
    ["a NUL in a value", { note: "a\u0000b" }, "metadata.note", "must be valid Unicode text without the NUL character"],
    ["a NUL in a key", { "a\u0000b": 1 }, "metadata.a\u0000b", "must be valid Unicode text without the NUL character"],
    ["an array", [1, 2], "metadata", "must be a JSON object"],
    ["null", null, "metadata", "must be a JSON object"],
    ["a string", "driver=d-12", "metadata", "must be a JSON object"],
  ])("rejects metadata with %s", (_, metadata, path, message) => {
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), metadata })).toEqual([path]);
    expect(messages(VehicleEvent, { ...seedVehicle(), metadata })).toEqual([message]);
  });

  test.each(["__proto__", "constructor", "prototype"])("rejects the metadata key %s instead of dropping it", (key) => {
    // As JSON.parse builds it: an own key, even "__proto__".
    const metadata = JSON.parse(`{"${key}": 1, "driver": "d-12"}`);
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), metadata })).toEqual(["metadata"]);
    expect(messages(VehicleEvent, { ...seedVehicle(), metadata })[0]).toContain("reserved");
  });

  test("rejects an unknown field by name", () => {
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), altitude: 540 })).toEqual(["altitude"]);
    expect(rejectedPaths(VehicleEvent, { ...seedVehicle(), ingested_at: SEED_ISO })).toEqual(["ingested_at"]);
  });

  test("reports every bad field of one event", () => {
    const input = { ...seedVehicle(), vehicle_id: "", speed: 900, heading: 360, metadata: { a: {} } };
    const paths = v.safeParse(VehicleEvent, input).issues?.map((issue) => v.getDotPath(issue));
    expect(new Set(paths)).toEqual(new Set(["vehicle_id", "speed", "heading", "metadata.a"]));
  });
});

describe("what travels on the topics", () => {
  const ingested = { event_id: "018f3c5e-8a2b-7c3d-9e4f-0a1b2c3d4e5f", ingested_at: "2023-09-12T00:45:52.000Z" };

  test("a normalised location re-parses to itself as a RawLocation", () => {
    const raw = { ...accept(LocationEvent, seedLocation()), ...ingested };
    const wire = JSON.parse(JSON.stringify(raw));
    expect(accept(RawLocation, wire)).toEqual(raw);
  });

  test("a normalised login re-parses to itself as a RawLogin, nulls and empties included", () => {
    const login = accept(LoginEvent, { ...seedLogin(), locale: null, ip: "", timestamp: "1694479551123" });
    const raw = { ...login, ...ingested };
    const wire = JSON.parse(JSON.stringify(raw));
    expect(accept(RawLogin, wire)).toEqual(raw);
    expect(accept(RawLogin, wire)).toMatchObject({ locale: null, ip: "", timestamp: "2023-09-12T00:45:51.123Z" });
  });

  test("a minimal normalised login re-parses to itself as a RawLogin", () => {
    const raw = { ...accept(LoginEvent, { user_id: USER, timestamp: 1694479551 }), ...ingested };
    expect(accept(RawLogin, JSON.parse(JSON.stringify(raw)))).toEqual(raw);
  });

  test.each(["event_id", "ingested_at"])(
    "RawLocation and RawLogin let %s be absent: any producer may write them",
    (field) => {
      const location: Record<string, unknown> = { ...seedLocation(), ...ingested };
      const login: Record<string, unknown> = { ...seedLogin(), ...ingested };
      delete location[field];
      delete login[field];
      expect(rejectedPaths(RawLocation, location)).toEqual([]);
      expect(rejectedPaths(RawLogin, login)).toEqual([]);
    },
  );

  test("RawLocation rejects an unknown field and a bad ingested_at", () => {
    expect(rejectedPaths(RawLocation, { ...seedLocation(), ...ingested, timezone: "UTC" })).toEqual(["timezone"]);
    expect(rejectedPaths(RawLocation, { ...seedLocation(), ...ingested, ingested_at: "now" })).toEqual(["ingested_at"]);
  });

  const enriched = () => ({
    ...accept(LocationEvent, seedLocation()),
    ...ingested,
    timezone: "America/Argentina/Cordoba",
    utc_offset_minutes: -180,
    local_time: "2023-09-11T21:45:51.000-03:00",
  });

  test("an EnrichedLocation re-parses to itself", () => {
    const value = enriched();
    expect(accept(EnrichedLocation, JSON.parse(JSON.stringify(value)))).toEqual(value);
  });

  test.each([
    ["timezone", ""],
    ["timezone", null],
    ["utc_offset_minutes", 90.5],
    ["utc_offset_minutes", 24 * 60 + 1],
    ["utc_offset_minutes", -24 * 60 - 1],
    ["utc_offset_minutes", "-180"],
    ["local_time", "yesterday evening"],
    ["local_time", 1694468751],
  ])("EnrichedLocation rejects %s = %p", (field, value) => {
    expect(rejectedPaths(EnrichedLocation, { ...enriched(), [field]: value })).toEqual([field]);
  });

  test.each([24 * 60, -24 * 60, 0, 345])("EnrichedLocation accepts utc_offset_minutes = %p", (minutes) => {
    expect(accept(EnrichedLocation, { ...enriched(), utc_offset_minutes: minutes }).utc_offset_minutes).toBe(minutes);
  });

  test.each(["timezone", "utc_offset_minutes", "local_time", "event_id", "ingested_at"])(
    "EnrichedLocation requires %s",
    (field) => {
      const input: Record<string, unknown> = enriched();
      delete input[field];
      expect(rejectedPaths(EnrichedLocation, input)).toEqual([field]);
    },
  );

  test("a normalised vehicle report re-parses to itself as a RawVehicle, and enriched as an EnrichedVehicle", () => {
    const raw = { ...accept(VehicleEvent, seedVehicle()), ...ingested };
    expect(accept(RawVehicle, JSON.parse(JSON.stringify(raw)))).toEqual(raw);
    const value = { ...raw, timezone: "America/Argentina/Cordoba", utc_offset_minutes: -180, local_time: "x" };
    expect(rejectedPaths(EnrichedVehicle, value)).toEqual(["local_time"]);
    const enrichedVehicle = { ...value, local_time: "2023-09-11T21:45:51.000-03:00" };
    expect(accept(EnrichedVehicle, JSON.parse(JSON.stringify(enrichedVehicle)))).toEqual(enrichedVehicle);
  });

  test.each(["event_id", "ingested_at"])("RawVehicle lets %s be absent: any producer may write it", (field) => {
    const vehicle: Record<string, unknown> = { ...seedVehicle(), ...ingested };
    delete vehicle[field];
    expect(rejectedPaths(RawVehicle, vehicle)).toEqual([]);
  });

  test.each(["timezone", "utc_offset_minutes", "local_time"])("EnrichedVehicle requires %s", (field) => {
    const input: Record<string, unknown> = {
      ...seedVehicle(),
      ...ingested,
      timezone: "America/Argentina/Cordoba",
      utc_offset_minutes: -180,
      local_time: "2023-09-11T21:45:51.000-03:00",
    };
    delete input[field];
    expect(rejectedPaths(EnrichedVehicle, input)).toEqual([field]);
  });

  const stats = () => ({
    timestamp_start: "2023-09-12T00:45:00.000Z",
    timestamp_end: "2023-09-12T00:46:00.000Z",
    partition: 3,
    interval_messages_consumed: 10,
    interval_device_type_count: { android: 6, iOS: 4 },
    interval_missing_field_count: { locale: 2 },
    late_messages: 0,
    total_messages_consumed: 100,
    total_device_type_count: { android: 60, iOS: 40 },
    total_missing_field_count: { locale: 20, ip: 1 },
    source_offset_end: 1234,
  });

  test("LoginWindowStats re-parses to itself", () => {
    const value = stats();
    expect(accept(LoginWindowStats, JSON.parse(JSON.stringify(value)))).toEqual(value);
  });

  test("LoginWindowStats normalises its window bounds", () => {
    const out = accept(LoginWindowStats, { ...stats(), timestamp_start: 1694479500, timestamp_end: "1694479560" });
    expect(out.timestamp_start).toBe("2023-09-12T00:45:00.000Z");
    expect(out.timestamp_end).toBe("2023-09-12T00:46:00.000Z");
  });

  test.each([
    ["partition", -1, "partition"],
    ["late_messages", 1.5, "late_messages"],
    ["interval_messages_consumed", "10", "interval_messages_consumed"],
    ["interval_device_type_count", { android: -1 }, "interval_device_type_count.android"],
    ["total_missing_field_count", { locale: 0.5 }, "total_missing_field_count.locale"],
    ["timestamp_end", "later", "timestamp_end"],
    ["unexpected", 1, "unexpected"],
  ])("LoginWindowStats rejects a bad %s", (field, value, path) => {
    expect(rejectedPaths(LoginWindowStats, { ...stats(), [field]: value })).toEqual([path]);
  });

  // `v.record` alone accepts an array, as {"0":1,"1":2} for [1, 2].
  test("LoginWindowStats rejects an array as a count map", () => {
    expect(rejectedPaths(LoginWindowStats, { ...stats(), total_device_type_count: [1, 2] })).toEqual([
      "total_device_type_count",
    ]);
  });

  test("LoginWindowStats accepts empty count maps", () => {
    const value = { ...stats(), interval_device_type_count: {}, interval_missing_field_count: {} };
    expect(accept(LoginWindowStats, value)).toEqual(value);
  });
});

describe("text PostgreSQL can store", () => {
  // U+0000 passes JSON and JavaScript but not PostgreSQL text or jsonb, where it would fail a whole batch's COPY.
  test.each([
    ["LocationEvent user_id", LocationEvent, { ...seedLocation(), user_id: "a\u0000b" }, "user_id"],
    ["LoginEvent user_id", LoginEvent, { ...seedLogin(), user_id: "\u0000" }, "user_id"],
    ["LoginEvent device_type", LoginEvent, { ...seedLogin(), device_type: "ios\u0000" }, "device_type"],
    ["LoginEvent locale", LoginEvent, { ...seedLogin(), locale: "\u0000RU" }, "locale"],
    // A lone surrogate becomes U+FFFD in UTF-8, so the Kafka key would no longer equal the user_id.
    ["LocationEvent user_id (lone surrogate)", LocationEvent, { ...seedLocation(), user_id: "u\ud800" }, "user_id"],
  ])("%s is rejected", (_, schema, input, path) => {
    expect(rejectedPaths(schema, input)).toEqual([path]);
  });

  test("other control characters are kept", () => {
    expect(accept(LoginEvent, { ...seedLogin(), device_type: "a\tb\u0001" }).device_type).toBe("a\tb\u0001");
  });
});
