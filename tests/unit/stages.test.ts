/**
 * Every stage is a value: importing its module builds the definition and does nothing else. A module that joined
 * a consumer group, opened a pool or bound a port would keep its process alive, so each import runs in a process
 * of its own that must exit by itself, with every port setting pointing at a port it must leave free.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { freePort } from "../../tools/ports.ts";

const ROOT = join(import.meta.dir, "..", "..");
const STAGES = ["ingest", "poll", "enrich", "aggregate", "intervals", "persist"];

test.each(STAGES)(
  "importing %s.ts connects to nothing and binds no port",
  async (name) => {
    const port = freePort();
    const script = `const m = await import("./${name}.ts"); const s = m["${name}"]; console.log(JSON.stringify({ name: s.name, port: s.port, start: typeof s.start }));`;
    const child = Bun.spawn(["bun", "-e", script], {
      cwd: ROOT,
      env: {
        ...process.env,
        KAFKA_BROKERS: "127.0.0.1:1",
        DATABASE_URL: "postgres://x@127.0.0.1:1/x",
        INGEST_PORT: String(port),
        ENRICH_PORT: String(port),
        AGGREGATE_PORT: String(port),
        INTERVALS_PORT: String(port),
        PERSIST_PORT: String(port),
        POLL_PORT: String(port),
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const code = await child.exited;
    clearTimeout(killer);
    const stderr = await new Response(child.stderr).text();
    expect({ code, stderr }).toEqual({ code: 0, stderr: "" });
    const definition = JSON.parse(await new Response(child.stdout).text());
    expect(definition).toEqual({ name, port: `${name.toUpperCase()}_PORT`, start: "function" });
  },
  30_000,
);
