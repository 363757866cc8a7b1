/**
 * The event contracts, shared by ingest and every consumer. Input schemas accept what clients send; their
 * output is the normalised form that travels on the topics, which the same schemas accept again.
 */
import * as v from "valibot";

/** Seconds below this are epoch seconds, above it milliseconds (1e11 s is the year 5138; 1e11 ms is 1973). */
const SECONDS_BELOW = 1e11;
/**
 * ISO-8601 date and time, `T` or a space between them, with a zone or without one (taken as UTC: what Python's
 * `datetime.isoformat()` and `str(datetime)` give for a naive datetime, up to microseconds).
 */
const ISO_DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/i;
/** Without a zone the fraction is at most microseconds, as naive datetimes are written; with one, nanoseconds. */
const NAIVE_FRACTION_DIGITS = 6;
const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(2100, 0, 1);

function epochToMillis(epoch: number): number {
  return Math.abs(epoch) < SECONDS_BELOW ? epoch * 1000 : epoch;
}

/**
 * Milliseconds since the epoch of an ISO-8601 date-time (a missing zone means UTC), or of epoch seconds or
 * milliseconds (a number or digits). NaN for anything else, including dates and times that do not exist.
 */
export function parseTimestamp(input: string | number): number {
  if (typeof input === "number") return epochToMillis(input);
  const canonical = canonicalMillis(input);
  if (!Number.isNaN(canonical)) return canonical;
  const text = input.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return epochToMillis(Number(text));
  const iso = ISO_DATE_TIME.exec(text);
  if (!iso) return Number.NaN;
  // Every record of every consumer passes here (twice), so no array or Date is made on the way.
  const [year, month, day, hour, minute] = [
    Number(iso[1]),
    Number(iso[2]),
    Number(iso[3]),
    Number(iso[4]),
    Number(iso[5]),
  ];
  const second = Number(iso[6] ?? 0);
  const fraction = iso[7] ?? "";
  const zone = iso[8];
  if (!zone && fraction.length > NAIVE_FRACTION_DIGITS) return Number.NaN;
  const offset = zone ? zoneOffsetMs(zone) : 0;
  // Date.UTC rolls 2023-02-29 over to March 1st and 24:00 to the next day; a date, time or zone that does not
  // exist is an error, not a guess.
  const exists = month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month) && hour <= 23 && minute <= 59;
  if (!exists || second > 59 || Number.isNaN(offset)) return Number.NaN;
  const ms = fraction === "" ? 0 : Number(fraction.slice(0, 3).padEnd(3, "0"));
  return utc(year, month - 1, day, hour, minute, second, ms) - offset;
}

/** The last string {@link canonicalMillis} read, and its milliseconds: what {@link formatTimestamp} gives back. */
let lastCanonicalText = "";
let lastCanonicalMs = Number.NaN;

/** The number written in `count` digits of `text` from `from`; NaN if one is not a digit. */
function digitsAt(text: string, from: number, count: number): number {
  let value = 0;
  for (let i = from; i < from + count; i++) {
    const digit = text.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return Number.NaN;
    value = value * 10 + digit;
  }
  return value;
}

/**
 * Milliseconds of a timestamp already in the normalised form, `YYYY-MM-DDTHH:MM:SS.mmmZ` (what every topic
 * carries, so what every consumer reads, twice per record), read digit by digit with nothing allocated; NaN for
 * any other string, which the general parser then reads. It remembers the string: formatting its milliseconds
 * gives it back.
 */
function canonicalMillis(text: string): number {
  // "-", "-", "T", ":", ":", ".", "Z" at their places.
  if (text.length !== 24 || text.charCodeAt(4) !== 45 || text.charCodeAt(7) !== 45 || text.charCodeAt(10) !== 84)
    return Number.NaN;
  if (text.charCodeAt(13) !== 58 || text.charCodeAt(16) !== 58 || text.charCodeAt(19) !== 46) return Number.NaN;
  if (text.charCodeAt(23) !== 90) return Number.NaN;
  const year = digitsAt(text, 0, 4);
  const month = digitsAt(text, 5, 2);
  const day = digitsAt(text, 8, 2);
  const hour = digitsAt(text, 11, 2);
  const minute = digitsAt(text, 14, 2);
  const second = digitsAt(text, 17, 2);
  const ms = digitsAt(text, 20, 3);
  // A NaN (not a digit) fails every comparison. Whatever fails here, the general parser reads (and refuses).
  if (!(year >= 100 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month))) return Number.NaN;
  if (!(hour <= 23 && minute <= 59 && second <= 59 && ms >= 0)) return Number.NaN;
  lastCanonicalMs = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  lastCanonicalText = text;
  return lastCanonicalMs;
}

/**
 * The normalised form of `ms`: ISO-8601 in UTC to the millisecond. A timestamp just read in that form (the usual
 * case) is given back as it was read, without formatting: in that form one instant has one string.
 *
 * @example
 * formatTimestamp(Date.UTC(2023, 8, 12, 0, 45, 51)); // "2023-09-12T00:45:51.000Z"
 */
export function formatTimestamp(ms: number): string {
  return ms === lastCanonicalMs ? lastCanonicalText : new Date(ms).toISOString();
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Days in `month` (1-12) of `year` in the proleptic Gregorian calendar, as Date counts them. */
function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return month === 2 && leap ? 29 : (DAYS_IN_MONTH[month - 1] as number);
}

/** Date.UTC for every year: Date.UTC itself reads a year from 0 to 99 as 1900 to 1999. */
function utc(year: number, monthIndex: number, day: number, hour: number, minute: number, second: number, ms: number) {
  if (year >= 100) return Date.UTC(year, monthIndex, day, hour, minute, second, ms);
  const date = new Date(0);
  date.setUTCFullYear(year, monthIndex, day);
  date.setUTCHours(hour, minute, second, ms);
  return date.getTime();
}

/** The offset of an ISO-8601 zone designator from UTC (`Z`, `+05:30`, `-0800`); NaN for one that cannot be. */
function zoneOffsetMs(zone: string): number {
  if (zone.toUpperCase() === "Z") return 0;
  const digits = zone.slice(1).replace(":", "");
  const [hours, minutes] = [Number(digits.slice(0, 2)), Number(digits.slice(2))];
  if (hours > 23 || minutes > 59) return Number.NaN;
  return (zone.startsWith("-") ? -1 : 1) * (hours * 60 + minutes) * 60_000;
}

const TIMESTAMP_FORMS =
  "must be an ISO-8601 date-time (e.g. 2024-01-31T12:00:00Z; without a zone, such as 2024-01-31 12:00:00.123456, " +
  "it is taken as UTC), or epoch seconds or milliseconds";

/** A point in time, given as ISO-8601 or epoch seconds or milliseconds; normalised to an ISO UTC string. */
export const Timestamp = v.pipe(
  v.union([v.string(), v.pipe(v.number(), v.finite(TIMESTAMP_FORMS))], TIMESTAMP_FORMS),
  v.transform(parseTimestamp),
  // Two plain checks, not one raw check: the compiled validators (compiled.ts) run them without valibot. The
  // range is not reported for what is no time at all.
  v.check((ms: number) => Number.isFinite(ms), TIMESTAMP_FORMS),
  v.check((ms: number) => !Number.isFinite(ms) || (ms >= MIN_TIME && ms < MAX_TIME), "must be between 1970 and 2100"),
  v.transform(formatTimestamp),
);

/** A client's idempotency key, or ingest's time-ordered UUID. */
export const EventId = v.pipe(
  v.string("must be a string"),
  v.minLength(1, "must not be empty"),
  v.maxLength(128, "must be at most 128 characters"),
  v.regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, "may only contain letters, digits and . _ : -"),
);

/**
 * Text PostgreSQL and Kafka keys store as given: no U+0000 (text and jsonb cannot hold it, and the COPY of its
 * batch would fail) and no lone surrogate (UTF-8 encoding turns it into U+FFFD, so the key would differ).
 */
const noNul = v.check(
  (text: string) => !text.includes("\u0000") && text.isWellFormed(),
  "must be valid Unicode text without the NUL character",
);

/** Whose event it is (a user's or a vehicle's id): also the Kafka key, so its partition. */
const Identifier = v.pipe(
  v.string("must be a string"),
  noNul,
  v.trim(),
  v.minLength(1, "must not be empty"),
  v.maxLength(256, "must be at most 256 characters"),
);

/** Any finite number: JSON has no NaN, but 1e400 parses to Infinity. */
const FiniteNumber = v.pipe(v.number("must be a number"), v.finite("must be finite"));

/** A finite number from `min` to `max`, both included; `unit` ends the message that says so. */
const numberIn = (min: number, max: number, unit = "") =>
  v.pipe(
    FiniteNumber,
    v.minValue(min, `must be between ${min} and ${max}${unit}`),
    v.maxValue(max, `must be between ${min} and ${max}${unit}`),
  );

const coordinate = (limit: number) => numberIn(-limit, limit);

/** An optional login field: absent, null or empty is data (the aggregate counts it as missing). */
const optionalText = v.nullish(
  v.pipe(v.string("must be a string"), noNul, v.maxLength(256, "must be at most 256 characters")),
);

/** Any JSON object but an array: valibot's objects and records take arrays, and then blame every field. */
const jsonObject = v.custom<object>(
  (input) => typeof input === "object" && input !== null && !Array.isArray(input),
  "must be a JSON object",
);

/**
 * A strict object: unknown fields are errors, not silently dropped. Each issue says what is wrong with the field
 * it names: valibot's default would blame a missing or unknown key on the object.
 */
function eventObject<E extends v.ObjectEntries>(entries: E) {
  return v.pipe(
    jsonObject,
    v.strictObject(entries, (issue) => {
      if (issue.expected === "never") return "is not a known field";
      return issue.path ? "is missing" : "must be a JSON object";
    }),
  );
}

const locationFields = {
  event_id: v.optional(EventId),
  user_id: Identifier,
  timestamp: Timestamp,
  lat: coordinate(90),
  long: coordinate(180),
};

/**
 * The optional login fields, in the order they are stored and reported. The schema, the aggregate's statistics
 * and every check of them read this one list, so a field added here is validated and counted everywhere.
 */
export const OPTIONAL_LOGIN_FIELDS = ["app_version", "device_type", "ip", "locale", "device_id"] as const;

/** One of {@link OPTIONAL_LOGIN_FIELDS}. */
export type OptionalLoginField = (typeof OPTIONAL_LOGIN_FIELDS)[number];

const loginFields = {
  event_id: v.optional(EventId),
  user_id: Identifier,
  timestamp: Timestamp,
  ...(Object.fromEntries(OPTIONAL_LOGIN_FIELDS.map((field) => [field, optionalText])) as Record<
    OptionalLoginField,
    typeof optionalText
  >),
};

/** A vehicle's speed over ground in km/h. */
const Speed = numberIn(0, 500, " km/h");

const HEADING_RANGE = "must be at least 0 and less than 360 (degrees clockwise from north)";

/** The direction of travel, in degrees clockwise from north: 360 is north again, so it is written 0. */
const Heading = v.pipe(FiniteNumber, v.minValue(0, HEADING_RANGE), v.ltValue(360, HEADING_RANGE));

/** Limits of a vehicle's metadata: few, short keys, so that a row stays small and its keys stay names. */
const METADATA_LIMITS = { keys: 16, keyLength: 64, textLength: 256 } as const;

/**
 * Keys valibot's records drop without a word (they could reach a prototype), so they are refused out loud
 * instead of being lost.
 */
const RESERVED_KEYS = ["__proto__", "constructor", "prototype"];

/** A vehicle's free-form metadata: a flat JSON object of at most 16 string or number values. */
const Metadata = v.pipe(
  jsonObject,
  v.check(
    (metadata: object) => Object.keys(metadata).length <= METADATA_LIMITS.keys,
    `must have at most ${METADATA_LIMITS.keys} keys`,
  ),
  v.check(
    (metadata: object) => !RESERVED_KEYS.some((key) => Object.hasOwn(metadata, key)),
    `may not use the keys ${RESERVED_KEYS.join(", ")} (reserved)`,
  ),
  v.record(
    v.pipe(
      v.string(),
      noNul,
      v.minLength(1, "key must not be empty"),
      v.maxLength(METADATA_LIMITS.keyLength, `key must be at most ${METADATA_LIMITS.keyLength} characters`),
    ),
    v.union(
      [
        v.pipe(
          v.string(),
          noNul,
          v.maxLength(METADATA_LIMITS.textLength, `must be at most ${METADATA_LIMITS.textLength} characters`),
        ),
        FiniteNumber,
      ],
      "must be a string or a number: metadata is flat",
    ),
  ),
);

const vehicleFields = {
  event_id: v.optional(EventId),
  vehicle_id: Identifier,
  timestamp: Timestamp,
  lat: coordinate(90),
  long: coordinate(180),
  speed: Speed,
  heading: v.optional(Heading),
  metadata: v.optional(Metadata),
};

/** Fields every event on a topic the pipeline wrote itself carries: ingest and enrich always set both. */
const ingestedFields = { event_id: EventId, ingested_at: Timestamp };

/**
 * The same fields on a raw topic, where any producer may write: one that bypasses the HTTP API may leave them out,
 * and the consumer fills them in from the record (shared/records.ts).
 */
const rawFields = { event_id: v.optional(EventId), ingested_at: v.optional(Timestamp) };

const enrichedFields = {
  timezone: v.pipe(v.string(), noNul, v.minLength(1)),
  utc_offset_minutes: v.pipe(v.number(), v.integer(), v.minValue(-24 * 60), v.maxValue(24 * 60)),
  local_time: v.pipe(v.string(), v.isoTimestamp()),
};

/** A location ping, as a client sends it. */
export const LocationEvent = eventObject(locationFields);

/** A user login, as a client sends it; only `user_id` and `timestamp` are required. */
export const LoginEvent = eventObject(loginFields);

/**
 * A vehicle's position report, as a fleet's device sends it; `heading` and `metadata` are optional.
 *
 * @example
 * v.parse(VehicleEvent, { vehicle_id: "van-7", timestamp: 1694479551, lat: -31.4, long: -64.2, speed: 42.5,
 *   heading: 270, metadata: { driver: "d-12", odometer_km: 80211.4 } });
 */
export const VehicleEvent = eventObject(vehicleFields);

/** A location event as it travels on `locations.raw`. */
export const RawLocation = eventObject({ ...locationFields, ...rawFields });

/** A login event as it travels on `logins.raw`. */
export const RawLogin = eventObject({ ...loginFields, ...rawFields });

/** A location with its timezone, on `locations.enriched`. */
export const EnrichedLocation = eventObject({ ...locationFields, ...ingestedFields, ...enrichedFields });

/** A vehicle event as it travels on `vehicles.raw`. */
export const RawVehicle = eventObject({ ...vehicleFields, ...rawFields });

/** A vehicle position with its timezone, on `vehicles.enriched`. */
export const EnrichedVehicle = eventObject({ ...vehicleFields, ...ingestedFields, ...enrichedFields });

const Counts = v.pipe(jsonObject, v.record(v.pipe(v.string(), noNul), v.pipe(v.number(), v.integer(), v.minValue(0))));
const Count = v.pipe(v.number(), v.integer(), v.minValue(0));

/**
 * One closed window of one input partition, on `logins.stats`: the interval statistics, plus the partition and
 * the input offset it accounts up to.
 */
export const LoginWindowStats = eventObject({
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
  /** The input offset up to which this window and the ones before it account for every record. */
  source_offset_end: Count,
});

const EpochSeconds = v.pipe(v.number(), v.integer(), v.minValue(0));
/** Offsets or progress per partition of logins.stats, keyed by the partition number as JSON keys are strings. */
const PerPartition = v.pipe(jsonObject, v.record(v.pipe(v.string(), v.regex(/^\d+$/)), Count));

/**
 * One event-time window over every partition of logins.raw, on `logins.intervals`: the partials of
 * `logins.stats` merged, emitted once. Times are epoch seconds. `source_offsets` and `source_progress` say which
 * partials it accounts for (per stats partition, the next offset not counted, and the end of the latest window
 * below it, in epoch seconds): the merge restores from them after a restart.
 */
export const LoginInterval = eventObject({
  timestamp_start: EpochSeconds,
  timestamp_end: EpochSeconds,
  interval_messages_consumed: Count,
  total_messages_consumed: Count,
  interval_device_type_count: Counts,
  interval_missing_field_count: Counts,
  total_device_type_count: Counts,
  total_missing_field_count: Counts,
  late_messages: Count,
  source_offsets: PerPartition,
  source_progress: PerPartition,
});

export type LocationEvent = v.InferOutput<typeof LocationEvent>;
export type LoginEvent = v.InferOutput<typeof LoginEvent>;
/** What a consumer holds of a raw event: its event_id and ingested_at are always known by then. */
export type Ingested = { event_id: string; ingested_at: string };
export type RawLocation = v.InferOutput<typeof RawLocation> & Ingested;
export type RawLogin = v.InferOutput<typeof RawLogin> & Ingested;
export type EnrichedLocation = v.InferOutput<typeof EnrichedLocation>;
export type VehicleEvent = v.InferOutput<typeof VehicleEvent>;
export type RawVehicle = v.InferOutput<typeof RawVehicle> & Ingested;
export type EnrichedVehicle = v.InferOutput<typeof EnrichedVehicle>;
export type LoginWindowStats = v.InferOutput<typeof LoginWindowStats>;
export type LoginInterval = v.InferOutput<typeof LoginInterval>;
