/**
 * The ceiling that ingest is measured against: the same Bun + Hono shape with a POST route that reads and parses
 * the JSON body and answers 202 without validating or producing anything (the "no-op POST" ceiling).
 * Run with `NOOP_PORT=<port> bun run bench/noop.ts`.
 */
import { Hono } from "hono";

/** The no-op app: `/readyz` for the bench's readiness poll, and a POST route that only parses its body. */
export function createNoopApp(): Hono {
  const app = new Hono();
  app.get("/readyz", (c) => c.json({ status: "ready" }));
  app.post("/v1/locations", async (c) => {
    await c.req.json();
    return c.json({ accepted: 1 }, 202);
  });
  return app;
}

if (import.meta.main) {
  const server = Bun.serve({ port: Number(process.env.NOOP_PORT ?? 3001), fetch: createNoopApp().fetch });
  process.once("SIGTERM", () => server.stop().then(() => process.exit(0)));
}
