/** What each persisted topic becomes in PostgreSQL: the table, its columns, and how an event maps to a row. */
import type { InRecord } from "./kafka.ts";
import type { EnrichedLocation } from "./schemas.ts";
import type { TableSpec } from "./store.ts";

/** `locations`: one row per event_id; a replayed event is ignored. */
export const LOCATIONS: TableSpec = {
  table: "locations",
  columns: [
    "event_id",
    "user_id",
    "event_time",
    "lat",
    "long",
    "timezone",
    "utc_offset_minutes",
    "local_time",
    "ingested_at",
    "source_partition",
    "source_offset",
  ],
  key: ["event_id"],
  onConflict: "on conflict (event_id) do nothing",
};

/** The `locations` row of an enriched event, in {@link LOCATIONS} column order. */
export function locationRow(event: EnrichedLocation, record: Pick<InRecord, "partition" | "offset">): unknown[] {
  return [
    event.event_id,
    event.user_id,
    event.timestamp,
    event.lat,
    event.long,
    event.timezone,
    event.utc_offset_minutes,
    event.local_time,
    event.ingested_at,
    record.partition,
    record.offset,
  ];
}
