/**
 * Poison records: a record that does not decode, fails its schema or cannot be transformed goes to
 * `<source topic>.dlq` with its original key and bytes, and the stage carries on with the rest of the batch.
 */
import * as v from "valibot";
import { ChangeEvent } from "./change.ts";
import { compiled, INVALID } from "./compiled.ts";
import type { InRecord, OutRecord } from "./kafka.ts";
import {
  EnrichedLocation,
  EnrichedVehicle,
  type Ingested,
  LoginInterval,
  LoginWindowStats,
  RawLocation,
  RawLogin,
  RawVehicle,
} from "./schemas.ts";
import { dlqOf, isCdcTopic, TOPICS, type TopicName } from "./topics.ts";

/** A record whose bytes are not the event its topic carries. */
export class DecodeError extends Error {
  override name = "DecodeError";
}

/**
 * The JSON event in `record`, validated by `schema`; throws a {@link DecodeError} that says what is wrong.
 * The schema's compiled form gives the verdict; valibot runs only on a rejection, for the message.
 */
export function decode<S extends v.GenericSchema>(schema: S, record: InRecord): v.InferOutput<S> {
  let json: unknown;
  try {
    json = JSON.parse(record.value.toString("utf8"));
  } catch (error) {
    throw new DecodeError(`value is not JSON: ${(error as Error).message}`);
  }
  return validate(schema, json);
}

/**
 * `json` validated by `schema`; throws a {@link DecodeError} that names each wrong field.
 *
 * @example
 * validate(LocationEvent, { user_id: "u1", timestamp: 1694479551, lat: 123, long: 0 }); // throws "lat: must be ..."
 */
export function validate<S extends v.GenericSchema>(schema: S, json: unknown): v.InferOutput<S> {
  const value = compiled(schema)(json);
  if (value !== INVALID) return value;
  const result = v.safeParse(schema, json, { abortPipeEarly: true });
  if (result.success) return result.output;
  const problems = result.issues.map((issue) => `${v.getDotPath(issue) ?? "value"}: ${issue.message}`);
  throw new DecodeError(problems.join("; "));
}

/**
 * The event_id of a raw record that came without one: its coordinates. A replay of the record gets the same id
 * and is deduplicated end to end; the same event written twice, at two offsets, is two events.
 *
 * @example
 * derivedEventId({ topic: "logins.raw", partition: 3, offset: 1234n }); // "logins.raw:3:1234"
 */
export const derivedEventId = (record: Pick<InRecord, "topic" | "partition" | "offset">): string =>
  `${record.topic}:${record.partition}:${record.offset}`;

/**
 * A raw event from any producer: decoded by `schema`, then given the `event_id` of its coordinates and the
 * broker's timestamp as `ingested_at` where the producer left them out.
 *
 * @example
 * const login = decodeEvent(RawLogin, record); // login.event_id is set, whoever produced the record
 */
export function decodeEvent<S extends v.GenericSchema<unknown, Partial<Ingested>>>(
  schema: S,
  record: InRecord,
): v.InferOutput<S> & Ingested {
  // decode's output is a fresh object, so it is completed in place rather than copied.
  const event = decode(schema, record) as v.InferOutput<S> & Partial<Ingested>;
  event.event_id ??= derivedEventId(record);
  if (event.ingested_at === undefined) {
    const brokerTime = record.timestamp >= 0n ? Number(record.timestamp) : Date.now();
    event.ingested_at = new Date(brokerTime).toISOString();
  }
  return event as v.InferOutput<S> & Ingested;
}

/** How the records of each consumed topic decode: one rule per topic, whichever stage or sink reads it. */
export const DECODERS = {
  [TOPICS.locationsRaw]: (record: InRecord) => decodeEvent(RawLocation, record),
  [TOPICS.loginsRaw]: (record: InRecord) => decodeEvent(RawLogin, record),
  [TOPICS.vehiclesRaw]: (record: InRecord) => decodeEvent(RawVehicle, record),
  [TOPICS.vehiclesEnriched]: (record: InRecord) => decode(EnrichedVehicle, record),
  [TOPICS.locationsEnriched]: (record: InRecord) => decode(EnrichedLocation, record),
  [TOPICS.loginsStats]: (record: InRecord) => decode(LoginWindowStats, record),
  [TOPICS.loginsIntervals]: (record: InRecord) => decode(LoginInterval, record),
} satisfies Partial<Record<TopicName, (record: InRecord) => unknown>>;

/**
 * A change event of a `cdc.*` topic, validated as Debezium's envelope; null for a tombstone (the empty value
 * that follows a delete), which carries nothing to store and is no poison record.
 *
 * @example
 * decodeChange(record)?.op; // "c", "u", "d" or "r"; undefined for a tombstone
 */
export function decodeChange(record: InRecord): ChangeEvent | null {
  if (record.value.length === 0) return null;
  const event = decode(ChangeEvent, record);
  let key: unknown;
  try {
    key = JSON.parse(record.key?.toString("utf8") ?? "");
  } catch {
    // reported below
  }
  const fields = key !== null && typeof key === "object" && !Array.isArray(key) ? Object.keys(key) : [];
  if (fields.length === 0) throw new DecodeError('key must be the primary key as a JSON object, e.g. {"id":42}');
  return event;
}

/**
 * How `topic`'s records decode: its rule in {@link DECODERS}, or the change event rule for any `cdc.*` topic
 * (the captured tables are configuration, not a fixed list); undefined for a topic nobody decodes.
 */
export const decoderOf = (topic: string): ((record: InRecord) => unknown) | undefined =>
  (DECODERS as Record<string, (record: InRecord) => unknown>)[topic] ?? (isCdcTopic(topic) ? decodeChange : undefined);

/**
 * The dead letter of `record` for `topic` (its DLQ unless another side topic is given): original key, bytes and
 * headers, plus where it came from and why it was set aside.
 */
export function deadLetter(record: InRecord, error: unknown, stage: string, topic = dlqOf(record.topic)): OutRecord {
  return {
    topic,
    key: record.key,
    value: record.value,
    headers: { ...record.headers, ...deadLetterHeaders(record, error, stage) },
  };
}

/**
 * The `dlq.*` headers every dead letter carries: why it was set aside, where it came from, by which stage and
 * when. A record that never was on a topic (a polled one) names the topic it was meant for, at partition and
 * offset -1.
 *
 * @example
 * deadLetterHeaders({ topic: "locations.raw", partition: -1, offset: -1n }, new DecodeError("lat: ..."), "poll");
 */
export function deadLetterHeaders(
  source: Pick<InRecord, "topic" | "partition" | "offset">,
  error: unknown,
  stage: string,
): Record<string, string> {
  const failure = error instanceof Error ? error : new Error(String(error));
  return {
    "dlq.error.class": failure.name,
    "dlq.error.message": failure.message.slice(0, 4096),
    "dlq.source.topic": source.topic,
    "dlq.source.partition": String(source.partition),
    "dlq.source.offset": String(source.offset),
    "dlq.stage": stage,
    "dlq.time": new Date().toISOString(),
  };
}

/** Applies `transform` to each record; a record it throws on becomes a dead letter instead. */
export function mapRecords<T>(batch: InRecord[], stage: string, transform: (record: InRecord) => T) {
  const results: { record: InRecord; value: T }[] = [];
  const deadLetters: OutRecord[] = [];
  for (const record of batch) {
    try {
      results.push({ record, value: transform(record) });
    } catch (error) {
      deadLetters.push(deadLetter(record, error, stage));
    }
  }
  return { results, deadLetters };
}
