/**
 * The OpenAPI 3.1 document of the ingest API. Event bodies are converted from the valibot schemas the routes
 * validate with, and every error example is what the API itself answers (the 400s and 415 come from running
 * `parseEvents` on the example requests), so the document cannot promise what the API does not do.
 */
import { type ConversionConfig, toJsonSchema } from "@valibot/to-json-schema";
import * as v from "valibot";
import type { Config } from "../shared/config.ts";
import { LocationEvent, LoginEvent, VehicleEvent } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import { JSON_TYPE, NDJSON_TYPES, parseEvents } from "./body.ts";
import { ERRORS } from "./errors.ts";

/**
 * An event route: its path, topic, record key, schema, and request examples. The valid ones carry their own
 * event_id, so their 202 is known in advance; the document's 400 example is what the API answers to `invalid`.
 */
export interface EventRoute {
  path: string;
  topic: string;
  key: "user_id" | "vehicle_id";
  name: string;
  schema: v.GenericSchema<unknown, { event_id?: string | undefined; [field: string]: unknown }>;
  summary: string;
  examples: { object: object; array: object[]; invalid: object };
}

/** The three event routes, as ingest serves them and the document describes them. */
export const EVENT_ROUTES: EventRoute[] = [
  {
    path: "/v1/locations",
    topic: TOPICS.locationsRaw,
    key: "user_id",
    name: "LocationEvent",
    schema: LocationEvent,
    summary: "Location pings",
    examples: {
      object: { event_id: "doc-location-1", user_id: "u1", timestamp: "1694479551", lat: -31.677696, long: -65.030317 },
      array: [
        { event_id: "doc-location-2", user_id: "u1", timestamp: "2023-09-12T00:45:51Z", lat: 40.7128, long: -74.006 },
        { event_id: "doc-location-3", user_id: "u2", timestamp: 1694479551000, lat: 51.5074, long: -0.1278 },
      ],
      invalid: { user_id: "u1", timestamp: "yesterday", lat: 91, long: -65.03 },
    },
  },
  {
    path: "/v1/logins",
    topic: TOPICS.loginsRaw,
    key: "user_id",
    name: "LoginEvent",
    schema: LoginEvent,
    summary: "User logins",
    examples: {
      object: {
        event_id: "doc-login-1",
        user_id: "u1",
        timestamp: 1694479551,
        device_type: "android",
        app_version: "2.3.0",
      },
      array: [
        { event_id: "doc-login-2", user_id: "u1", timestamp: "2023-09-12 00:45:51.156000", ip: "203.0.113.7" },
        { event_id: "doc-login-3", user_id: "u2", timestamp: "2023-09-12T00:45:51+02:00", locale: null },
      ],
      invalid: { user_id: "", timestamp: 1694479551, browser: "firefox" },
    },
  },
  {
    path: "/v1/vehicles",
    topic: TOPICS.vehiclesRaw,
    key: "vehicle_id",
    name: "VehicleEvent",
    schema: VehicleEvent,
    summary: "Vehicle position reports",
    examples: {
      object: {
        event_id: "doc-vehicle-1",
        vehicle_id: "van-7",
        timestamp: 1694479551,
        lat: -31.41,
        long: -64.18,
        speed: 42.5,
        heading: 271.5,
        metadata: { driver: "d-12", odometer_km: 80211.4 },
      },
      array: [
        { event_id: "doc-vehicle-2", vehicle_id: "van-7", timestamp: 1694479561, lat: -31.4, long: -64.17, speed: 40 },
        { event_id: "doc-vehicle-3", vehicle_id: "van-8", timestamp: 1694479561, lat: -31.5, long: -64.2, speed: 0 },
      ],
      invalid: { vehicle_id: "van-7", timestamp: 1694479551, lat: -31.41, long: -64.18, speed: 612, heading: 360 },
    },
  },
];

/** The NDJSON media type the document names (the others are aliases the API also takes). */
const NDJSON_TYPE = NDJSON_TYPES[0] as string;

/**
 * How the valibot schemas convert. "output" starts each pipe at its last schema: an event is
 * `pipe(jsonObject, strictObject)` (a custom "not an array" guard, which `type: "object"` already says, then the
 * object), so the object is what converts. A timestamp's only schema is its union of string and number, which is
 * what a client sends; the transforms after it (to the ISO string on the topics) are not part of the request,
 * so they are ignored. The other ignored actions narrow a value with code JSON Schema cannot express (NUL and
 * lone surrogates, trimming, finiteness, metadata's key count and reserved keys); every 400 names them.
 */
const CONVERSION: ConversionConfig = {
  target: "draft-2020-12",
  typeMode: "output",
  errorMode: "throw",
  ignoreActions: ["transform", "check", "raw_check", "trim", "finite"],
};

function convert(schema: v.GenericSchema): Record<string, unknown> {
  const { $schema: _, ...json } = toJsonSchema(schema, CONVERSION);
  return json;
}

const Accepted = v.object({
  accepted: v.pipe(v.number(), v.integer(), v.minValue(1)),
  event_ids: v.array(v.string()),
});

const ErrorBody = v.object({
  error: v.string(),
  issues: v.optional(
    v.array(v.object({ index: v.pipe(v.number(), v.integer()), path: v.string(), message: v.string() })),
  ),
  issue_count: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1))),
});

/** What `GET /` answers as JSON. */
export const StatusBody = v.object({
  service: v.literal("ingest"),
  broker_reachable: v.boolean(),
  events_accepted: v.object({ locations: v.number(), logins: v.number(), vehicles: v.number() }),
  links: v.object({ docs: v.string(), openapi: v.string(), metrics: v.string(), healthz: v.string() }),
});

/** The links `GET /` shows. */
export const LINKS = { docs: "/docs", openapi: "/openapi.json", metrics: "/metrics", healthz: "/healthz" };

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errorContent = (examples: Record<string, { summary: string; value: unknown }>) => ({
  "application/json": { schema: ref("Error"), examples },
});
const retryAfter = {
  "Retry-After": { description: "Seconds to wait before retrying", schema: { type: "integer", minimum: 0 } },
};
const encoder = new TextEncoder();

/** What the API answers to `body` of `type` on `route`, when the body is the problem (400, 413, 415). */
function rejection(route: EventRoute, type: string, body: string, maxEvents: number) {
  const parsed = parseEvents(route.schema, type, encoder.encode(body), maxEvents);
  if (parsed.ok) throw new Error(`the example for ${route.path} is valid: ${body}`);
  const { ok: _, status: __, ...answer } = parsed;
  return answer;
}

function eventOperation(route: EventRoute, config: Config) {
  const { object, array, invalid } = route.examples;
  const ndjson = array.map((event) => JSON.stringify(event)).join("\n");
  const accepted = (events: object[]) => ({
    accepted: events.length,
    event_ids: events.map((event) => (event as { event_id: string }).event_id),
  });
  const tooMany = `[${Array(config.INGEST_MAX_EVENTS + 1).fill("{}")}]`;
  return {
    post: {
      operationId: `post${route.name}s`,
      summary: route.summary,
      description:
        `Validates every event against ${route.name} and produces them to \`${route.topic}\`, keyed by ` +
        `\`${route.key}\`. A request is all or nothing: 202 only once the broker has every event.`,
      tags: ["events"],
      requestBody: {
        required: true,
        content: {
          [JSON_TYPE]: {
            schema: { oneOf: [ref(route.name), { type: "array", items: ref(route.name), minItems: 1 }] },
            examples: {
              object: { summary: "One event", value: object },
              array: { summary: "An array of events", value: array },
              invalid: { summary: "An invalid event (400)", value: invalid },
            },
          },
          [NDJSON_TYPE]: {
            schema: { type: "string", description: `One ${route.name} as JSON per line` },
            examples: { ndjson: { summary: "One event per line", value: ndjson } },
          },
        },
      },
      responses: {
        202: {
          description: "The broker has every event",
          content: {
            "application/json": {
              schema: ref("Accepted"),
              examples: {
                object: { summary: "One event", value: accepted([object]) },
                array: { summary: "An array of events", value: accepted(array) },
                ndjson: { summary: "One event per line", value: accepted(array) },
              },
            },
          },
        },
        400: {
          description:
            "Invalid events (each listed by index and field, at most 100), malformed JSON, a bad NDJSON line, " +
            "invalid UTF-8 or an empty body; nothing was produced",
          content: errorContent({
            invalid: { summary: "An invalid event", value: rejection(route, JSON_TYPE, JSON.stringify(invalid), 1) },
          }),
        },
        401: {
          description: "`INGEST_API_KEYS` is set and the bearer key is missing or unknown",
          content: errorContent({
            missing: { summary: "No Authorization header", value: { error: ERRORS.missingKey } },
          }),
        },
        413: {
          description: `The body is over ${config.INGEST_BODY_LIMIT_BYTES} bytes or holds more than ${config.INGEST_MAX_EVENTS} events`,
          content: errorContent({
            body: {
              summary: "Body over the limit",
              value: { error: ERRORS.bodyTooLarge(config.INGEST_BODY_LIMIT_BYTES) },
            },
            events: {
              summary: "Too many events",
              value: rejection(route, JSON_TYPE, tooMany, config.INGEST_MAX_EVENTS),
            },
          }),
        },
        415: {
          description: "Another content type, or a compressed body (`Content-Encoding` other than `identity`)",
          content: errorContent({
            type: { summary: "text/plain", value: rejection(route, "text/plain", "{}", 1) },
            encoding: { summary: "Content-Encoding: gzip", value: { error: ERRORS.compressed("gzip") } },
          }),
        },
        429: {
          description:
            "Over `INGEST_RATE_LIMIT_PER_SECOND` requests per second for the key (or client address); never " +
            `while it is 0 (off)${config.INGEST_RATE_LIMIT_PER_SECOND === 0 ? ", as on this server" : ""}`,
          headers: retryAfter,
          content: errorContent({
            limited: {
              summary: "Over the rate",
              value: { error: ERRORS.rateLimited(Math.max(config.INGEST_RATE_LIMIT_PER_SECOND, 1)) },
            },
          }),
        },
        503: {
          description:
            `The broker did not acknowledge within ${config.INGEST_ACK_TIMEOUT_MS} ms; some events may have been ` +
            "written, so retry with the same event_ids",
          headers: retryAfter,
          content: errorContent({
            timeout: { summary: "No acknowledgement", value: { error: ERRORS.notAcknowledged } },
          }),
        },
      },
    },
  };
}

/** A GET without parameters that answers one `type`; `schema` and `example` describe its 200. */
function read(summary: string, type: string, schema: object, example: unknown, more: object = {}) {
  return {
    get: {
      summary,
      tags: ["operations"],
      security: [],
      responses: { 200: { description: summary, content: { [type]: { schema, example } } }, ...more },
    },
  };
}

/**
 * The OpenAPI 3.1 document of the ingest API as `config` runs it: its limits in the descriptions and examples,
 * and the bearer scheme required when `INGEST_API_KEYS` is set, optional otherwise.
 *
 * @example
 * const document = buildOpenApi(parseConfig(process.env));
 * app.get("/openapi.json", (c) => c.json(document));
 */
export function buildOpenApi(config: Config) {
  const keysRequired = config.INGEST_API_KEYS.length > 0;
  const paths: Record<string, object> = {};
  for (const route of EVENT_ROUTES) {
    const operation = eventOperation(route, config);
    paths[route.path] = {
      post: { ...operation.post, security: keysRequired ? [{ bearer: [] }] : [{}, { bearer: [] }] },
    };
  }
  const schemas: Record<string, object> = {
    ...Object.fromEntries(EVENT_ROUTES.map((route) => [route.name, convert(route.schema)])),
    Accepted: convert(Accepted),
    Error: convert(ErrorBody),
    Status: convert(StatusBody),
  };
  const statusExample = {
    service: "ingest",
    broker_reachable: true,
    events_accepted: { locations: 3, logins: 0, vehicles: 1 },
    links: LINKS,
  };
  const health = (status: string) => ({ type: "object", properties: { status: { const: status } } });
  return {
    openapi: "3.1.0",
    info: {
      title: "event-pipeline ingest API",
      version: "1.0.0",
      description:
        "Location, login and vehicle events in over HTTP, out to the raw Kafka topics. Bodies are one JSON " +
        "object, a JSON array, or NDJSON; a request is all or nothing.",
    },
    tags: [
      { name: "events", description: "The event routes" },
      { name: "operations", description: "Health, metrics, status and this document" },
    ],
    paths: {
      ...paths,
      "/": {
        get: {
          summary: "Status: events accepted since start, whether the broker answers, links",
          description: "A browser (`Accept: text/html`) gets a small HTML page; anything else gets JSON.",
          tags: ["operations"],
          security: [],
          responses: {
            200: {
              description: "The status",
              content: {
                "application/json": { schema: ref("Status"), example: statusExample },
                "text/html": { schema: { type: "string" }, example: "<!doctype html>..." },
              },
            },
          },
        },
      },
      "/healthz": read("The process runs", "application/json", health("ok"), { status: "ok" }),
      "/readyz": read(
        "The broker answers and the API is not shutting down",
        "application/json",
        health("ready"),
        { status: "ready" },
        {
          503: {
            description: "The broker does not answer, or shutdown has begun",
            content: { "application/json": { schema: health("not ready"), example: { status: "not ready" } } },
          },
        },
      ),
      "/metrics": read(
        "Prometheus metrics: http_requests_total, ingest_events_total, ingest_produce_seconds, process metrics",
        "text/plain",
        { type: "string" },
        'ingest_events_total{topic="locations.raw",outcome="accepted",service="ingest"} 3\n',
      ),
      "/openapi.json": read("This document", "application/json", { type: "object" }, { openapi: "3.1.0" }),
      "/docs": read("The interactive API reference", "text/html", { type: "string" }, "<!doctype html>..."),
      "/docs/scalar.js": read(
        "The reference page's script, served from the npm package",
        "text/javascript",
        { type: "string" },
        "/* ... */",
      ),
    },
    components: {
      schemas,
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description: `One of the keys in INGEST_API_KEYS. Only checked when INGEST_API_KEYS is set: ${
            keysRequired ? "this server requires a key" : "this server has none, so a key is optional"
          }.`,
        },
      },
    },
  };
}
