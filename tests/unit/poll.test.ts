/** poll's settings, paths, event_ids and Retry-After, without a server. */
import { describe, expect, test } from "bun:test";
import { eventIdOf, pollSettings, recordsAt, sortPage } from "../../poll/records.ts";
import { retryAfterMs } from "../../poll/request.ts";
import { ConfigError, parseConfig } from "../../shared/config.ts";

const settingsOf = (env: Record<string, string>) => pollSettings(parseConfig(env));
const messageOf = (work: () => unknown) => {
  try {
    work();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected a ConfigError");
};

describe("poll settings", () => {
  test("POLL_URL is required, and a key field or pipeline topic that does not fit the schema is named", () => {
    const message = messageOf(() =>
      settingsOf({ POLL_KEY_FIELD: "vehicle_id", POLL_TOPIC: "vehicles.raw", POLL_SCHEMA: "location" }),
    );
    expect(message).toContain('POLL_URL="": is required');
    expect(message).toContain('POLL_KEY_FIELD="vehicle_id": must be user_id for POLL_SCHEMA=location');
    expect(message).toContain('POLL_TOPIC="vehicles.raw": carries other events');
  });

  test("every bad value is named, and POLL_HEADERS is never shown", () => {
    const message = messageOf(() =>
      parseConfig({
        POLL_URL: "ftp://example.com/x",
        POLL_INTERVAL_MS: "soon",
        POLL_RECORDS_PATH: "data..items",
        POLL_ID_FIELD: "a.b",
        POLL_TOPIC: "no spaces please",
        POLL_SCHEMA: "weather",
        POLL_HEADERS: '{"Authorization": "Bearer s3cret"',
        POLL_PORT: "70000",
      }),
    );
    for (const name of [
      "POLL_URL",
      "POLL_INTERVAL_MS",
      "POLL_RECORDS_PATH",
      "POLL_ID_FIELD",
      "POLL_TOPIC",
      "POLL_SCHEMA",
      "POLL_HEADERS",
      "POLL_PORT",
    ])
      expect(message).toContain(`${name}=`);
    expect(message).toContain('POLL_HEADERS="***": must be a JSON object');
    expect(message).not.toContain("s3cret");
    expect(messageOf(() => parseConfig({ POLL_HEADERS: '{"Authorization": 42}' }))).toContain("to a string");
  });

  test("the source is the URL without its query, and names the event_id namespace", () => {
    const one = settingsOf({ POLL_URL: "https://api.example.com/v1/pings?api_key=k1" });
    const other = settingsOf({ POLL_URL: "https://api.example.com/v1/pings?api_key=k2&page=2" });
    expect(one.source).toBe("https://api.example.com/v1/pings");
    expect(one.namespace).toMatch(/^poll\.[0-9a-f]{8}$/);
    expect(other.namespace).toBe(one.namespace);
    expect(settingsOf({ POLL_URL: "https://api.example.com/v2/pings" }).namespace).not.toBe(one.namespace);
    expect([one.topic, one.dlq, one.seenTopic]).toEqual(["locations.raw", "locations.raw.dlq", "locations.raw.seen"]);
  });
});

describe("poll records", () => {
  test("the array at a path, or where it is not", () => {
    expect(recordsAt({ data: { items: [1] } }, ["data", "items"])).toEqual({ ok: true, records: [1] });
    expect(recordsAt([2], [])).toEqual({ ok: true, records: [2] });
    expect(recordsAt({ data: {} }, ["data", "items"])).toEqual({ ok: false, reason: "the response has no data.items" });
    expect(recordsAt({ data: { items: {} } }, ["data", "items"])).toEqual({
      ok: false,
      reason: "data.items is not an array",
    });
    expect(recordsAt(null, ["data"])).toEqual({ ok: false, reason: "the response has no data" });
  });

  test("event_ids are the id under the namespace, or its hash where the id cannot be one", () => {
    expect(eventIdOf("poll.00000000", "ping-42")).toBe("poll.00000000:ping-42");
    expect(eventIdOf("poll.00000000", "ping 42")).toMatch(/^poll\.00000000:sha256:[0-9a-f]{40}$/);
    expect(eventIdOf("poll.00000000", "x".repeat(200))).toMatch(/:sha256:/);
    expect(eventIdOf("poll.00000000", "ping 42")).toBe(eventIdOf("poll.00000000", "ping 42"));
  });

  test("a page: new valid records, invalid ones as dead letters, repeats skipped, numeric ids taken", () => {
    const settings = settingsOf({ POLL_URL: "http://127.0.0.1:1/p" });
    const ping = (id: unknown, lat = 1) => ({ id, user_id: "u1", timestamp: 1_700_000_000, lat, long: 2 });
    const seenId = eventIdOf(settings.namespace, "old");
    const page = sortPage(
      [ping("old"), ping(7), ping(7), ping("bad", 99), { user_id: "u1" }, "text"],
      settings,
      new Set([seenId]),
    );
    expect(page.duplicates).toBe(2);
    expect(page.events.map((r) => JSON.parse(String(r.value)).event_id)).toEqual([`${settings.namespace}:7`]);
    expect(page.events[0]?.key).toBe("u1");
    expect(page.deadLetters.map((r) => r.headers?.["dlq.error.message"])).toEqual([
      expect.stringContaining("lat"),
      expect.stringContaining("id: is missing"),
      expect.stringContaining("id: is missing"),
    ]);
    expect(page.ids).toEqual([`${settings.namespace}:7`, `${settings.namespace}:bad`]);
  });
});

test("Retry-After: seconds or an HTTP date, capped, undefined when unreadable", () => {
  expect(retryAfterMs("3")).toBe(3_000);
  expect(retryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("2015-10-21T07:27:00Z"))).toBe(60_000);
  expect(retryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("2015-10-21T08:00:00Z"))).toBe(0);
  expect(retryAfterMs("999999")).toBe(3_600_000);
  expect(retryAfterMs("soon")).toBeUndefined();
  expect(retryAfterMs(null)).toBeUndefined();
});
