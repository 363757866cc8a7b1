/**
 * The PostgreSQL sink, a transactional store: each batch's rows and the group's positions commit in one
 * transaction (postgres/transaction.ts), so PostgreSQL is the source of truth for what was persisted and a
 * replay writes nothing twice. Tables: `locations`, `vehicle_positions` and `logins` (one row per event_id, a
 * replayed event is ignored), `login_window_stats` (one row per window and input partition, a re-emitted window
 * overwrites it; a partition's progress reports, windows with nothing counted, are no rows) and `login_intervals`
 * (one row per window over all partitions, overwritten the same way).
 */

import type { Position } from "../shared/kafka.ts";
import {
  type EnrichedLocation,
  type EnrichedVehicle,
  type LoginInterval,
  type LoginWindowStats,
  OPTIONAL_LOGIN_FIELDS,
  type RawLogin,
} from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import { createDb, databaseAnswers, ignoreWriteAfterClose, migrate } from "./postgres/db.ts";
import { defineTable, type Table } from "./postgres/table.ts";
import { type PendingRow, slot, writeBatch } from "./postgres/transaction.ts";
import type { SinkFactory, SinkRow } from "./sink.ts";

type Event = { event_id: string; timestamp: string; ingested_at: string };

/** The columns every event table begins with: the event's identity, whose event it is (`owner`), and its time. */
const identity = <K extends string>(owner: K) => ({
  event_id: ({ value }: SinkRow<Event>) => value.event_id,
  [owner]: ({ value }: SinkRow<Record<K, string>>) => value[owner],
  event_time: ({ value }: SinkRow<Event>) => value.timestamp,
});

type Enriched = EnrichedLocation | EnrichedVehicle;

/** The columns of an enriched event: where it happened, and the zone and wall-clock time there. */
const place = {
  lat: ({ value }: SinkRow<Enriched>) => value.lat,
  long: ({ value }: SinkRow<Enriched>) => value.long,
  timezone: ({ value }: SinkRow<Enriched>) => value.timezone,
  utc_offset_minutes: ({ value }: SinkRow<Enriched>) => value.utc_offset_minutes,
  local_time: ({ value }: SinkRow<Enriched>) => value.local_time,
};

/** The columns every event table ends with: when it was ingested and the record it came from, to trace a row. */
const provenance = {
  ingested_at: ({ value }: SinkRow<Event>) => value.ingested_at,
  source_partition: (row: SinkRow) => row.partition,
  source_offset: (row: SinkRow) => row.offset,
};

export const LOCATIONS = defineTable<EnrichedLocation>({
  name: "locations",
  key: ["event_id"],
  onConflict: "ignore",
  columns: { ...identity("user_id"), ...place, ...provenance },
});

/**
 * Vehicle positions from `vehicles.enriched`, one row per event_id; a vehicle's track is its rows by event_time.
 *
 * @example
 * VEHICLE_POSITIONS.values({ topic: "vehicles.enriched", partition: 2, offset: 41n, value: position });
 * // [event_id, vehicle_id, event_time, lat, long, timezone, ..., speed, heading ?? null, metadata ?? null, ...]
 */
export const VEHICLE_POSITIONS = defineTable<EnrichedVehicle>({
  name: "vehicle_positions",
  key: ["event_id"],
  onConflict: "ignore",
  columns: {
    ...identity("vehicle_id"),
    ...place,
    speed: ({ value }) => value.speed,
    // Optional fields: absent ones become NULL (the table maps undefined to null); metadata goes to jsonb as JSON.
    heading: ({ value }) => value.heading,
    metadata: ({ value }) => value.metadata,
    ...provenance,
  },
});

export const LOGINS = defineTable<RawLogin>({
  name: "logins",
  key: ["event_id"],
  onConflict: "ignore",
  columns: {
    ...identity("user_id"),
    // Absent optional fields become NULL (the table maps undefined to null); empty strings stay as sent.
    ...Object.fromEntries(
      OPTIONAL_LOGIN_FIELDS.map((field) => [field, ({ value }: SinkRow<RawLogin>) => value[field]]),
    ),
    ...provenance,
  },
});

export const LOGIN_WINDOW_STATS = defineTable<LoginWindowStats>({
  name: "login_window_stats",
  key: ["window_start", "partition"],
  onConflict: "update",
  updatedAt: "updated_at",
  // A partition's progress report counts nothing: it is there for the merge, not for the table.
  keep: ({ value }) => value.interval_messages_consumed > 0 || value.late_messages > 0,
  columns: {
    window_start: ({ value }) => value.timestamp_start,
    window_end: ({ value }) => value.timestamp_end,
    partition: ({ value }) => value.partition,
    messages: ({ value }) => value.interval_messages_consumed,
    late_messages: ({ value }) => value.late_messages,
    device_type_count: ({ value }) => value.interval_device_type_count,
    missing_field_count: ({ value }) => value.interval_missing_field_count,
    total_messages: ({ value }) => value.total_messages_consumed,
    total_device_type_count: ({ value }) => value.total_device_type_count,
    total_missing_field_count: ({ value }) => value.total_missing_field_count,
    source_offset_end: ({ value }) => value.source_offset_end,
  },
});

const timestamp = (seconds: number) => new Date(seconds * 1000).toISOString();

export const LOGIN_INTERVALS = defineTable<LoginInterval>({
  name: "login_intervals",
  key: ["timestamp_start"],
  onConflict: "update",
  updatedAt: "updated_at",
  columns: {
    timestamp_start: ({ value }) => timestamp(value.timestamp_start),
    timestamp_end: ({ value }) => timestamp(value.timestamp_end),
    interval_messages_consumed: ({ value }) => value.interval_messages_consumed,
    late_messages: ({ value }) => value.late_messages,
    interval_device_type_count: ({ value }) => value.interval_device_type_count,
    interval_missing_field_count: ({ value }) => value.interval_missing_field_count,
    total_messages_consumed: ({ value }) => value.total_messages_consumed,
    total_device_type_count: ({ value }) => value.total_device_type_count,
    total_missing_field_count: ({ value }) => value.total_missing_field_count,
  },
});

/** The table each stored topic's rows go to. */
const TABLE_OF = {
  [TOPICS.locationsEnriched]: LOCATIONS,
  [TOPICS.vehiclesEnriched]: VEHICLE_POSITIONS,
  [TOPICS.loginsStats]: LOGIN_WINDOW_STATS,
  [TOPICS.loginsRaw]: LOGINS,
  [TOPICS.loginsIntervals]: LOGIN_INTERVALS,
} as Record<string, Table<never>>;

/**
 * Transactions one batch is split into, by partition, and written at the same time: a COPY into a large indexed
 * table keeps one backend busy for most of the batch, and a second one on its own partitions overlaps it. Each
 * transaction holds the rows and the positions of its partitions only, so each partition stays exactly once.
 */
const PARALLEL_TRANSACTIONS = 2;

/**
 * `positions` in up to `parts` groups of about as many rows each, every group with the rows of its partitions.
 *
 * @example
 * splitByPartition(rows, positions, 2); // [{ rows, positions }, { rows, positions }]
 */
export function splitByPartition(rows: PendingRow[], positions: Position[], parts: number) {
  const counts = new Map<string, number>();
  for (const { record } of rows) {
    const key = slot(record.topic, record.partition);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const groups = Array.from({ length: Math.min(parts, positions.length) }, () => ({
    rows: [] as PendingRow[],
    positions: [] as Position[],
    size: 0,
  }));
  const groupOf = new Map<string, (typeof groups)[number]>();
  // The partition with the most rows first, each to the group with the fewest rows so far.
  const bySize = [...positions].sort(
    (a, b) => (counts.get(slot(b.topic, b.partition)) ?? 0) - (counts.get(slot(a.topic, a.partition)) ?? 0),
  );
  for (const position of bySize) {
    const group = groups.reduce((least, g) => (g.size < least.size ? g : least));
    const key = slot(position.topic, position.partition);
    group.positions.push(position);
    group.size += counts.get(key) ?? 0;
    groupOf.set(key, group);
  }
  for (const row of rows) groupOf.get(slot(row.record.topic, row.record.partition))?.rows.push(row);
  return groups.map(({ rows, positions }) => ({ rows, positions }));
}

/**
 * The PostgreSQL sink at `DATABASE_URL`. Positions live in its `consumer_offsets` table, under the sink's group.
 *
 * @example
 * const sink = postgresSink({ env, log, group: "persist-postgres" });
 * await sink.open(); // applies the migrations
 * await sink.write(rows, positions);
 */
export const postgresSink: SinkFactory = ({ env, log, group }) => {
  const sql = createDb(env);
  return {
    topics: Object.keys(TABLE_OF),
    async open() {
      process.on("uncaughtException", ignoreWriteAfterClose);
      const applied = await migrate(sql).catch((error: unknown) => {
        throw new Error(`cannot apply migrations: is PostgreSQL up at DATABASE_URL? (${(error as Error).message})`);
      });
      log.info({ applied }, "migrations up to date");
    },
    async write(rows, positions) {
      // Records no row is kept for still move the positions: the batch's positions cover them.
      const pending: PendingRow[] = rows.flatMap((row) => {
        const table = TABLE_OF[row.topic] as Table<never>;
        const typed = row as SinkRow<never>;
        return table.keeps(typed) ? [{ table, record: row, values: table.values(typed) }] : [];
      });
      // A part that fails leaves the others committed: the retry of the batch finds their rows below the
      // positions they stored, and writes only what failed.
      const results = await Promise.all(
        splitByPartition(pending, positions, PARALLEL_TRANSACTIONS).map((part) =>
          writeBatch(sql, group, part.rows, part.positions),
        ),
      );
      const written: Record<string, number> = {};
      const conflicts: Record<string, number> = {};
      let replayed = 0;
      for (const result of results) {
        replayed += result.replayed;
        for (const [table, counts] of result.tables) {
          written[table] = (written[table] ?? 0) + counts.written;
          conflicts[table] = (conflicts[table] ?? 0) + counts.conflicts;
        }
      }
      return { written, conflicts, replayed };
    },
    ready: () => databaseAnswers(sql),
    async close() {
      // Every batch has committed by now; a connection left hanging by an outage must not hold the exit up.
      await sql.end({ timeout: 1 });
      process.off("uncaughtException", ignoreWriteAfterClose);
    },
  };
};
