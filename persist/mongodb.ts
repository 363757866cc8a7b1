/**
 * The MongoDB sink, an idempotent store: enriched locations and vehicle positions as documents keyed by their
 * event_id (`_id`). Each batch is one unordered bulk insert per collection; a document whose `_id` is already
 * there is refused with a duplicate-key error, which counts as a conflict (a replayed event), so nothing is
 * ever written twice or overwritten. Inserts rather than upserts (`$setOnInsert`): FerretDB 1.24 leaks one
 * PostgreSQL connection for every upsert that finds its document and stops answering once its pool is gone,
 * while an insert refused for its key costs nothing. The group's positions go to `consumer_offsets` after the
 * documents are acknowledged; the next batch drops records below them, so a replay after a crash or a group
 * reset mostly writes nothing at all, and what slips through (positions not yet recorded) meets its key. At
 * least once plus deterministic keys: exactly once in effect. Any MongoDB-protocol store works; locally it is
 * FerretDB (scripts/stack/ferretdb.ts).
 */
import { type Collection, type Db, MongoBulkWriteError, MongoClient } from "mongodb";
import { within } from "../shared/deadline.ts";
import type { Position } from "../shared/kafka.ts";
import type { EnrichedLocation, EnrichedVehicle } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import type { SinkFactory, SinkRow } from "./sink.ts";

/**
 * How long an operation waits for a store that does not answer before it fails. Short, as PostgreSQL's refused
 * connection is: the batch fails and persist retries it with backoff (paused, not ready, nothing committed),
 * rather than a write hanging on through a short outage unseen.
 */
const SERVER_SELECTION_MS = 1_000;
const PING_MS = 2_000;

type Enriched = EnrichedLocation | EnrichedVehicle;
type Document = { _id: string } & Record<string, unknown>;

/** The zone at the end of an ISO-8601 time: `Z` or an offset. */
const ZONE_SUFFIX = /(Z|[+-]\d{2}(:?\d{2})?)$/;

/**
 * The fields every event document has: whose event (`own`, with the fields of its kind), when, where, the zone
 * there, and the record it came from.
 */
function eventDocument(row: SinkRow<Enriched>, own: Record<string, unknown>) {
  const { value } = row;
  const document: Document = {
    _id: value.event_id,
    ...own,
    event_time: new Date(value.timestamp),
    lat: value.lat,
    long: value.long,
    timezone: value.timezone,
    utc_offset_minutes: value.utc_offset_minutes,
    // The wall clock where it happened, as text without its offset (the offset is utc_offset_minutes), as
    // PostgreSQL keeps it: an instant would be the event time again.
    local_time: value.local_time.replace(ZONE_SUFFIX, ""),
    ingested_at: new Date(value.ingested_at),
    source_partition: row.partition,
    source_offset: Number(row.offset),
  };
  // Absent optional fields are left out, as the event left them out.
  for (const key of Object.keys(document)) if (document[key] === undefined) delete document[key];
  return document;
}

/** A stored topic: its collection, how a row becomes a document, and the index for "one owner's events by time". */
interface CollectionSpec {
  name: string;
  document: (row: SinkRow) => Document;
  index: Record<string, 1 | -1>;
}

/**
 * Each stored topic's collection.
 *
 * @example
 * COLLECTION_OF["locations.enriched"]?.document(row); // { _id: "019a...", user_id: "u1", event_time: Date, ... }
 */
export const COLLECTION_OF: Record<string, CollectionSpec> = {
  [TOPICS.locationsEnriched]: {
    name: "locations",
    document: (row) =>
      eventDocument(row as SinkRow<EnrichedLocation>, { user_id: (row.value as EnrichedLocation).user_id }),
    index: { user_id: 1, event_time: -1 },
  },
  [TOPICS.vehiclesEnriched]: {
    name: "vehicle_positions",
    document: (row) => {
      const { vehicle_id, speed, heading, metadata } = (row as SinkRow<EnrichedVehicle>).value;
      return eventDocument(row as SinkRow<EnrichedVehicle>, { vehicle_id, speed, heading, metadata });
    },
    index: { vehicle_id: 1, event_time: -1 },
  },
};

/** Where the sink keeps its groups' positions: one document per group, topic and partition. */
export const POSITIONS_COLLECTION = "consumer_offsets";
type PositionDocument = { _id: string; group: string; topic: string; partition: number; offset: number };
const positionId = (group: string, topic: string, partition: number) => `${group}/${topic}/${partition}`;

/** The stored positions of `group` for the partitions `rows` come from, by `<topic>/<partition>`. */
async function storedPositions(db: Db, group: string, rows: SinkRow[]): Promise<Map<string, number>> {
  const ids = [...new Set(rows.map((row) => positionId(group, row.topic, row.partition)))];
  const found = await db
    .collection<PositionDocument>(POSITIONS_COLLECTION)
    .find({ _id: { $in: ids } })
    .toArray();
  return new Map(found.map((doc) => [`${doc.topic}/${doc.partition}`, doc.offset]));
}

/**
 * The MongoDB sink at `MONGODB_URL` (the database its path names). Positions live in its `consumer_offsets`
 * collection, under the sink's group.
 *
 * @example
 * const sink = mongodbSink({ env, log, group: "persist-mongodb" });
 * await sink.open(); // creates the indexes
 * await sink.write(rows, positions); // { written: { locations: 2 }, conflicts: { locations: 0 }, replayed: 0 }
 */
export const mongodbSink: SinkFactory = ({ env, log, group }) => {
  // Majority and journaled: an acknowledged bulk write survives the primary's crash on a real replica set.
  const client = new MongoClient(env.MONGODB_URL, {
    serverSelectionTimeoutMS: SERVER_SELECTION_MS,
    connectTimeoutMS: 5_000,
    writeConcern: { w: "majority", journal: true },
  });
  const db = client.db();
  const collection = (spec: CollectionSpec): Collection<Document> => db.collection<Document>(spec.name);
  return {
    topics: Object.keys(COLLECTION_OF),
    async open() {
      try {
        for (const spec of Object.values(COLLECTION_OF))
          await collection(spec).createIndex(spec.index, { name: Object.keys(spec.index).join("_") });
      } catch (error) {
        throw new Error(`cannot create the indexes: is MongoDB up at MONGODB_URL? (${(error as Error).message})`);
      }
      log.info({ database: db.databaseName }, "indexes up to date");
    },
    async write(rows, positions) {
      const stored = await storedPositions(db, group, rows);
      const fresh = rows.filter((row) => row.offset >= (stored.get(`${row.topic}/${row.partition}`) ?? -1));
      const written: Record<string, number> = {};
      const conflicts: Record<string, number> = {};
      for (const [topic, spec] of Object.entries(COLLECTION_OF)) {
        const persistedAt = new Date();
        const documents = fresh
          .filter((row) => row.topic === topic)
          .map((row) => ({ ...spec.document(row), persisted_at: persistedAt }));
        if (documents.length === 0) continue;
        const counts = await insertNew(collection(spec), documents);
        written[spec.name] = counts.written;
        conflicts[spec.name] = counts.conflicts;
      }
      await recordPositions(db, group, positions);
      return { written, conflicts, replayed: rows.length - fresh.length };
    },
    ready: () =>
      within(
        db.command({ ping: 1 }).then(
          () => true,
          () => false,
        ),
        PING_MS,
        false,
      ),
    close: () => client.close(),
  };
};

/** MongoDB's code for a key that is already there. */
const DUPLICATE_KEY = 11000;

/**
 * Inserts `documents`, each unless its `_id` is stored already: how many were written, and how many met their
 * key. Unordered, so one duplicate does not hold back the rest; any other error is thrown, and the retry of the
 * batch finds what this attempt wrote as duplicates.
 */
async function insertNew(collection: Collection<Document>, documents: Document[]) {
  try {
    const result = await collection.bulkWrite(
      documents.map((document) => ({ insertOne: { document } })),
      { ordered: false },
    );
    return { written: result.insertedCount, conflicts: 0 };
  } catch (error) {
    if (!(error instanceof MongoBulkWriteError)) throw error;
    const failures = Array.isArray(error.writeErrors) ? error.writeErrors : [error.writeErrors];
    if (failures.some((failure) => failure.code !== DUPLICATE_KEY)) throw error;
    return { written: error.result.insertedCount, conflicts: failures.length };
  }
}

/** Moves each partition's stored position forward to `positions`; `$max`, so a stale member never moves one back. */
async function recordPositions(db: Db, group: string, positions: Position[]): Promise<void> {
  if (positions.length === 0) return;
  await db.collection<PositionDocument>(POSITIONS_COLLECTION).bulkWrite(
    positions.map(({ topic, partition, offset }) => ({
      updateOne: {
        filter: { _id: positionId(group, topic, partition) },
        update: { $max: { offset: Number(offset) }, $set: { group, topic, partition } },
        upsert: true,
      },
    })),
    { ordered: true },
  );
}
