/**
 * The MongoDB sink end to end on the real broker, PostgreSQL and FerretDB: locations posted to ingest and
 * polled by poll.ts from a real HTTP API flow through enrich into both stores (a persist per sink), each event
 * once. Replays, a SIGKILL of persist and a FerretDB restart are the sink conformance suite's
 * (tests/sinks/mongodb.test.ts).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { MongoClient } from "mongodb";
import { createDb } from "../persist/postgres/db.ts";
import { documentStoreAnswers } from "../scripts/stack/ferretdb.ts";
import { TOPICS } from "../shared/topics.ts";
import { groupOf } from "../tools/harness.ts";
import { type PolledApi, startPolledApi } from "./polled-api.ts";
import {
  type Ingest,
  KNOWN_PLACES,
  ownMongoUrl,
  pollUntil,
  postInBatches,
  type Stage,
  spawnStage,
  startGroupAtEnd,
  startIngest,
  storedDocuments,
  storedSeries,
  testConfig,
} from "./support.ts";

const run = crypto.randomUUID().slice(0, 8);
const env = testConfig();
const sql = createDb(env, 2);
const MONGODB = { PERSIST_SINK: "mongodb", MONGODB_URL: ownMongoUrl(`e2e_${run}`) };
const mongo = new MongoClient(MONGODB.MONGODB_URL, { serverSelectionTimeoutMS: 5_000 });
const db = mongo.db();
const group = groupOf("persist", { ...process.env, ...MONGODB }) as string;

const locations = (series: string, count: number) =>
  Array.from({ length: count }, (_, i) => ({
    event_id: `${run}-${series}-${i}`,
    user_id: `${run}-user-${i % 20}`,
    timestamp: 1_700_000_000 + i,
    lat: ((i * 7) % 170) - 85,
    long: ((i * 13) % 350) - 175,
  }));

const documents = storedDocuments(db, "locations", run);
const rows = storedSeries(sql, "locations", run);

let api: PolledApi;
let ingest: Ingest;
let enrich: Stage;
let persistPostgres: Stage;
let persistMongo: Stage;
let poll: Stage;
const STORED = [TOPICS.locationsEnriched, TOPICS.vehiclesEnriched];
/** What persist reads with the PostgreSQL sink. */
const persistTopics = [...STORED, TOPICS.loginsRaw, TOPICS.loginsStats, TOPICS.loginsIntervals];

beforeAll(async () => {
  if (!(await documentStoreAnswers(env.MONGODB_URL)))
    throw new Error(`no MongoDB-protocol server answers at MONGODB_URL; start FerretDB with \`bun run stack\``);
  api = startPolledApi();
  // What other runs left in the topics is not this run's to enrich or store.
  await Promise.all([
    startGroupAtEnd(groupOf("enrich") as string, [TOPICS.locationsRaw, TOPICS.vehiclesRaw]),
    startGroupAtEnd(groupOf("persist") as string, persistTopics),
    startGroupAtEnd(group, STORED),
  ]);
  ingest = await startIngest();
  [enrich, persistPostgres, persistMongo, poll] = await Promise.all([
    spawnStage("enrich"),
    spawnStage("persist"),
    spawnStage("persist", MONGODB),
    spawnStage("poll", { POLL_URL: `${api.url}/pings`, POLL_INTERVAL_MS: "200" }),
  ]);
});

afterAll(async () => {
  await Promise.all([poll, enrich, persistPostgres, persistMongo, ingest].map((stage) => stage?.stop()));
  api?.stop();
  await db.dropDatabase().catch(() => {});
  await Promise.all([sql.end(), mongo.close()]);
});

describe("MongoDB sink end to end", () => {
  test("posted and polled locations are stored once in PostgreSQL and in MongoDB", async () => {
    const polled = Array.from({ length: 20 }, (_, i) => ({ ...locations("x", 1)[0], id: `${run}-polled-${i}` }));
    for (const record of polled) delete (record as { event_id?: string }).event_id;
    api.setPage(polled);
    const cordoba = KNOWN_PLACES[0];
    const posted = locations("main", 2_000).map((e, i) =>
      i === 0 ? { ...e, lat: cordoba.lat, long: cordoba.long } : e,
    );
    await postInBatches(ingest, "/v1/locations", posted);
    await Promise.all([documents.expectDocuments("main", 2_000), rows.expectRows("main", 2_000)]);

    // Polled records are stored under the event_id poll derives from their id: `poll.<hash>:<id>`.
    const polledIds = polled.map((r) => r.id).sort();
    const storedIds = async (list: () => Promise<string[]>) =>
      pollUntil("the polled records", async () => {
        const ids = await list();
        return ids.length >= polledIds.length ? ids : undefined;
      });
    const inMongo = await storedIds(async () =>
      (
        await db
          .collection("locations")
          .find({ _id: { $regex: `:${run}-polled-` } } as never)
          .toArray()
      ).map((d) => String(d._id)),
    );
    const inPostgres = await storedIds(async () =>
      (
        await sql<{ event_id: string }[]>`select event_id from locations where event_id like ${`%:${run}-polled-%`}`
      ).map((r) => r.event_id),
    );
    for (const ids of [inMongo, inPostgres]) expect(ids.map((id) => id.split(":").at(-1)).sort()).toEqual(polledIds);
    expect(inMongo.sort()).toEqual(inPostgres.sort());

    const first = await db.collection("locations").findOne({ _id: `${run}-main-0` } as never);
    expect(first).toMatchObject({
      user_id: `${run}-user-0`,
      event_time: new Date(1_700_000_000_000),
      timezone: cordoba.timezone,
      utc_offset_minutes: -180,
      local_time: "2023-11-14T19:13:20.000",
      source_partition: expect.any(Number),
    });
    expect(first?.persisted_at).toBeInstanceOf(Date);
    expect(await persistMongo.metric("rows_written_total", { table: "locations" })).toBeGreaterThanOrEqual(2_020);
  }, 120_000);

  test("vehicle positions are stored as documents with their optional fields only when sent", async () => {
    const vehicles = [0, 1].map((i) => ({
      event_id: `${run}-fleet-${i}`,
      vehicle_id: `${run}-van`,
      timestamp: 1_700_000_000 + i,
      lat: -31.41,
      long: -64.18,
      speed: 40 + i,
      ...(i === 0 && { heading: 271.5, metadata: { driver: "d-12", odometer_km: 80211.4 } }),
    }));
    await postInBatches(ingest, "/v1/vehicles", vehicles);
    await storedDocuments(db, "vehicle_positions", run).expectDocuments("fleet", 2);
    const [withAll, bare] = await db
      .collection("vehicle_positions")
      .find({ vehicle_id: `${run}-van` })
      .sort({ event_time: 1 })
      .toArray();
    expect(withAll).toMatchObject({ speed: 40, heading: 271.5, metadata: { driver: "d-12", odometer_km: 80211.4 } });
    expect(bare).toMatchObject({ speed: 41 });
    expect(bare && "heading" in bare).toBe(false);
  }, 60_000);

  test("indexes serve a user's and a vehicle's events by time", async () => {
    const keys = async (name: string) => (await db.collection(name).indexes()).map((index) => index.key);
    expect(await keys("locations")).toContainEqual({ user_id: 1, event_time: -1 });
    expect(await keys("vehicle_positions")).toContainEqual({ vehicle_id: 1, event_time: -1 });
  });
});
