/** The MongoDB sink against the sink conformance suite, on the real broker and FerretDB. */
import { afterAll, beforeAll } from "bun:test";
import { MongoClient } from "mongodb";
import { POSITIONS_COLLECTION } from "../../persist/mongodb.ts";
import type { Position } from "../../shared/kafka.ts";
import { TOPICS } from "../../shared/topics.ts";
import { groupOf } from "../../tools/harness.ts";
import { enrichedLocation, localFerretDb, ownMongoUrl, startGroupAtEnd } from "../support.ts";
import { describeSinkConformance } from "./conformance.ts";

const env = { PERSIST_SINK: "mongodb", MONGODB_URL: ownMongoUrl(`conformance_${crypto.randomUUID().slice(0, 8)}`) };
const group = groupOf("persist", { ...process.env, ...env }) as string;
const mongo = new MongoClient(env.MONGODB_URL, { serverSelectionTimeoutMS: 5_000 });
const db = mongo.db();
const positions = db.collection<{ _id: string; offset: number }>(POSITIONS_COLLECTION);
const ferretdb = localFerretDb();
let start: Position[] = [];

// What other runs left in the topics is not this run's to store (a shared broker can hold millions of records):
// the group and the sink's own positions start where the topics end now. Runs before the suite's own hooks.
beforeAll(async () => {
  start = await startGroupAtEnd(group, [TOPICS.locationsEnriched, TOPICS.vehiclesEnriched]);
  await rewindPositions();
});
afterAll(async () => {
  await db.dropDatabase().catch(() => {});
  await mongo.close();
});

/** Sets the sink's stored positions to where the topics ended when the run began. */
async function rewindPositions(): Promise<void> {
  for (const { topic, partition, offset } of start)
    await positions.updateOne(
      { _id: `${group}/${topic}/${partition}` },
      { $set: { group, topic, partition, offset: Number(offset) } },
      { upsert: true },
    );
}

describeSinkConformance({
  sink: "mongodb",
  env,
  topic: TOPICS.locationsEnriched,
  record: (series, i) => {
    const value = enrichedLocation(series, i);
    return { key: value.user_id, value: JSON.stringify(value), id: value.event_id };
  },
  // The _id is the event_id, which the store holds once at most; the exact list shows a missing or foreign one.
  stored: async (series) =>
    (
      await db
        .collection("locations")
        .find({ _id: { $regex: `^${series}-` } } as never, { projection: { _id: 1 } })
        .toArray()
    ).map((doc) => String(doc._id)),
  violation: (series) => JSON.stringify({ ...enrichedLocation(series, 0), lat: 123 }),
  // Back to where the run began rather than deleted: the run's records reach the store again, others' do not.
  forgetPositions: rewindPositions,
  ...(ferretdb && { outage: { stop: () => ferretdb("stop"), start: () => ferretdb("start") } }),
});
