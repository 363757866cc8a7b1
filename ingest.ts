/**
 * ingest: events in over HTTP, out to the raw topics keyed by whose event it is (user_id, vehicle_id). A 202
 * means the broker has acknowledged every event of the request; anything else means none of them was accepted
 * (a 503 may still have reached the broker, which is why clients that retry send their own event_id).
 */
import { dirname, join } from "node:path";
import { Scalar } from "@scalar/hono-api-reference";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import { parseEvents } from "./ingest/body.ts";
import { ERRORS } from "./ingest/errors.ts";
import { guard } from "./ingest/guard.ts";
import { buildOpenApi, EVENT_ROUTES, type EventRoute } from "./ingest/openapi.ts";
import { statusHandler } from "./ingest/status.ts";
import { counter, histogram } from "./shared/metrics.ts";
import { main, type Stage, type StageContext } from "./shared/runner.ts";
import { createPublisher } from "./shared/source.ts";

const RETRY_AFTER_SECONDS = "1";

/**
 * The reference page's script, the standalone bundle @scalar/api-reference ships: served from here, because the
 * middleware's default is a CDN and the page should work where the API does, offline included.
 */
const SCALAR_SCRIPT = join(dirname(Bun.resolveSync("@scalar/api-reference", import.meta.dir)), "browser/standalone.js");
const SCRIPT_HEADERS = { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=3600" };

/** `GET /docs`: Scalar's reference of /openapi.json, with no font, telemetry or script from elsewhere. */
const docsPage = Scalar({
  url: "/openapi.json",
  cdn: "/docs/scalar.js",
  pageTitle: "event-pipeline ingest API",
  withDefaultFonts: false,
  telemetry: false,
});

/** The ingest routes; the runner adds the health routes and serves them on `INGEST_PORT`. */
function createIngestApp({ env: config, producer, log, registry }: StageContext) {
  const publish = createPublisher(producer, config.INGEST_ACK_TIMEOUT_MS);
  const requests = counter(registry, "http_requests_total", "HTTP requests", ["route", "status"]);
  const events = counter(registry, "ingest_events_total", "Events by topic and outcome", ["topic", "outcome"]);
  const produceSeconds = histogram(registry, "ingest_produce_seconds", "Time until the broker acked a request");

  /**
   * A handler that validates a body against the route's schema and produces it to its topic keyed by each
   * event's key field, all or nothing.
   */
  function accept({ topic, schema, key }: EventRoute) {
    return async (c: Context) => {
      const encoding = c.req.header("content-encoding")?.trim().toLowerCase();
      if (encoding && encoding !== "identity") {
        return c.json({ error: ERRORS.compressed(encoding) }, 415);
      }
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      const parsed = parseEvents(schema, c.req.header("content-type"), bytes, config.INGEST_MAX_EVENTS);
      if (!parsed.ok) {
        const { ok: _, status, ...body } = parsed;
        return c.json(body, status);
      }
      const ingestedAt = new Date().toISOString();
      // The parsed events are fresh objects: completed in place, in one pass, rather than copied twice.
      const eventIds: string[] = [];
      const records = parsed.events.map((event) => {
        event.event_id ??= Bun.randomUUIDv7();
        event.ingested_at = ingestedAt;
        eventIds.push(event.event_id);
        // The route's schema requires its key field as a string, so String() only names the type it has.
        return { topic, key: String(event[key]), value: JSON.stringify(event) };
      });

      const timer = produceSeconds.startTimer();
      const published = await publish(records);
      timer();
      if (!published.ok) {
        log.warn({ reason: published.reason, topic, events: records.length }, "broker did not acknowledge the events");
        events.inc({ topic, outcome: "unacknowledged" }, records.length);
        c.header("Retry-After", RETRY_AFTER_SECONDS);
        return c.json({ error: ERRORS.notAcknowledged }, 503);
      }
      events.inc({ topic, outcome: "accepted" }, records.length);
      return c.json({ accepted: records.length, event_ids: eventIds }, 202);
    };
  }

  const app = new Hono();
  app.use(secureHeaders(), requestId());
  app.use(async (c, next) => {
    await next();
    requests.inc({ route: c.req.routePath, status: c.res.status });
  });
  app.use(
    "/v1/*",
    ...guard({
      apiKeys: config.INGEST_API_KEYS,
      ratePerSecond: config.INGEST_RATE_LIMIT_PER_SECOND,
      behindProxy: config.INGEST_BEHIND_PROXY,
    }),
    bodyLimit({
      maxSize: config.INGEST_BODY_LIMIT_BYTES,
      onError: (c) => c.json({ error: ERRORS.bodyTooLarge(config.INGEST_BODY_LIMIT_BYTES) }, 413),
    }),
  );
  for (const route of EVENT_ROUTES) app.post(route.path, accept(route));
  const document = buildOpenApi(config);
  app.get("/openapi.json", (c) => c.json(document));
  app.get("/docs", docsPage);
  app.get("/docs/scalar.js", (c) => c.body(Bun.file(SCALAR_SCRIPT).stream(), 200, SCRIPT_HEADERS));
  app.get("/", statusHandler({ events, brokerReachable: () => producer.ping() }));
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    if ("getResponse" in error && typeof error.getResponse === "function") return error.getResponse() as Response;
    log.error({ err: error }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

/** The ingest stage: the HTTP API on `INGEST_PORT`, producing to the raw topics. */
export const ingest: Stage = {
  name: "ingest",
  port: "INGEST_PORT",
  ackTimeoutMs: (env) => env.INGEST_ACK_TIMEOUT_MS,
  processes: (env) => env.INGEST_PROCESSES,
  start(context) {
    if (context.env.INGEST_API_KEYS.length === 0)
      context.log.warn("INGEST_API_KEYS is unset: the API accepts requests without a key");
    return { routes: createIngestApp(context) };
  },
};

if (import.meta.main) await main(ingest);
