import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { copyText, copyValue, defineTable, type Table } from "../../persist/postgres/table.ts";
import { LOCATIONS, LOGIN_INTERVALS, LOGIN_WINDOW_STATS, LOGINS, VEHICLE_POSITIONS } from "../../persist/postgres.ts";
import type { EnrichedLocation, EnrichedVehicle, LoginWindowStats, RawLogin } from "../../shared/schemas.ts";

type Coordinates = { partition: number; offset: bigint };
const locationRow = (value: EnrichedLocation, at: Coordinates) =>
  LOCATIONS.values({ topic: "locations.enriched", ...at, value });
const vehicleRow = (value: EnrichedVehicle, at: Coordinates) =>
  VEHICLE_POSITIONS.values({ topic: "vehicles.enriched", ...at, value });
const loginRow = (value: RawLogin, at: Coordinates) => LOGINS.values({ topic: "logins.raw", ...at, value });
const loginWindowRow = (value: LoginWindowStats) =>
  LOGIN_WINDOW_STATS.values({ topic: "logins.stats", partition: value.partition, offset: 0n, value });

/**
 * A reference decoder of PostgreSQL's COPY text format (default delimiter and null string), written from the
 * manual rather than from copyValue: rows end at an unescaped newline, columns at an unescaped tab, a column
 * whose raw text is exactly `\N` is NULL, and a backslash introduces \b \f \n \r \t \v, octal \ooo, hex \xhh,
 * or stands for the next character itself. A raw carriage return is an error, as it is for PostgreSQL.
 */
function decodeCopy(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  let row: (string | null)[] = [];
  let value = "";
  let raw = "";
  const endColumn = () => {
    row.push(raw === "\\N" ? null : value);
    value = "";
    raw = "";
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === "\t") endColumn();
    else if (c === "\n") {
      endColumn();
      rows.push(row);
      row = [];
    } else if (c === "\r") throw new Error(`raw carriage return at ${i}`);
    else if (c !== "\\") {
      value += c;
      raw += c;
    } else {
      const next = text[++i];
      if (next === undefined) throw new Error("backslash at the end of the data");
      raw += `\\${next}`;
      const simple: Record<string, string> = { b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", v: "\v" };
      const octal = /^[0-7]{1,3}/.exec(text.slice(i, i + 3));
      const hex = /^x([0-9a-fA-F]{1,2})/.exec(text.slice(i, i + 3));
      if (next in simple) value += simple[next];
      else if (octal) {
        value += String.fromCharCode(Number.parseInt(octal[0], 8));
        i += octal[0].length - 1;
      } else if (hex?.[1]) {
        value += String.fromCharCode(Number.parseInt(hex[1], 16));
        i += hex[0].length - 1;
      } else value += next;
    }
  }
  if (value !== "" || raw !== "" || row.length > 0) throw new Error("data does not end with a newline");
  return rows;
}

/** Awkward text: every COPY separator, escapes that look like COPY's own, and non-ASCII. */
const AWKWARD = [
  "plain",
  "",
  " spaced ",
  "tab\there",
  "line\nbreak",
  "carriage\rreturn",
  "windows\r\nline",
  "back\\slash",
  "\\",
  "trailing\\",
  "\\N",
  "\\n is not a newline",
  "C:\\new\\table",
  "\\\\double",
  "\t\n\r\\ all at once \\\r\n\t",
  "ends with tab\t",
  "\\x41 \\101 look like escapes",
  "ñandú 🎉 ∑ 日本",
  "\b\f\v other control characters",
];

/** A column -> value map of one row, failing when the row and the spec's columns differ in length. */
function zip(spec: Table<never>, values: unknown[]): Record<string, unknown> {
  expect(values).toHaveLength(spec.columns.length);
  return Object.fromEntries(spec.columns.map((column, i) => [column, values[i]]));
}

const enriched: EnrichedLocation = {
  event_id: "0191d7a0-1111-7000-8000-00000000000a",
  user_id: "user\twith\ntabs\\and\rbreaks",
  timestamp: "2023-09-12T00:45:51.000Z",
  lat: -31.677696,
  long: -65.030317,
  ingested_at: "2023-09-12T00:45:52.250Z",
  timezone: "America/Argentina/Cordoba",
  utc_offset_minutes: -180,
  local_time: "2023-09-11T21:45:51.000-03:00",
};

const position: EnrichedVehicle = {
  event_id: "0191d7a0-3333-7000-8000-00000000000c",
  vehicle_id: "van-0042",
  timestamp: "2024-01-15T17:00:00.000Z",
  lat: 40.7128,
  long: -74.006,
  speed: 48.6,
  heading: 271.5,
  metadata: { driver: 'd-12\t"quoted"\nline', depot: "C:\\yard", odometer_km: 80211.4 },
  ingested_at: "2024-01-15T17:00:00.500Z",
  timezone: "America/New_York",
  utc_offset_minutes: -300,
  local_time: "2024-01-15T12:00:00.000-05:00",
};

const login: RawLogin = {
  event_id: "0191d7a0-2222-7000-8000-00000000000b",
  user_id: "login-user",
  timestamp: "2024-01-15T12:00:03.000Z",
  ingested_at: "2024-01-15T12:00:04.000Z",
  app_version: "2.3.1",
  device_type: "Android",
  ip: "203.0.113.7",
  locale: "es_AR",
  device_id: "device-77",
};

const stats: LoginWindowStats = {
  timestamp_start: "2024-01-15T12:00:00.000Z",
  timestamp_end: "2024-01-15T12:00:10.000Z",
  partition: 4,
  interval_messages_consumed: 7,
  interval_device_type_count: { android: 4, ios: 2 },
  interval_missing_field_count: { app_version: 1, device_type: 1, ip: 0, locale: 2, device_id: 0 },
  late_messages: 3,
  total_messages_consumed: 110,
  total_device_type_count: { android: 60, ios: 40, "windows phone": 1 },
  total_missing_field_count: { app_version: 5, device_type: 9, ip: 1, locale: 12, device_id: 3 },
  source_offset_end: 987,
};

describe("copyValue", () => {
  test.each([
    ["null", null, "\\N"],
    ["undefined", undefined, "\\N"],
    ["the empty string (not NULL)", "", ""],
    ["the text \\N (not NULL)", "\\N", "\\\\N"],
    ["a backslash", "a\\b", "a\\\\b"],
    ["a tab", "a\tb", "a\\tb"],
    ["a newline", "a\nb", "a\\nb"],
    ["a carriage return", "a\rb", "a\\rb"],
    ["CRLF", "a\r\nb", "a\\r\\nb"],
    ["a backslash before n (not a newline)", "C:\\new", "C:\\\\new"],
    ["several of each", "\t\t\n\n\\\\", "\\t\\t\\n\\n\\\\\\\\"],
    ["non-ASCII", "ñandú 🎉", "ñandú 🎉"],
    ["an integer", 42, "42"],
    ["a negative float", -31.677696, "-31.677696"],
    ["zero", 0, "0"],
    ["a bigint beyond 2^53", 9007199254740993n, "9007199254740993"],
    ["a boolean", true, "true"],
    ["an object", { android: 2, "windows phone": 1 }, '{"android":2,"windows phone":1}'],
    ["an empty object", {}, "{}"],
    ["an array", [1, "a"], '[1,"a"]'],
  ])("%s", (_, input, expected) => {
    expect(copyValue(input)).toBe(expected);
  });

  test.each(AWKWARD.map((text) => [JSON.stringify(text), text]))("%s survives a COPY round trip", (_, text) => {
    const encoded = copyValue(text);
    expect(encoded).not.toMatch(/[\t\n\r]/);
    expect(decodeCopy(`${encoded}\n`)).toEqual([[text]]);
  });

  test("an object whose strings hold separators and backslashes becomes JSON that decodes back to itself", () => {
    const value = { "tab\tkey": "line\nvalue", quote: 'say "hi"', path: "C:\\new", nested: { nul: "\\N" } };
    const encoded = copyValue(value);
    expect(encoded).not.toMatch(/[\t\n\r]/);
    const [[decoded]] = decodeCopy(`${encoded}\n`) as [[string]];
    expect(JSON.parse(decoded)).toEqual(value);
  });
});

describe("copyText", () => {
  test("no rows is no text", () => {
    expect(copyText([])).toBe("");
  });

  test("tab between values, a newline after every row, \\N for null", () => {
    expect(
      copyText([
        ["a", 1, null],
        ["b", undefined, 2n],
      ]),
    ).toBe("a\t1\t\\N\nb\t\\N\t2\n");
  });

  test("a one-column row of the empty string is an empty line, and NULL is not", () => {
    expect(copyText([[""], [null]])).toBe("\n\\N\n");
    expect(decodeCopy(copyText([[""], [null]]))).toEqual([[""], [null]]);
  });

  test("awkward user ids keep their rows and columns apart and survive the round trip", () => {
    const decoded = decodeCopy(copyText(AWKWARD.map((userId, i) => [`event-${i}`, userId, null, i, { userId }])));
    expect(decoded).toEqual(
      AWKWARD.map((userId, i) => [`event-${i}`, userId, null, String(i), JSON.stringify({ userId })]),
    );
    expect(decoded.map((row) => JSON.parse(row[4] as string))).toEqual(AWKWARD.map((userId) => ({ userId })));
  });
});

describe("locationRow", () => {
  test("puts every field in its LOCATIONS column", () => {
    expect(zip(LOCATIONS, locationRow(enriched, { partition: 3, offset: 12_345n }))).toEqual({
      event_id: enriched.event_id,
      user_id: enriched.user_id,
      event_time: "2023-09-12T00:45:51.000Z",
      lat: -31.677696,
      long: -65.030317,
      timezone: "America/Argentina/Cordoba",
      utc_offset_minutes: -180,
      local_time: "2023-09-11T21:45:51.000-03:00",
      ingested_at: "2023-09-12T00:45:52.250Z",
      source_partition: 3,
      source_offset: 12_345n,
    });
  });

  test("as COPY text, a user id with tabs, newlines and backslashes stays in its own column", () => {
    const [decoded] = decodeCopy(copyText([locationRow(enriched, { partition: 3, offset: 12_345n })]));
    expect(zip(LOCATIONS, decoded as string[])).toEqual({
      event_id: enriched.event_id,
      user_id: "user\twith\ntabs\\and\rbreaks",
      event_time: "2023-09-12T00:45:51.000Z",
      lat: "-31.677696",
      long: "-65.030317",
      timezone: "America/Argentina/Cordoba",
      utc_offset_minutes: "-180",
      local_time: "2023-09-11T21:45:51.000-03:00",
      ingested_at: "2023-09-12T00:45:52.250Z",
      source_partition: "3",
      source_offset: "12345",
    });
  });
});

describe("vehicleRow", () => {
  test("puts every field in its VEHICLE_POSITIONS column, metadata as the object itself", () => {
    expect(zip(VEHICLE_POSITIONS, vehicleRow(position, { partition: 2, offset: 41n }))).toEqual({
      event_id: position.event_id,
      vehicle_id: "van-0042",
      event_time: "2024-01-15T17:00:00.000Z",
      lat: 40.7128,
      long: -74.006,
      timezone: "America/New_York",
      utc_offset_minutes: -300,
      local_time: "2024-01-15T12:00:00.000-05:00",
      speed: 48.6,
      heading: 271.5,
      metadata: position.metadata,
      ingested_at: "2024-01-15T17:00:00.500Z",
      source_partition: 2,
      source_offset: 41n,
    });
  });

  test("as COPY text, metadata is JSON that decodes back to the sent object, separators and all", () => {
    const [decoded] = decodeCopy(copyText([vehicleRow(position, { partition: 2, offset: 41n })]));
    const row = zip(VEHICLE_POSITIONS, decoded as string[]);
    expect(JSON.parse(row.metadata as string)).toEqual(position.metadata as object);
    expect([row.speed, row.heading, row.vehicle_id]).toEqual(["48.6", "271.5", "van-0042"]);
  });

  test("without heading and metadata, both are NULL (not 0, not {})", () => {
    const { heading: _, metadata: __, ...bare } = position;
    const [decoded] = decodeCopy(copyText([vehicleRow(bare, { partition: 0, offset: 0n })]));
    const row = zip(VEHICLE_POSITIONS, decoded as (string | null)[]);
    expect([row.heading, row.metadata, row.speed]).toEqual([null, null, "48.6"]);
  });
});

describe("loginRow", () => {
  test("puts every field in its LOGINS column", () => {
    expect(zip(LOGINS, loginRow(login, { partition: 5, offset: 77n }))).toEqual({
      event_id: login.event_id,
      user_id: "login-user",
      event_time: "2024-01-15T12:00:03.000Z",
      app_version: "2.3.1",
      device_type: "Android",
      ip: "203.0.113.7",
      locale: "es_AR",
      device_id: "device-77",
      ingested_at: "2024-01-15T12:00:04.000Z",
      source_partition: 5,
      source_offset: 77n,
    });
  });

  const bare: RawLogin = {
    event_id: "bare-1",
    user_id: "u",
    timestamp: "2024-01-15T12:00:03.000Z",
    ingested_at: "2024-01-15T12:00:04.000Z",
  };

  test("absent optional fields are null in the row", () => {
    const row = zip(LOGINS, loginRow(bare, { partition: 0, offset: 0n }));
    for (const field of ["app_version", "device_type", "ip", "locale", "device_id"]) {
      expect({ field, value: row[field] }).toEqual({ field, value: null });
    }
  });

  test("absent optional fields are \\N in COPY", () => {
    expect(copyText([loginRow(bare, { partition: 0, offset: 0n })])).toBe(
      "bare-1\tu\t2024-01-15T12:00:03.000Z\t\\N\t\\N\t\\N\t\\N\t\\N\t2024-01-15T12:00:04.000Z\t0\t0\n",
    );
  });

  test("null stays NULL and the empty string stays empty, so the audit table keeps what was sent", () => {
    const sparse: RawLogin = { ...login, app_version: null, device_type: "", ip: "   ", locale: undefined };
    const [decoded] = decodeCopy(copyText([loginRow(sparse, { partition: 1, offset: 2n })]));
    const row = zip(LOGINS, decoded as (string | null)[]);
    expect([row.app_version, row.device_type, row.ip, row.locale, row.device_id]).toEqual([
      null,
      "",
      "   ",
      null,
      "device-77",
    ]);
  });
});

describe("loginWindowRow", () => {
  test("puts every field in its LOGIN_WINDOW_STATS column", () => {
    expect(zip(LOGIN_WINDOW_STATS, loginWindowRow(stats))).toEqual({
      window_start: "2024-01-15T12:00:00.000Z",
      window_end: "2024-01-15T12:00:10.000Z",
      partition: 4,
      messages: 7,
      late_messages: 3,
      device_type_count: { android: 4, ios: 2 },
      missing_field_count: { app_version: 1, device_type: 1, ip: 0, locale: 2, device_id: 0 },
      total_messages: 110,
      total_device_type_count: { android: 60, ios: 40, "windows phone": 1 },
      total_missing_field_count: { app_version: 5, device_type: 9, ip: 1, locale: 12, device_id: 3 },
      source_offset_end: 987,
    });
  });

  test("as COPY text, the histograms are JSON that decodes back to the window's own", () => {
    const weird = { ...stats, interval_device_type_count: { "tab\tphone": 1, "back\\slash": 2, "new\nline": 3 } };
    const [decoded] = decodeCopy(copyText([loginWindowRow(weird)]));
    const row = zip(LOGIN_WINDOW_STATS, decoded as string[]);
    expect(JSON.parse(row.device_type_count as string)).toEqual(weird.interval_device_type_count);
    expect(JSON.parse(row.total_missing_field_count as string)).toEqual(stats.total_missing_field_count);
    expect([row.partition, row.messages, row.late_messages, row.total_messages, row.source_offset_end]).toEqual([
      "4",
      "7",
      "3",
      "110",
      "987",
    ]);
  });
});

/** The columns of each `create table` in migrations/, and which of them must be given (not null, no default). */
function migratedTables(): Map<string, { columns: string[]; required: string[] }> {
  const dir = join(import.meta.dir, "../../persist/postgres/migrations");
  const sqlText = readdirSync(dir)
    .filter((file) => file.endsWith(".sql"))
    .sort()
    .map((file) => readFileSync(join(dir, file), "utf8"))
    .join("\n")
    .replace(/--[^\n]*/g, "");
  const tables = new Map<string, { columns: string[]; required: string[] }>();
  for (const [, name, body] of sqlText.matchAll(/create table (\w+) \(([\s\S]*?)\n\);/gi)) {
    const definitions = (body as string)
      .split(/,\s*\n/)
      .map((line) => line.trim())
      .filter((line) => line && !/^(primary key|unique|constraint|foreign key|check)\b/i.test(line));
    tables.set(name as string, {
      columns: definitions.map((line) => line.split(/\s+/)[0] as string),
      required: definitions
        .filter((line) => /not null/i.test(line) && !/\bdefault\b/i.test(line))
        .map((line) => line.split(/\s+/)[0] as string),
    });
  }
  return tables;
}

describe.each([
  ["LOCATIONS", LOCATIONS],
  ["VEHICLE_POSITIONS", VEHICLE_POSITIONS],
  ["LOGINS", LOGINS],
  ["LOGIN_WINDOW_STATS", LOGIN_WINDOW_STATS],
  ["LOGIN_INTERVALS", LOGIN_INTERVALS],
])("%s", (_, spec) => {
  test("names only columns of its migrated table, and every column that has no default", () => {
    const table = migratedTables().get(spec.name);
    expect(table).toBeDefined();
    for (const column of spec.columns)
      expect({ column, exists: table?.columns.includes(column) }).toEqual({ column, exists: true });
    for (const column of table?.required ?? [])
      expect({ column, given: spec.columns.includes(column) }).toEqual({ column, given: true });
    expect(new Set(spec.columns).size).toBe(spec.columns.length);
  });

  test("its key is among its columns and is the conflict target", () => {
    for (const column of spec.key) expect(spec.columns).toContain(column);
    expect(spec.conflictClause).toContain(`on conflict (${spec.key.join(", ")}) do`);
  });
});

test("a re-emitted window overwrites every non-key column of its row", () => {
  const updated = [...LOGIN_WINDOW_STATS.conflictClause.matchAll(/(\w+) = excluded\.(\w+)/g)].map(
    ([, column, source]) => {
      expect(source).toBe(column as string);
      return column;
    },
  );
  expect(updated.sort()).toEqual(LOGIN_WINDOW_STATS.columns.filter((c) => !LOGIN_WINDOW_STATS.key.includes(c)).sort());
});

test("a partition's progress report is no row of login_window_stats; a window that counts anything is", () => {
  const window = (interval_messages_consumed: number, late_messages: number) =>
    ({
      topic: "logins.stats",
      partition: 0,
      offset: 0n,
      value: { interval_messages_consumed, late_messages },
    }) as never;
  expect(LOGIN_WINDOW_STATS.keeps(window(0, 0))).toBe(false);
  expect(LOGIN_WINDOW_STATS.keeps(window(0, 2))).toBe(true);
  expect(LOGIN_WINDOW_STATS.keeps(window(3, 0))).toBe(true);
  expect(LOCATIONS.keeps(window(0, 0))).toBe(true);
});

test("an interval's epoch seconds are stored as timestamps", () => {
  const value = { timestamp_start: 1694479550, timestamp_end: 1694479560 } as never;
  const [start, end] = LOGIN_INTERVALS.values({ topic: "logins.intervals", partition: 0, offset: 0n, value });
  expect([start, end]).toEqual(["2023-09-12T00:45:50.000Z", "2023-09-12T00:46:00.000Z"]);
});

describe("defineTable", () => {
  const columns = { id: (row: { value: { id: string } }) => row.value.id, n: () => undefined };

  test("an immutable table ignores a second row with its key", () => {
    const table = defineTable({ name: "t", key: ["id"], columns, onConflict: "ignore" });
    expect(table.conflictClause).toBe("on conflict (id) do nothing");
  });

  test("an updatable table overwrites every non-key column and stamps the update time", () => {
    const table = defineTable({ name: "t", key: ["id"], columns, onConflict: "update", updatedAt: "updated_at" });
    expect(table.conflictClause).toBe("on conflict (id) do update set n = excluded.n, updated_at = clock_timestamp()");
  });

  test("undefined values become null, so absent fields are NULL whichever way the row is written", () => {
    const table = defineTable({ name: "t", key: ["id"], columns, onConflict: "ignore" });
    expect(table.values({ topic: "x", partition: 0, offset: 0n, value: { id: "a" } })).toEqual(["a", null]);
  });

  test("a key column that is not declared is an error at declaration, not at the first write", () => {
    expect(() => defineTable({ name: "t", key: ["missing"], columns, onConflict: "ignore" })).toThrow(
      "table t: key column missing is not among its columns",
    );
  });
});
