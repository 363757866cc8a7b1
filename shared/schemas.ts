/**
 * The event contracts, shared by ingest and every consumer. Input schemas accept what clients send; their
 * output is the normalised form that travels on the topics, which the same schemas accept again.
 */
import * as v from "valibot";

/** Seconds below this are epoch seconds, above it milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
const SECONDS_BELOW = 1e11;
const ISO_WITH_ZONE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i;
const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(2100, 0, 1);

function epochToMillis(epoch: number): number {
  return Math.abs(epoch) < SECONDS_BELOW ? epoch * 1000 : epoch;
}

/** Milliseconds since the epoch of an ISO-8601 string with a zone, or epoch seconds or ms (number or digits). */
export function parseTimestamp(input: string | number): number {
  if (typeof input === "number") return epochToMillis(input);
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return epochToMillis(Number(text));
  return ISO_WITH_ZONE.test(text) ? Date.parse(text) : Number.NaN;
}

/** A point in time, given as ISO-8601 or epoch seconds or milliseconds; normalised to an ISO UTC string. */
export const Timestamp = v.pipe(
  v.union(
    [v.string(), v.pipe(v.number(), v.finite())],
    "must be an ISO-8601 string with a zone, or epoch seconds or milliseconds",
  ),
  v.transform(parseTimestamp),
  v.check(
    (ms) => Number.isFinite(ms),
    "must be an ISO-8601 string with a zone (e.g. 2024-01-31T12:00:00Z), or epoch seconds or milliseconds",
  ),
  v.check((ms) => ms >= MIN_TIME && ms < MAX_TIME, "must be between 1970 and 2100"),
  v.transform((ms) => new Date(ms).toISOString()),
);

/** A client's idempotency key, or ingest's time-ordered UUID. */
export const EventId = v.pipe(
  v.string("must be a string"),
  v.minLength(1, "must not be empty"),
  v.maxLength(128, "must be at most 128 characters"),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "may only contain letters, digits and . _ : -"),
);

const UserId = v.pipe(
  v.string("must be a string"),
  v.trim(),
  v.minLength(1, "must not be empty"),
  v.maxLength(256, "must be at most 256 characters"),
);

const coordinate = (limit: number) =>
  v.pipe(
    v.number("must be a number"),
    v.finite("must be finite"),
    v.minValue(-limit, `must be between -${limit} and ${limit}`),
    v.maxValue(limit, `must be between -${limit} and ${limit}`),
  );

/** An optional login field: absent, null or empty is data (the aggregate counts it as missing). */
const optionalText = v.nullish(
  v.pipe(v.string("must be a string"), v.maxLength(256, "must be at most 256 characters")),
);

/** A location ping, as seed 000 sends it. */
export const LocationEvent = v.strictObject(
  {
    event_id: v.optional(EventId),
    user_id: UserId,
    timestamp: Timestamp,
    lat: coordinate(90),
    long: coordinate(180),
  },
  "must be a JSON object",
);

/** A user login, as seed 001 sends it; only `user_id` and `timestamp` are required. */
export const LoginEvent = v.strictObject(
  {
    event_id: v.optional(EventId),
    user_id: UserId,
    timestamp: Timestamp,
    app_version: optionalText,
    device_type: optionalText,
    ip: optionalText,
    locale: optionalText,
    device_id: optionalText,
  },
  "must be a JSON object",
);

/** Fields ingest adds to every event before producing it. */
const Ingested = { event_id: EventId, ingested_at: Timestamp };

/** A location event as it travels on `locations.raw`. */
export const RawLocation = v.strictObject({ ...LocationEvent.entries, ...Ingested });

/** A login event as it travels on `logins.raw`. */
export const RawLogin = v.strictObject({ ...LoginEvent.entries, ...Ingested });

/** A location with its timezone, on `locations.enriched`. */
export const EnrichedLocation = v.strictObject({
  ...RawLocation.entries,
  timezone: v.pipe(v.string(), v.minLength(1)),
  utc_offset_minutes: v.pipe(v.number(), v.integer(), v.minValue(-24 * 60), v.maxValue(24 * 60)),
  local_time: v.pipe(v.string(), v.isoTimestamp()),
});

const Counts = v.record(v.string(), v.pipe(v.number(), v.integer(), v.minValue(0)));
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));

/** One closed window of one input partition, on `logins.stats` (seed 001's fields plus our own). */
export const LoginWindowStats = v.strictObject({
  timestamp_start: Timestamp,
  timestamp_end: Timestamp,
  partition: Count,
  interval_messages_consumed: Count,
  interval_device_type_count: Counts,
  interval_missing_field_count: Counts,
  late_messages: Count,
  total_messages_consumed: Count,
  total_device_type_count: Counts,
  total_missing_field_count: Counts,
});

export type LocationEvent = v.InferOutput<typeof LocationEvent>;
export type LoginEvent = v.InferOutput<typeof LoginEvent>;
export type RawLocation = v.InferOutput<typeof RawLocation>;
export type RawLogin = v.InferOutput<typeof RawLogin>;
export type EnrichedLocation = v.InferOutput<typeof EnrichedLocation>;
export type LoginWindowStats = v.InferOutput<typeof LoginWindowStats>;
