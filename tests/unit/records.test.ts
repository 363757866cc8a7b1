import { describe, expect, test } from "bun:test";
import type { InRecord } from "../../shared/kafka.ts";
import { DECODERS, DecodeError, decodeEvent, derivedEventId } from "../../shared/records.ts";
import { RawLogin } from "../../shared/schemas.ts";
import { TOPICS } from "../../shared/topics.ts";

const record = (value: unknown, at: Partial<InRecord> = {}): InRecord => ({
  topic: TOPICS.loginsRaw,
  partition: 3,
  offset: 1234n,
  key: Buffer.from("u1"),
  value: Buffer.from(typeof value === "string" ? value : JSON.stringify(value)),
  headers: {},
  timestamp: BigInt(Date.parse("2024-01-15T12:00:04.500Z")),
  ...at,
});

describe("decodeEvent", () => {
  test("a record without event_id or ingested_at gets its coordinates and its broker timestamp", () => {
    const login = decodeEvent(RawLogin, record({ user_id: "u1", timestamp: "2024-01-15 12:00:03" }));
    expect(login).toMatchObject({
      event_id: "logins.raw:3:1234",
      ingested_at: "2024-01-15T12:00:04.500Z",
      timestamp: "2024-01-15T12:00:03.000Z",
    });
  });

  test("the same event at two offsets is two events; the same record read twice is one", () => {
    const body = { user_id: "u1", timestamp: 1705320003 };
    const first = decodeEvent(RawLogin, record(body, { offset: 7n }));
    const again = decodeEvent(RawLogin, record(body, { offset: 7n }));
    const second = decodeEvent(RawLogin, record(body, { offset: 8n }));
    expect(again.event_id).toBe(first.event_id);
    expect(second.event_id).not.toBe(first.event_id);
  });

  test("what the producer sent wins over what the record would give", () => {
    const body = { user_id: "u1", timestamp: 1705320003, event_id: "client-1", ingested_at: "2024-01-01T00:00:00Z" };
    expect(decodeEvent(RawLogin, record(body))).toMatchObject({
      event_id: "client-1",
      ingested_at: "2024-01-01T00:00:00.000Z",
    });
  });

  test("a derived event_id is a valid event_id, so it travels on and is stored like a client's", () => {
    const id = derivedEventId({ topic: "locations.raw", partition: 11, offset: 9_007_199_254_740_993n });
    const login = decodeEvent(RawLogin, record({ user_id: "u1", timestamp: 1705320003, event_id: id }));
    expect(login.event_id).toBe("locations.raw:11:9007199254740993");
  });

  test("a missing required field says it is missing, not that the event is not an object", () => {
    expect(() => decodeEvent(RawLogin, record({ timestamp: 1705320003 }))).toThrow(
      new DecodeError("user_id: is missing"),
    );
    expect(() => decodeEvent(RawLogin, record({ user_id: "u1", timestamp: 1, extra: 1 }))).toThrow(
      "extra: is not a known field",
    );
  });
});

test("every consumed topic has one decoding rule, and the pipeline's own topics keep requiring event_id", () => {
  expect(Object.keys(DECODERS).sort()).toEqual(
    [
      TOPICS.locationsRaw,
      TOPICS.loginsRaw,
      TOPICS.vehiclesRaw,
      TOPICS.locationsEnriched,
      TOPICS.vehiclesEnriched,
      TOPICS.loginsStats,
      TOPICS.loginsIntervals,
    ].sort(),
  );
  expect(() =>
    DECODERS[TOPICS.locationsEnriched](record({ user_id: "u1" }, { topic: TOPICS.locationsEnriched })),
  ).toThrow("event_id: is missing");
});
