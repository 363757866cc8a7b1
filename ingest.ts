/**
 * ingest: events in over HTTP, out to the raw topics keyed by user_id. A 202 means the broker has acknowledged
 * every event of the request; anything else means none of them was accepted (a 503 may still have reached the
 * broker, which is why clients that retry send their own event_id).
 */
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { requestId } from "hono/request-id";
import { secureHeaders } from "hono/secure-headers";
import type * as v from "valibot";
import { parseEvents } from "./ingest/body.ts";
import { guard } from "./ingest/guard.ts";
import { type Config, config } from "./shared/config.ts";
import { within } from "./shared/deadline.ts";
import { healthRoutes, serve } from "./shared/http.ts";
import { createProducer, type KafkaProducer } from "./shared/kafka.ts";
import { createLifecycle } from "./shared/lifecycle.ts";
import { createLogger, type Logger } from "./shared/log.ts";
import { counter, createRegistry, histogram } from "./shared/metrics.ts";
import { LocationEvent, LoginEvent } from "./shared/schemas.ts";
import { TOPICS } from "./shared/topics.ts";

export interface IngestDeps {
  config: Config;
  producer: KafkaProducer;
  log: Logger;
  /** False once shutdown has begun, so load balancers stop routing here. */
  accepting: () => boolean;
}

const RETRY_AFTER_SECONDS = "1";

/** The ingest HTTP app: event routes, health and metrics. */
export function createIngestApp({ config, producer, log, accepting }: IngestDeps) {
  const registry = createRegistry("ingest");
  const requests = counter(registry, "http_requests_total", "HTTP requests", ["route", "status"]);
  const events = counter(registry, "ingest_events_total", "Events by topic and outcome", ["topic", "outcome"]);
  const produceSeconds = histogram(registry, "ingest_produce_seconds", "Time until the broker acked a request");

  /** A handler that validates a body against `schema` and produces it to `topic`, all or nothing. */
  function accept(topic: string, schema: v.GenericSchema<unknown, LocationEvent | LoginEvent>) {
    return async (c: Context) => {
      const encoding = c.req.header("content-encoding")?.trim().toLowerCase();
      if (encoding && encoding !== "identity") {
        return c.json({ error: `content encoding "${encoding}" is not supported; send the body uncompressed` }, 415);
      }
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      const parsed = parseEvents(schema, c.req.header("content-type"), bytes, config.INGEST_MAX_EVENTS);
      if (!parsed.ok) {
        const { ok: _, status, ...body } = parsed;
        return c.json(body, status);
      }
      const ingestedAt = new Date().toISOString();
      const accepted = parsed.events.map((event) => ({
        ...event,
        event_id: event.event_id ?? Bun.randomUUIDv7(),
        ingested_at: ingestedAt,
      }));
      const records = accepted.map((event) => ({ topic, key: event.user_id, value: JSON.stringify(event) }));

      const timer = produceSeconds.startTimer();
      const sent = producer.send(records).then(
        () => true as const,
        (error: unknown) => error,
      );
      const acked = await within(
        sent,
        config.INGEST_ACK_TIMEOUT_MS,
        `no acknowledgement within ${config.INGEST_ACK_TIMEOUT_MS} ms`,
      );
      timer();
      if (acked !== true) {
        const reason = acked instanceof Error ? acked.message : String(acked);
        log.warn({ reason, topic, events: records.length }, "broker did not acknowledge the events");
        events.inc({ topic, outcome: "unacknowledged" }, records.length);
        c.header("Retry-After", RETRY_AFTER_SECONDS);
        return c.json(
          { error: "the broker did not acknowledge the events in time; retry with the same event_ids" },
          503,
        );
      }
      events.inc({ topic, outcome: "accepted" }, records.length);
      return c.json({ accepted: accepted.length, event_ids: accepted.map((event) => event.event_id) }, 202);
    };
  }

  const app = new Hono();
  app.use(secureHeaders(), requestId());
  app.use(async (c, next) => {
    await next();
    requests.inc({ route: c.req.routePath, status: c.res.status });
  });
  app.route("/", healthRoutes({ registry, ready: async () => accepting() && (await producer.ping()) }));
  app.use(
    "/v1/*",
    ...guard({
      apiKeys: config.INGEST_API_KEYS,
      ratePerSecond: config.INGEST_RATE_LIMIT_PER_SECOND,
      behindProxy: config.INGEST_BEHIND_PROXY,
    }),
    bodyLimit({
      maxSize: config.INGEST_BODY_LIMIT_BYTES,
      onError: (c) => c.json({ error: `body is larger than ${config.INGEST_BODY_LIMIT_BYTES} bytes` }, 413),
    }),
  );
  app.post("/v1/locations", accept(TOPICS.locationsRaw, LocationEvent));
  app.post("/v1/logins", accept(TOPICS.loginsRaw, LoginEvent));
  app.notFound((c) => c.json({ error: `no route for ${c.req.method} ${c.req.path}` }, 404));
  app.onError((error, c) => {
    if ("getResponse" in error && typeof error.getResponse === "function") return error.getResponse() as Response;
    log.error({ err: error }, "unhandled error");
    return c.json({ error: "internal error" }, 500);
  });
  return app;
}

if (import.meta.main) {
  const env = config();
  const log = createLogger("ingest", env.LOG_LEVEL);
  const lifecycle = createLifecycle(log, env.SHUTDOWN_TIMEOUT_MS);
  if (env.INGEST_API_KEYS.length === 0) log.warn("INGEST_API_KEYS is unset: the API accepts requests without a key");

  const producer = createProducer({
    brokers: env.KAFKA_BROKERS,
    clientId: "ingest",
    timeoutMs: env.INGEST_ACK_TIMEOUT_MS,
  });
  const app = createIngestApp({ config: env, producer, log, accepting: () => !lifecycle.stopping });
  const server = serve(app, env.INGEST_PORT);
  log.info({ port: server.port, brokers: env.KAFKA_BROKERS }, "ingest listening");

  lifecycle.onShutdown("stop accepting and finish in-flight requests", () => server.stop());
  lifecycle.onShutdown("flush the producer", () => producer.close());
}
