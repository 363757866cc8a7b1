import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { enrichLocation, localTime, utcOffsetMinutes } from "../../enrich/timezone.ts";
import { EnrichedLocation, EnrichedVehicle, type RawLocation, type RawVehicle } from "../../shared/schemas.ts";
import { mulberry32 as random } from "../../tools/generators.ts";

/** A location event as it travels on `locations.raw`. */
function location(lat: number, long: number, timestamp: string): RawLocation {
  return {
    event_id: "0191d7a0-0000-7000-8000-000000000001",
    user_id: "user-1",
    timestamp,
    lat,
    long,
    ingested_at: "2024-06-01T00:00:00.000Z",
  };
}

/** local_time's shape: millisecond wall-clock time and a ±HH:MM offset. */
const LOCAL_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$/;

/** The offset in minutes that a local_time string carries. */
function offsetOf(local: string): number {
  const match = /([+-])(\d{2}):(\d{2})$/.exec(local);
  if (!match) throw new Error(`no offset in ${local}`);
  const minutes = Number(match[2]) * 60 + Number(match[3]);
  return match[1] === "-" ? -minutes : minutes;
}

describe("enrichLocation on known points", () => {
  test("Córdoba (a point near a zone border) is America/Argentina/Cordoba at -03:00", () => {
    // 1694479551 is the seed's epoch-seconds timestamp.
    const out = enrichLocation(location(-31.677696, -65.030317, "2023-09-12T00:45:51.000Z"));
    expect(out.timezone).toBe("America/Argentina/Cordoba");
    expect(out.utc_offset_minutes).toBe(-180);
    expect(out.local_time).toBe("2023-09-11T21:45:51.000-03:00");
  });

  test.each([
    [
      "New York",
      40.7128,
      -74.006,
      "2024-01-15T17:00:00.000Z",
      "America/New_York",
      -300,
      "2024-01-15T12:00:00.000-05:00",
    ],
    [
      "New York in summer",
      40.7128,
      -74.006,
      "2024-07-15T16:00:00.000Z",
      "America/New_York",
      -240,
      "2024-07-15T12:00:00.000-04:00",
    ],
    ["London", 51.5074, -0.1278, "2024-01-15T12:00:00.000Z", "Europe/London", 0, "2024-01-15T12:00:00.000+00:00"],
    [
      "London in summer",
      51.5074,
      -0.1278,
      "2024-07-15T11:00:00.000Z",
      "Europe/London",
      60,
      "2024-07-15T12:00:00.000+01:00",
    ],
    ["Tokyo", 35.6762, 139.6503, "2024-01-15T03:00:00.000Z", "Asia/Tokyo", 540, "2024-01-15T12:00:00.000+09:00"],
    [
      "Sydney in (southern) summer",
      -33.8688,
      151.2093,
      "2024-01-15T01:00:00.000Z",
      "Australia/Sydney",
      660,
      "2024-01-15T12:00:00.000+11:00",
    ],
    [
      "Sydney in (southern) winter",
      -33.8688,
      151.2093,
      "2024-07-15T02:00:00.000Z",
      "Australia/Sydney",
      600,
      "2024-07-15T12:00:00.000+10:00",
    ],
    [
      "Delhi (half-hour zone)",
      28.6139,
      77.209,
      "2024-01-15T06:30:00.000Z",
      "Asia/Kolkata",
      330,
      "2024-01-15T12:00:00.000+05:30",
    ],
    [
      "Kathmandu (45-minute zone)",
      27.7172,
      85.324,
      "2024-01-15T06:15:00.000Z",
      "Asia/Kathmandu",
      345,
      "2024-01-15T12:00:00.000+05:45",
    ],
    [
      "Chatham Islands in summer (45 minutes, DST)",
      -43.9535,
      -176.5597,
      "2024-01-15T12:00:00.000Z",
      "Pacific/Chatham",
      825,
      "2024-01-16T01:45:00.000+13:45",
    ],
    [
      "Chatham Islands in winter",
      -43.9535,
      -176.5597,
      "2024-07-15T12:00:00.000Z",
      "Pacific/Chatham",
      765,
      "2024-07-16T00:45:00.000+12:45",
    ],
    [
      "St. John's (negative half-hour zone)",
      47.5615,
      -52.7126,
      "2024-01-15T12:00:00.000Z",
      "America/St_Johns",
      -210,
      "2024-01-15T08:30:00.000-03:30",
    ],
    [
      "St. John's in summer",
      47.5615,
      -52.7126,
      "2024-07-15T12:00:00.000Z",
      "America/St_Johns",
      -150,
      "2024-07-15T09:30:00.000-02:30",
    ],
  ])("%s", (_, lat, long, timestamp, timezone, offset, local) => {
    const out = enrichLocation(location(lat, long, timestamp));
    expect(out.timezone).toBe(timezone);
    expect(out.utc_offset_minutes).toBe(offset);
    expect(out.local_time).toBe(local);
  });
});

describe("enrichLocation at sea", () => {
  // geo-tz answers with the nautical zone, whose POSIX name has the sign inverted: Etc/GMT+2 is UTC-2.
  test.each([
    ["the mid-Atlantic (0, -30)", 0, -30, "Etc/GMT+2", -120, "2024-01-15T10:00:00.000-02:00"],
    ["the Pacific (0, -150)", 0, -150, "Etc/GMT+10", -600, "2024-01-15T02:00:00.000-10:00"],
    ["the Indian Ocean (-30, 75)", -30, 75, "Etc/GMT-5", 300, "2024-01-15T17:00:00.000+05:00"],
    ["the Gulf of Guinea (0, 0)", 0, 0, "Etc/GMT", 0, "2024-01-15T12:00:00.000+00:00"],
  ])("%s", (_, lat, long, timezone, offset, local) => {
    const out = enrichLocation(location(lat, long, "2024-01-15T12:00:00.000Z"));
    expect(out.timezone).toBe(timezone);
    expect(out.utc_offset_minutes).toBe(offset);
    expect(out.local_time).toBe(local);
  });

  test("where geo-tz gives several zones (the antimeridian), the first one is taken", () => {
    // geo-tz answers [Etc/GMT+12, Etc/GMT-12] on the date line.
    const out = enrichLocation(location(0, 180, "2024-01-15T12:00:00.000Z"));
    expect(out.timezone).toBe("Etc/GMT+12");
    expect(out.utc_offset_minutes).toBe(-720);
    expect(out.local_time).toBe("2024-01-15T00:00:00.000-12:00");
  });
});

describe("DST is that of the event's own timestamp", () => {
  const NEW_YORK = [40.7128, -74.006] as const;
  const LONDON = [51.5074, -0.1278] as const;
  const SYDNEY = [-33.8688, 151.2093] as const;

  test.each([
    // New York springs forward at 2024-03-10 02:00 EST (07:00Z).
    [
      "New York, one minute before spring forward",
      NEW_YORK,
      "2024-03-10T06:59:00.000Z",
      -300,
      "2024-03-10T01:59:00.000-05:00",
    ],
    [
      "New York, the last millisecond of EST",
      NEW_YORK,
      "2024-03-10T06:59:59.999Z",
      -300,
      "2024-03-10T01:59:59.999-05:00",
    ],
    ["New York, the first instant of EDT", NEW_YORK, "2024-03-10T07:00:00.000Z", -240, "2024-03-10T03:00:00.000-04:00"],
    [
      "New York, one minute after spring forward",
      NEW_YORK,
      "2024-03-10T07:01:00.000Z",
      -240,
      "2024-03-10T03:01:00.000-04:00",
    ],
    // ... and falls back at 2024-11-03 02:00 EDT (06:00Z): 01:xx local happens twice.
    ["New York, before fall back", NEW_YORK, "2024-11-03T05:59:00.000Z", -240, "2024-11-03T01:59:00.000-04:00"],
    ["New York, after fall back", NEW_YORK, "2024-11-03T06:01:00.000Z", -300, "2024-11-03T01:01:00.000-05:00"],
    // London goes to BST at 2024-03-31 01:00Z and back at 2024-10-27 01:00Z.
    ["London, before BST", LONDON, "2024-03-31T00:59:00.000Z", 0, "2024-03-31T00:59:00.000+00:00"],
    ["London, in BST", LONDON, "2024-03-31T01:01:00.000Z", 60, "2024-03-31T02:01:00.000+01:00"],
    ["London, the end of BST", LONDON, "2024-10-27T00:59:00.000Z", 60, "2024-10-27T01:59:00.000+01:00"],
    ["London, after BST", LONDON, "2024-10-27T01:01:00.000Z", 0, "2024-10-27T01:01:00.000+00:00"],
    // Sydney leaves DST at 2024-04-07 03:00 AEDT (2024-04-06T16:00Z) and enters it at 2024-10-06 02:00 AEST (16:00Z).
    ["Sydney, the end of AEDT", SYDNEY, "2024-04-06T15:59:00.000Z", 660, "2024-04-07T02:59:00.000+11:00"],
    ["Sydney, back on AEST", SYDNEY, "2024-04-06T16:01:00.000Z", 600, "2024-04-07T02:01:00.000+10:00"],
    ["Sydney, before AEDT", SYDNEY, "2024-10-05T15:59:00.000Z", 600, "2024-10-06T01:59:00.000+10:00"],
    ["Sydney, in AEDT", SYDNEY, "2024-10-05T16:01:00.000Z", 660, "2024-10-06T03:01:00.000+11:00"],
  ])("%s", (_, [lat, long], timestamp, offset, local) => {
    const out = enrichLocation(location(lat, long, timestamp));
    expect(out.utc_offset_minutes).toBe(offset);
    expect(out.local_time).toBe(local);
    expect(Date.parse(out.local_time)).toBe(Date.parse(timestamp));
  });
});

describe("utcOffsetMinutes", () => {
  test.each([
    ["Etc/UTC", "2024-01-15T12:00:00Z", 0],
    ["UTC", "2024-07-15T12:00:00Z", 0],
    ["Etc/GMT+2", "2024-01-15T12:00:00Z", -120],
    ["Etc/GMT-14", "2024-01-15T12:00:00Z", 840],
    ["Europe/London", "2024-01-15T12:00:00Z", 0],
    ["America/Argentina/Cordoba", "2024-01-15T12:00:00Z", -180],
    ["Asia/Kolkata", "2024-01-15T12:00:00Z", 330],
    ["Asia/Kathmandu", "2024-01-15T12:00:00Z", 345],
    ["Pacific/Marquesas", "2024-01-15T12:00:00Z", -570],
    ["Pacific/Kiritimati", "2024-01-15T12:00:00Z", 840],
    // Kiritimati skipped 1994-12-31 to move from UTC-10 to UTC+14.
    ["Pacific/Kiritimati", "1990-01-01T00:00:00Z", -600],
    ["America/New_York", "2024-03-10T06:59:00Z", -300],
    ["America/New_York", "2024-03-10T07:01:00Z", -240],
  ])("%s at %s is %i", (zone, instant, expected) => {
    expect(utcOffsetMinutes(zone, Date.parse(instant))).toBe(expected);
  });

  test("a cached formatter still answers for each instant, not for the first one asked", () => {
    const winter = Date.parse("2024-01-15T12:00:00Z");
    const summer = Date.parse("2024-07-15T12:00:00Z");
    expect([winter, summer, winter, summer].map((t) => utcOffsetMinutes("Europe/Paris", t))).toEqual([
      60, 120, 60, 120,
    ]);
  });
});

describe("localTime", () => {
  test.each([
    [0, 0, "1970-01-01T00:00:00.000+00:00"],
    [0, -570, "1969-12-31T14:30:00.000-09:30"],
    [0, -30, "1969-12-31T23:30:00.000-00:30"],
    [0, 345, "1970-01-01T05:45:00.000+05:45"],
    [Date.parse("2024-02-29T23:59:59.999Z"), 60, "2024-03-01T00:59:59.999+01:00"],
    [Date.parse("2024-01-01T00:00:00.000Z"), -1, "2023-12-31T23:59:00.000-00:01"],
    [Date.parse("2024-01-01T00:00:00.000Z"), 840, "2024-01-01T14:00:00.000+14:00"],
  ])("localTime(%i, %i) is %s", (epochMs, offset, expected) => {
    expect(localTime(epochMs, offset)).toBe(expected);
    expect(Date.parse(expected)).toBe(epochMs);
  });
});

describe("enrichLocation output", () => {
  const { user_id, ...tokyo } = location(35.6762, 139.6503, "2024-01-15T03:00:00.000Z");
  const vehicle: RawVehicle = { ...tokyo, vehicle_id: user_id, speed: 38.5, heading: 90, metadata: { driver: "d-1" } };
  test.each([
    ["a location", { ...tokyo, user_id }, EnrichedLocation],
    ["a vehicle position (speed, heading, metadata)", vehicle, EnrichedVehicle],
  ])(
    "%s keeps every input field, gets exactly the three enrichment fields, and passes its schema",
    (_, input, schema) => {
      const out = enrichLocation(input);
      expect(out).toEqual({
        ...input,
        timezone: "Asia/Tokyo",
        utc_offset_minutes: 540,
        local_time: "2024-01-15T12:00:00.000+09:00",
      });
      expect(v.parse(schema, out)).toEqual(out);
    },
  );

  test("a client's own event_id is kept verbatim", () => {
    const input = { ...location(0, -30, "2024-01-15T12:00:00.000Z"), event_id: "client-key:42" };
    expect(enrichLocation(input).event_id).toBe("client-key:42");
  });

  test("does not modify its input", () => {
    const input = location(40.7128, -74.006, "2024-03-10T07:01:00.000Z");
    const before = structuredClone(input);
    enrichLocation(input);
    expect(input).toEqual(before);
  });

  test("random points and instants: local_time has the format, carries utc_offset_minutes, and round-trips", () => {
    const next = random(20240915);
    // From 1990: before 1972 Liberia's offset had seconds (-00:44:30), which whole minutes cannot carry.
    const from = Date.parse("1990-01-01T00:00:00Z");
    const to = Date.parse("2099-12-31T23:59:59Z");
    for (let i = 0; i < 2_000; i++) {
      const lat = Math.round((next() * 180 - 90) * 1e6) / 1e6;
      const long = Math.round((next() * 360 - 180) * 1e6) / 1e6;
      const timestamp = new Date(from + Math.floor(next() * (to - from))).toISOString();
      const out = enrichLocation(location(lat, long, timestamp));
      const label = `${lat},${long} at ${timestamp}: ${out.timezone} ${out.local_time}`;
      expect({ label, format: LOCAL_TIME.test(out.local_time) }).toEqual({ label, format: true });
      expect({ label, offset: offsetOf(out.local_time) }).toEqual({ label, offset: out.utc_offset_minutes });
      expect({ label, instant: Date.parse(out.local_time) }).toEqual({ label, instant: Date.parse(timestamp) });
      expect({ label, valid: v.safeParse(EnrichedLocation, out).success }).toEqual({ label, valid: true });
    }
  });
});
