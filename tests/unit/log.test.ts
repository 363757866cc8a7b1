import { describe, expect, test } from "bun:test";
import { join } from "node:path";

const LOG_MODULE = join(import.meta.dir, "..", "..", "shared", "log.ts");

/** The lines a stage's logger writes to stdout for `script`, which gets `log` (a logger at info) in scope. */
async function logged(script: string): Promise<Record<string, unknown>[]> {
  const code = `import { createLogger } from ${JSON.stringify(LOG_MODULE)}; const log = createLogger("test", "info"); ${script}`;
  const child = Bun.spawn(["bun", "-e", code], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(child.stdout).text();
  expect(await child.exited).toBe(0);
  return out
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
}

describe("log redaction", () => {
  test("passwords and secrets are replaced, at the top and nested, and the rest of the line stays", async () => {
    const [line] = await logged(`log.info({
      password: "top-s3cret",
      KAFKA_SASL_PASSWORD: "env-s3cret",
      env: { KAFKA_SASL_PASSWORD: "nested-s3cret", KAFKA_SASL_USERNAME: "pipeline" },
      kafka: { brokers: ["b:9093"], sasl: { mechanism: "PLAIN", username: "pipeline", password: "deep-s3cret" } },
    }, "connecting");`);
    expect(JSON.stringify(line)).not.toContain("s3cret");
    expect(line).toMatchObject({
      msg: "connecting",
      password: "***",
      KAFKA_SASL_PASSWORD: "***",
      env: { KAFKA_SASL_PASSWORD: "***", KAFKA_SASL_USERNAME: "pipeline" },
      kafka: { brokers: ["b:9093"], sasl: { username: "pipeline", password: "***" } },
    });
  });

  test("a database URL keeps everything but its password", async () => {
    const [line] = await logged(
      `log.warn({ DATABASE_URL: "postgres://pipeline:db-s3cret@db:5432/pipeline", env: { DATABASE_URL: "postgres://u:p4ss@h/x" } }, "db");`,
    );
    expect(line).toMatchObject({
      DATABASE_URL: "postgres://pipeline:***@db:5432/pipeline",
      env: { DATABASE_URL: "postgres://u:***@h/x" },
    });
  });
});
