/**
 * From a polled page to records for the broker: the array at POLL_RECORDS_PATH, each element's identity
 * (POLL_ID_FIELD), its deterministic event_id, and the event its schema makes of it, or a dead letter that says
 * why not. Nothing here talks to the network: poll.ts publishes what this returns.
 */
import type * as v from "valibot";
import { type Config, ConfigError, type POLL_SCHEMAS } from "../shared/config.ts";
import type { OutRecord } from "../shared/kafka.ts";
import { DecodeError, deadLetterHeaders, validate } from "../shared/records.ts";
import { LocationEvent, LoginEvent, VehicleEvent } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";

/** What each POLL_SCHEMA validates with, the fields that may key its records, and the pipeline topic it feeds. */
const SCHEMAS: Record<(typeof POLL_SCHEMAS)[number], { schema: v.GenericSchema; keys: string[]; topic: string }> = {
  location: { schema: LocationEvent, keys: ["user_id"], topic: TOPICS.locationsRaw },
  vehicle: { schema: VehicleEvent, keys: ["vehicle_id"], topic: TOPICS.vehiclesRaw },
  login: { schema: LoginEvent, keys: ["user_id"], topic: TOPICS.loginsRaw },
};

/** The poll settings, checked against each other; what the rest of poll.ts reads. */
export interface PollSettings {
  url: string;
  /** The URL without its query or credentials: what logs, dead letters and event_ids may show of it. */
  source: string;
  /** The event_id prefix of this source: `poll.` and 8 hex digits of {@link PollSettings.source}'s SHA-256. */
  namespace: string;
  topic: string;
  dlq: string;
  seenTopic: string;
  recordsPath: string[];
  idField: string;
  keyField: string;
  schema: v.GenericSchema;
  headers: Record<string, string>;
  intervalMs: number;
  timeoutMs: number;
}

/**
 * The poll settings of `env`; throws a {@link ConfigError} naming each setting that is missing or does not fit
 * the others (a key field the schema lacks, a pipeline topic that carries other events).
 *
 * @example
 * pollSettings(parseConfig({ POLL_URL: "https://api.example.com/v1/pings?page=1" })).source;
 * // "https://api.example.com/v1/pings"
 */
export function pollSettings(env: Config): PollSettings {
  const problems: string[] = [];
  const chosen = SCHEMAS[env.POLL_SCHEMA];
  if (!env.POLL_URL) problems.push('  POLL_URL="": is required: the http(s) URL to poll');
  if (!chosen.keys.includes(env.POLL_KEY_FIELD))
    problems.push(
      `  POLL_KEY_FIELD=${JSON.stringify(env.POLL_KEY_FIELD)}: must be ${chosen.keys.join(" or ")} for POLL_SCHEMA=${env.POLL_SCHEMA}`,
    );
  const pipelineTopics: string[] = Object.values(TOPICS);
  if (pipelineTopics.includes(env.POLL_TOPIC) && env.POLL_TOPIC !== chosen.topic)
    problems.push(
      `  POLL_TOPIC=${JSON.stringify(env.POLL_TOPIC)}: carries other events; POLL_SCHEMA=${env.POLL_SCHEMA} belongs on ${chosen.topic} (or a topic of its own)`,
    );
  if (problems.length > 0 || !env.POLL_URL) throw new ConfigError(`invalid environment:\n${problems.join("\n")}`);
  const parsed = new URL(env.POLL_URL);
  const source = `${parsed.origin}${parsed.pathname}`;
  const digest = new Bun.CryptoHasher("sha256").update(source).digest("hex");
  return {
    url: env.POLL_URL,
    source,
    namespace: `poll.${digest.slice(0, 8)}`,
    topic: env.POLL_TOPIC,
    dlq: `${env.POLL_TOPIC}.dlq`,
    seenTopic: `${env.POLL_TOPIC}.seen`,
    recordsPath: env.POLL_RECORDS_PATH ? env.POLL_RECORDS_PATH.split(".") : [],
    idField: env.POLL_ID_FIELD,
    keyField: env.POLL_KEY_FIELD,
    schema: chosen.schema,
    headers: env.POLL_HEADERS ?? {},
    intervalMs: env.POLL_INTERVAL_MS,
    timeoutMs: env.POLL_TIMEOUT_MS,
  };
}

/** The array at `path` in `body`, or a message that says where it is not. */
export function recordsAt(
  body: unknown,
  path: string[],
): { ok: true; records: unknown[] } | { ok: false; reason: string } {
  let here = body;
  for (const [i, step] of path.entries()) {
    if (typeof here !== "object" || here === null || Array.isArray(here) || !(step in here))
      return { ok: false, reason: `the response has no ${path.slice(0, i + 1).join(".")}` };
    here = (here as Record<string, unknown>)[step];
  }
  if (!Array.isArray(here)) return { ok: false, reason: `${path.join(".") || "the response"} is not an array` };
  return { ok: true, records: here };
}

/** Characters an event_id may hold (shared/schemas.ts's EventId), and its length. */
const EVENT_ID_TEXT = /^[A-Za-z0-9._:-]+$/;
const EVENT_ID_MAX = 128;

/**
 * The event_id of the polled record `id`: `<namespace>:<id>`, or the id's SHA-256 where the id has characters an
 * event_id may not or would make it too long. The same record polled again, by this process or after a restart,
 * gets the same event_id, so the stores downstream keep it once.
 *
 * @example
 * eventIdOf("poll.1a2b3c4d", "ping-42"); // "poll.1a2b3c4d:ping-42"
 * eventIdOf("poll.1a2b3c4d", "ping 42"); // "poll.1a2b3c4d:sha256:5f0c..." (40 hex digits)
 */
export function eventIdOf(namespace: string, id: string): string {
  const plain = `${namespace}:${id}`;
  if (EVENT_ID_TEXT.test(id) && plain.length <= EVENT_ID_MAX) return plain;
  return `${namespace}:sha256:${new Bun.CryptoHasher("sha256").update(id).digest("hex").slice(0, 40)}`;
}

/** The identity of a polled element: its POLL_ID_FIELD as text, or undefined when it has none usable. */
function identityOf(element: unknown, field: string): string | undefined {
  if (typeof element !== "object" || element === null || Array.isArray(element)) return undefined;
  const id = (element as Record<string, unknown>)[field];
  if (typeof id === "number" && Number.isFinite(id)) return String(id);
  return typeof id === "string" && id.trim() !== "" ? id : undefined;
}

/** One page's records sorted out: what to publish, what to dead-letter, what to mark seen once both are acked. */
export interface PageRecords {
  events: OutRecord[];
  deadLetters: OutRecord[];
  /** The event_ids of both, to mark seen. */
  ids: string[];
  duplicates: number;
}

/**
 * Sorts `elements` into events for `settings.topic` (validated, with their event_id and `ingested_at` as
 * ingest gives them) and dead letters for its DLQ, skipping every id `seen` holds or the page repeats.
 *
 * @example
 * const page = sortPage(records, settings, seen);
 * // page.events[0].value: {"user_id":"u1",...,"event_id":"poll.1a2b3c4d:ping-42","ingested_at":"..."}
 */
export function sortPage(elements: unknown[], settings: PollSettings, seen: ReadonlySet<string>): PageRecords {
  const page: PageRecords = { events: [], deadLetters: [], ids: [], duplicates: 0 };
  const inPage = new Set<string>();
  const ingestedAt = new Date().toISOString();
  for (const element of elements) {
    const id = identityOf(element, settings.idField);
    const eventId = id === undefined ? undefined : eventIdOf(settings.namespace, id);
    if (eventId !== undefined && (seen.has(eventId) || inPage.has(eventId))) {
      page.duplicates++;
      continue;
    }
    try {
      if (eventId === undefined)
        throw new DecodeError(`${settings.idField}: is missing (POLL_ID_FIELD names what identifies a record)`);
      // The identity becomes the event_id; the schema judges the rest, unknown fields included.
      const { [settings.idField]: _, ...fields } = element as Record<string, unknown>;
      const event = validate(settings.schema, fields) as Record<string, unknown>;
      const value = JSON.stringify({ ...event, event_id: eventId, ingested_at: ingestedAt });
      page.events.push({ topic: settings.topic, key: String(event[settings.keyField]), value });
    } catch (error) {
      const key = (element as Record<string, unknown> | null)?.[settings.keyField];
      const headers = deadLetterHeaders({ topic: settings.topic, partition: -1, offset: -1n }, error, "poll");
      page.deadLetters.push({
        topic: settings.dlq,
        key: typeof key === "string" ? key : undefined,
        value: JSON.stringify(element) ?? "null",
        headers: { ...headers, "dlq.source.url": settings.source, ...(id !== undefined && { "dlq.source.id": id }) },
      });
    }
    if (eventId !== undefined) {
      inPage.add(eventId);
      page.ids.push(eventId);
    }
  }
  return page;
}
