/** The MongoDB sink's documents and its setting, without a server. */
import { expect, test } from "bun:test";
import { COLLECTION_OF } from "../../persist/mongodb.ts";
import { ConfigError, parseConfig } from "../../shared/config.ts";
import { TOPICS } from "../../shared/topics.ts";

const enriched = {
  event_id: "e1",
  timestamp: "2023-11-14T22:13:20.000Z",
  ingested_at: "2023-11-14T22:13:21.000Z",
  lat: -31.4,
  long: -64.18,
  timezone: "America/Argentina/Cordoba",
  utc_offset_minutes: -180,
  local_time: "2023-11-14T19:13:20.000",
};

test("a location document: keyed by event_id, times as dates, the wall clock as text, its record's coordinates", () => {
  const row = { topic: TOPICS.locationsEnriched, partition: 3, offset: 41n, value: { ...enriched, user_id: "u1" } };
  expect(COLLECTION_OF[TOPICS.locationsEnriched]?.document(row)).toEqual({
    _id: "e1",
    user_id: "u1",
    event_time: new Date("2023-11-14T22:13:20.000Z"),
    lat: -31.4,
    long: -64.18,
    timezone: "America/Argentina/Cordoba",
    utc_offset_minutes: -180,
    local_time: "2023-11-14T19:13:20.000",
    ingested_at: new Date("2023-11-14T22:13:21.000Z"),
    source_partition: 3,
    source_offset: 41,
  });
});

test("a vehicle document has heading and metadata only when they were sent", () => {
  const spec = COLLECTION_OF[TOPICS.vehiclesEnriched];
  const value = { ...enriched, vehicle_id: "van-7", speed: 42.5 };
  const bare = spec?.document({ topic: TOPICS.vehiclesEnriched, partition: 0, offset: 1n, value });
  expect(bare).toMatchObject({ _id: "e1", vehicle_id: "van-7", speed: 42.5 });
  expect(Object.keys(bare ?? {})).not.toContain("heading");
  expect(Object.keys(bare ?? {})).not.toContain("metadata");
  const full = spec?.document({
    topic: TOPICS.vehiclesEnriched,
    partition: 0,
    offset: 1n,
    value: { ...value, heading: 0, metadata: { driver: "d-12" } },
  });
  expect(full).toMatchObject({ heading: 0, metadata: { driver: "d-12" } });
});

test("MONGODB_URL must be a mongodb URL naming its database, and its password is never shown", () => {
  expect(parseConfig({}).MONGODB_URL).toBe("mongodb://127.0.0.1:27017/pipeline");
  for (const [url, message] of [
    ["postgres://x@db/pipeline", "must be a mongodb:// or mongodb+srv:// URL"],
    ["mongodb://u:s3cret@db:27017", "must name the database"],
  ] as const) {
    let error: unknown;
    try {
      parseConfig({ MONGODB_URL: url });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain("s3cret");
  }
});
