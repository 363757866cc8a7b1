import { describe, expect, test } from "bun:test";
import { type EventIssue, parseEvents } from "../../ingest/body.ts";
import { LocationEvent, LoginEvent, VehicleEvent } from "../../shared/schemas.ts";

const JSON_TYPE = "application/json";
const NDJSON = "application/x-ndjson";
const encode = (text: string) => new TextEncoder().encode(text);

const location = (user: string, seconds = 1694479551) => ({
  timestamp: String(seconds),
  lat: -31.677696,
  long: -65.030317,
  user_id: user,
});
const iso = (seconds: number) => new Date(seconds * 1000).toISOString();

/** Parses `body` as locations, failing the test unless the result is ok. */
function events(contentType: string | undefined, body: string | Uint8Array, maxEvents = 100) {
  const bytes = typeof body === "string" ? encode(body) : body;
  const result = parseEvents(LocationEvent, contentType, bytes, maxEvents);
  if (!result.ok) throw new Error(`expected ok, got ${result.status} ${result.error}`);
  return result.events;
}

/** Parses `body` as locations, failing the test if the result is ok. */
function failure(contentType: string | undefined, body: string | Uint8Array, maxEvents = 100) {
  const bytes = typeof body === "string" ? encode(body) : body;
  const result = parseEvents(LocationEvent, contentType, bytes, maxEvents);
  if (result.ok) throw new Error(`expected a failure, got ${result.events.length} events`);
  return result;
}

describe("accepted bodies", () => {
  test("one JSON object is one event, normalised", () => {
    expect(events(JSON_TYPE, JSON.stringify(location("a")))).toEqual([
      { ...location("a"), timestamp: iso(1694479551) },
    ]);
  });

  test("a JSON array is its events, in order", () => {
    const body = JSON.stringify([location("a", 1694479551), location("b", 1694479552), location("c", 1694479553)]);
    const out = events(JSON_TYPE, body);
    expect(out.map((event) => event.user_id)).toEqual(["a", "b", "c"]);
    expect(out.map((event) => event.timestamp)).toEqual([iso(1694479551), iso(1694479552), iso(1694479553)]);
  });

  test("NDJSON is one event per line, blank lines ignored", () => {
    const body = ["", JSON.stringify(location("a")), "   ", "", JSON.stringify(location("b")), "\t", ""].join("\n");
    expect(events(NDJSON, body).map((event) => event.user_id)).toEqual(["a", "b"]);
  });

  test("NDJSON with CRLF line ends and no final newline", () => {
    const body = `${JSON.stringify(location("a"))}\r\n${JSON.stringify(location("b"))}`;
    expect(events(NDJSON, body).map((event) => event.user_id)).toEqual(["a", "b"]);
  });

  test.each([
    "application/x-ndjson; charset=utf-8",
    "application/ndjson",
    "Application/X-NDJSON",
    "  application/x-ndjson ;charset=UTF-8",
  ])("NDJSON content type %p is accepted", (type) => {
    const body = `${JSON.stringify(location("a"))}\n${JSON.stringify(location("b"))}\n`;
    expect(events(type, body)).toHaveLength(2);
  });

  test.each(["application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=UTF-8"])(
    "JSON content type %p is accepted",
    (type) => {
      expect(events(type, JSON.stringify([location("a")]))).toHaveLength(1);
    },
  );

  test("a UTF-8 byte order mark is allowed", () => {
    expect(events(JSON_TYPE, `\uFEFF${JSON.stringify(location("a"))}`)).toHaveLength(1);
  });

  test("non-ASCII text is decoded as UTF-8", () => {
    expect(events(JSON_TYPE, JSON.stringify(location("usuário-日本")))[0]?.user_id).toBe("usuário-日本");
  });

  test("exactly maxEvents events are accepted", () => {
    const body = JSON.stringify([location("a"), location("b"), location("c")]);
    expect(events(JSON_TYPE, body, 3)).toHaveLength(3);
  });

  test("logins with missing, null and empty optional fields are accepted as sent", () => {
    const body = [
      { user_id: "a", timestamp: 1694479551 },
      { user_id: "b", timestamp: 1694479551, locale: null, ip: "" },
    ]
      .map((event) => JSON.stringify(event))
      .join("\n");
    const result = parseEvents(LoginEvent, NDJSON, encode(body), 10);
    expect(result).toEqual({
      ok: true,
      events: [
        { user_id: "a", timestamp: iso(1694479551) },
        { user_id: "b", timestamp: iso(1694479551), locale: null, ip: "" },
      ],
    });
  });
});

describe("content type", () => {
  test.each(["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/jsonl", "json", ""])(
    "%p is a 415",
    (type) => {
      const result = failure(type, JSON.stringify(location("a")));
      expect(result.status).toBe(415);
    },
  );

  test("a missing content type is a 415 that says so", () => {
    const result = failure(undefined, JSON.stringify(location("a")));
    expect(result.status).toBe(415);
    expect(result.error).toContain("none");
  });

  test("the 415 names the type it got", () => {
    expect(failure("text/plain; charset=utf-8", "{}").error).toContain('"text/plain"');
  });

  test("the content type is checked before the body", () => {
    expect(failure("text/plain", "").status).toBe(415);
  });
});

describe("malformed bodies", () => {
  test.each([
    ["empty", JSON_TYPE, ""],
    ["whitespace only", JSON_TYPE, " \n\t "],
    ["empty NDJSON", NDJSON, "\n\n"],
  ])("an %s body is a 400", (_, type, body) => {
    const result = failure(type, body);
    expect(result.status).toBe(400);
    expect(result.error).toBe("body is empty");
  });

  test("an empty array is a 400", () => {
    const result = failure(JSON_TYPE, "[]");
    expect(result.status).toBe(400);
    expect(result.error).toBe("body holds no events");
  });

  test.each([
    ["truncated", '{"user_id": "a"'],
    ["trailing comma", '[{"user_id": "a"},]'],
    ["NDJSON sent as JSON", `${JSON.stringify(location("a"))}\n${JSON.stringify(location("b"))}`],
    ["single quotes", "{'user_id': 'a'}"],
  ])("invalid JSON (%s) is a 400", (_, body) => {
    const result = failure(JSON_TYPE, body);
    expect(result.status).toBe(400);
    expect(result.error).toStartWith("body is not valid JSON");
  });

  test("a bad NDJSON line is a 400 naming its 1-based line number, blank lines counted", () => {
    const body = [JSON.stringify(location("a")), "", JSON.stringify(location("b")), '{"user_id": ', ""].join("\n");
    const result = failure(NDJSON, body);
    expect(result.status).toBe(400);
    expect(result.error).toStartWith("line 4 is not valid JSON");
  });

  test("a bad first NDJSON line is line 1", () => {
    expect(failure(NDJSON, `nope\n${JSON.stringify(location("a"))}`).error).toStartWith("line 1 ");
  });

  test.each([
    ["a lone continuation byte", [0x7b, 0x80, 0x7d]],
    ["a truncated two-byte sequence", [0x7b, 0x22, 0xc3, 0x22, 0x7d]],
    ["an overlong encoding", [0x7b, 0xc0, 0xaf, 0x7d]],
    ["a UTF-16 surrogate", [0x22, 0xed, 0xa0, 0x80, 0x22]],
  ])("invalid UTF-8 (%s) is a 400", (_, bytes) => {
    const result = failure(JSON_TYPE, new Uint8Array(bytes));
    expect(result.status).toBe(400);
    expect(result.error).toBe("body is not valid UTF-8");
  });

  test("invalid UTF-8 inside a string value is a 400, not a replacement character", () => {
    const prefix = encode('{"timestamp":"1694479551","lat":0,"long":0,"user_id":"a');
    const suffix = encode('"}');
    const bytes = new Uint8Array([...prefix, 0xff, ...suffix]);
    expect(failure(JSON_TYPE, bytes).status).toBe(400);
  });

  test.each([
    ["a number", "[1]"],
    ["a string", '["event"]'],
    ["null", "[null]"],
    ["a boolean", "[true]"],
    ["a bare number body", "42"],
  ])("a non-object element (%s) is a 400 at the root path", (_, body) => {
    const result = failure(JSON_TYPE, body);
    expect(result.status).toBe(400);
    expect(result.issues).toEqual([{ index: 0, path: "", message: "must be a JSON object" }]);
  });

  test("an array element is a 400", () => {
    const result = failure(JSON_TYPE, JSON.stringify([[location("a")]]));
    expect(result.status).toBe(400);
    expect(result.issues?.every((issue) => issue.index === 0)).toBe(true);
  });

  // An array passes valibot's object check: without a rule of its own, the 400 would list "user_id is required",
  // ..., "0 is not a known field" for an NDJSON line that holds a JSON array batch.
  test("an array element is reported as not an object", () => {
    const result = failure(JSON_TYPE, JSON.stringify([[location("a")]]));
    expect(result.issues).toEqual([{ index: 0, path: "", message: "must be a JSON object" }]);
  });
});

describe("event count limit", () => {
  test("one event over maxEvents is a 413", () => {
    const result = failure(JSON_TYPE, JSON.stringify([location("a"), location("b"), location("c")]), 2);
    expect(result.status).toBe(413);
    expect(result.error).toContain("3");
    expect(result.error).toContain("2");
  });

  test("NDJSON lines count towards maxEvents, blank lines do not", () => {
    const line = JSON.stringify(location("a"));
    expect(events(NDJSON, `${line}\n\n${line}\n\n`, 2)).toHaveLength(2);
    expect(failure(NDJSON, `${line}\n${line}\n${line}`, 2).status).toBe(413);
  });

  test("a single object counts as one event", () => {
    expect(events(JSON_TYPE, JSON.stringify(location("a")), 1)).toHaveLength(1);
  });

  test("the limit is checked before validation", () => {
    const result = failure(JSON_TYPE, JSON.stringify([{}, {}, {}]), 2);
    expect(result.status).toBe(413);
    expect(result.issues).toBeUndefined();
  });
});

describe("validation is all or nothing", () => {
  test("one bad event among good ones fails the body and points at it", () => {
    const body = [location("a"), location("b"), { ...location("c"), lat: 123 }, location("d")];
    const result = failure(JSON_TYPE, JSON.stringify(body));
    expect(result.status).toBe(400);
    expect(result).not.toHaveProperty("events");
    expect(result.issues).toEqual([{ index: 2, path: "lat", message: "must be between -90 and 90" }]);
    expect(result.issue_count).toBe(1);
  });

  test("NDJSON indexes count events, not lines", () => {
    const body = ["", JSON.stringify(location("a")), "", JSON.stringify({ ...location("b"), long: "x" })].join("\n");
    const result = failure(NDJSON, body);
    expect(result.issues).toEqual([{ index: 1, path: "long", message: "must be a number" }]);
  });

  test("each bad event is listed with its index, field path and message", () => {
    const { user_id: _, ...noUser } = location("a");
    const body = [
      location("ok"),
      noUser,
      { ...location("b"), timestamp: "2023-09-12" },
      { ...location("c"), speed: 3 },
      { ...location("d"), user_id: "  " },
    ];
    const result = failure(JSON_TYPE, JSON.stringify(body));
    expect(result.issues).toEqual([
      { index: 1, path: "user_id", message: "is missing" },
      {
        index: 2,
        path: "timestamp",
        message:
          "must be an ISO-8601 date-time (e.g. 2024-01-31T12:00:00Z; without a zone, such as 2024-01-31 12:00:00.123456, it is taken as UTC), or epoch seconds or milliseconds",
      },
      { index: 3, path: "speed", message: "is not a known field" },
      { index: 4, path: "user_id", message: "must not be empty" },
    ]);
    expect(result.issue_count).toBe(4);
    expect(result.error).toContain("4");
  });

  test("several bad fields of one event are each listed", () => {
    const result = failure(JSON_TYPE, JSON.stringify([{ ...location("a"), lat: 91, long: 181, user_id: 7 }]));
    const byPath = (a: EventIssue, b: EventIssue) => a.path.localeCompare(b.path);
    expect(result.issues?.toSorted(byPath)).toEqual([
      { index: 0, path: "lat", message: "must be between -90 and 90" },
      { index: 0, path: "long", message: "must be between -180 and 180" },
      { index: 0, path: "user_id", message: "must be a string" },
    ]);
    expect(result.issue_count).toBe(3);
  });

  test("a login's optional field of the wrong type fails the body", () => {
    const body = JSON.stringify([
      { user_id: "a", timestamp: 1694479551 },
      { user_id: "b", timestamp: 1694479551, app_version: 2.3 },
    ]);
    const result = parseEvents(LoginEvent, JSON_TYPE, encode(body), 10);
    expect(result).toMatchObject({
      ok: false,
      status: 400,
      issues: [{ index: 1, path: "app_version", message: "must be a string" }],
    });
  });

  test("a vehicle body lists each bad report, metadata issues by their key's path", () => {
    const report = (extra: object) => ({
      vehicle_id: "v",
      timestamp: 1694479551,
      lat: 0,
      long: 0,
      speed: 50,
      ...extra,
    });
    const body = [
      report({ heading: 90, metadata: { driver: "d-1" } }),
      report({ speed: 501 }),
      report({ metadata: { trailer: { id: 1 } } }),
      report({ metadata: JSON.parse('{"__proto__":{"admin":true}}') }),
    ];
    // JSON.parse made "__proto__" an own key, so it is written out again as one.
    expect(JSON.stringify(body[3])).toContain('"metadata":{"__proto__":{"admin":true}}');
    const result = parseEvents(VehicleEvent, NDJSON, encode(body.map((event) => JSON.stringify(event)).join("\n")), 10);
    expect(result).toMatchObject({
      ok: false,
      status: 400,
      issues: [
        { index: 1, path: "speed", message: "must be between 0 and 500 km/h" },
        { index: 2, path: "metadata.trailer", message: "must be a string or a number: metadata is flat" },
        { index: 3, path: "metadata", message: expect.stringContaining("reserved") },
      ],
      issue_count: 3,
    });
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
  });

  test("a __proto__ key is reported as an unknown field", () => {
    const good = JSON.stringify(location("a"));
    const poisoned = `{"__proto__":{"admin":true},${good.slice(1)}`;
    const result = failure(JSON_TYPE, `[${good},${poisoned}]`);
    expect(result.status).toBe(400);
    expect(result.issues).toEqual([{ index: 1, path: "__proto__", message: "is not a known field" }]);
    expect(result.issue_count).toBe(1);
  });

  test("a __proto__ key in an NDJSON line is reported too", () => {
    const result = failure(NDJSON, `{"__proto__":null,"timestamp":1694479551,"lat":0,"long":0,"user_id":"a"}\n`);
    expect(result.issues).toEqual([{ index: 0, path: "__proto__", message: "is not a known field" }]);
  });

  test("at most 100 issues are listed while issue_count gives the total", () => {
    const bad = Array.from({ length: 150 }, (_, i) => ({ ...location(`u${i}`), lat: 100 }));
    const result = failure(JSON_TYPE, JSON.stringify(bad), 1000);
    expect(result.issues).toHaveLength(100);
    expect(result.issue_count).toBe(150);
    expect(result.issues?.map((issue) => issue.index)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(result.error).toContain("150");
  });

  test("the cap counts issues, not events", () => {
    const bad = Array.from({ length: 40 }, () => ({ lat: 100, long: 200, user_id: "", timestamp: "x" }));
    const result = failure(JSON_TYPE, JSON.stringify(bad), 1000);
    expect(result.issue_count).toBe(160);
    expect(result.issues).toHaveLength(100);
    expect(result.issues?.at(-1)?.index).toBe(24);
  });
});
