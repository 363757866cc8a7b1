/**
 * The operational endpoints every stage serves: `/healthz` (the process runs), `/readyz` (it can do its work
 * now) and `/metrics` (Prometheus). Consumers serve them on their own port; ingest mounts them in its app.
 */
import { Hono } from "hono";
import type { Registry } from "prom-client";

export interface HealthOptions {
  registry: Registry;
  /** Whether the stage can do its work right now (its broker or database answers, it is not stopping). */
  ready: () => boolean | Promise<boolean>;
  /** The `/metrics` text: `registry`'s own unless the stage runs as several processes (cluster.ts). */
  exposition?: () => Promise<string>;
}

/** A Hono app with `/healthz`, `/readyz` and `/metrics`. */
export function healthRoutes({ registry, ready, exposition = () => registry.metrics() }: HealthOptions): Hono {
  return new Hono()
    .get("/healthz", (c) => c.json({ status: "ok" }))
    .get("/readyz", async (c) => ((await ready()) ? c.json({ status: "ready" }) : c.json({ status: "not ready" }, 503)))
    .get("/metrics", async (c) => c.body(await exposition(), 200, { "content-type": registry.contentType }));
}

/**
 * Serves `app` on `port`; the returned server's `stop()` stops accepting and lets in-flight requests finish.
 * With `reusePort`, other processes may listen on the same port and the kernel spreads connections over them.
 */
export function serve(app: Hono, port: number, reusePort = false) {
  return Bun.serve({ port, reusePort, fetch: app.fetch });
}
