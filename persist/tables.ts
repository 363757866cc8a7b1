/** What each persisted topic becomes in PostgreSQL: the table, its columns, and how an event maps to a row. */
import type { InRecord } from "../shared/kafka.ts";
import type { EnrichedLocation, LoginWindowStats, RawLogin } from "../shared/schemas.ts";
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

/** `login_window_stats`: one row per (window, input partition); a re-emitted window overwrites its row. */
export const LOGIN_WINDOW_STATS: TableSpec = {
  table: "login_window_stats",
  columns: [
    "window_start",
    "window_end",
    "partition",
    "messages",
    "late_messages",
    "device_type_count",
    "missing_field_count",
    "total_messages",
    "total_device_type_count",
    "total_missing_field_count",
    "source_offset_end",
  ],
  key: ["window_start", "partition"],
  onConflict: `on conflict (window_start, partition) do update set
    window_end = excluded.window_end, messages = excluded.messages, late_messages = excluded.late_messages,
    device_type_count = excluded.device_type_count, missing_field_count = excluded.missing_field_count,
    total_messages = excluded.total_messages, total_device_type_count = excluded.total_device_type_count,
    total_missing_field_count = excluded.total_missing_field_count, source_offset_end = excluded.source_offset_end,
    updated_at = clock_timestamp()`,
};

/** The `login_window_stats` row of a window, in {@link LOGIN_WINDOW_STATS} column order. */
export function loginWindowRow(stats: LoginWindowStats): unknown[] {
  return [
    stats.timestamp_start,
    stats.timestamp_end,
    stats.partition,
    stats.interval_messages_consumed,
    stats.late_messages,
    stats.interval_device_type_count,
    stats.interval_missing_field_count,
    stats.total_messages_consumed,
    stats.total_device_type_count,
    stats.total_missing_field_count,
    stats.source_offset_end,
  ];
}

/** `logins`: the audit table, one row per event_id. */
export const LOGINS: TableSpec = {
  table: "logins",
  columns: [
    "event_id",
    "user_id",
    "event_time",
    "app_version",
    "device_type",
    "ip",
    "locale",
    "device_id",
    "ingested_at",
    "source_partition",
    "source_offset",
  ],
  key: ["event_id"],
  onConflict: "on conflict (event_id) do nothing",
};

/** The `logins` row of a raw login event, in {@link LOGINS} column order. */
export function loginRow(event: RawLogin, record: Pick<InRecord, "partition" | "offset">): unknown[] {
  return [
    event.event_id,
    event.user_id,
    event.timestamp,
    // Absent fields are null, never undefined, whichever way the row reaches PostgreSQL.
    event.app_version ?? null,
    event.device_type ?? null,
    event.ip ?? null,
    event.locale ?? null,
    event.device_id ?? null,
    event.ingested_at,
    record.partition,
    record.offset,
  ];
}
