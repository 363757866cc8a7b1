/**
 * The environment, read and validated once at start. Every variable has a default so each script runs with no
 * configuration against `bun run stack` or compose; a bad value stops the service with one message that lists
 * every bad variable.
 */
import * as v from "valibot";

const integer = (fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  v.pipe(
    v.optional(v.string(), String(fallback)),
    v.trim(),
    v.regex(/^\d+$/, "must be a whole number"),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );

const port = (fallback: number) => integer(fallback, 1, 65535);

const list = (fallback: string) =>
  v.pipe(
    v.optional(v.string(), fallback),
    v.transform((s) =>
      s
        .split(",")
        .map((part) => part.trim())
        .filter(Boolean),
    ),
  );

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

const hostPort = v.pipe(v.string(), v.regex(/^[^\s:]+:\d{1,5}$/, "must be host:port"));

const EnvSchema = v.object({
  KAFKA_BROKERS: v.pipe(
    list("127.0.0.1:19092"),
    v.minLength(1, "must name at least one broker"),
    v.array(hostPort, "must be a comma-separated list of host:port"),
  ),
  DATABASE_URL: v.pipe(
    v.optional(v.string(), "postgres://pipeline:pipeline@127.0.0.1:5432/pipeline"),
    v.regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL"),
  ),
  TOPIC_PARTITIONS: integer(6, 1, 1000),
  LOG_LEVEL: v.optional(v.picklist(LOG_LEVELS, `must be one of ${LOG_LEVELS.join(", ")}`), "info"),
  SHUTDOWN_TIMEOUT_MS: integer(10_000, 100),
  INGEST_PORT: port(3000),
  INGEST_BODY_LIMIT_BYTES: integer(1_048_576, 1, 64 * 1_048_576),
  INGEST_MAX_EVENTS: integer(10_000, 1),
  INGEST_ACK_TIMEOUT_MS: integer(5_000, 1),
  INGEST_API_KEYS: list(""),
  INGEST_RATE_LIMIT_PER_SECOND: integer(0, 0),
  INGEST_BEHIND_PROXY: v.pipe(
    v.optional(v.picklist(["true", "false"], "must be true or false"), "false"),
    v.transform((flag) => flag === "true"),
  ),
  ENRICH_PORT: port(3001),
  AGGREGATE_PORT: port(3002),
  PERSIST_PORT: port(3003),
  INTERVALS_PORT: port(3004),
  /** Which store persist writes to; persist checks the name against the sinks it knows. */
  PERSIST_SINK: v.optional(
    v.pipe(v.string(), v.trim(), v.regex(/^[a-z][a-z0-9-]*$/, "must be a sink name")),
    "postgres",
  ),
  BATCH_MAX_RECORDS: integer(5_000, 1, 100_000),
  WINDOW_SECONDS: integer(10, 1, 86_400),
  WINDOW_GRACE_SECONDS: integer(5, 0, 86_400),
  WINDOW_IDLE_TICK_MS: integer(1_000, 10, 60_000),
});

export type Config = v.InferOutput<typeof EnvSchema>;

/** A message that names every bad variable, with the value it had. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses the environment; throws a {@link ConfigError} listing every bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const result = v.safeParse(EnvSchema, env, { abortPipeEarly: true });
  if (result.success) return result.output;
  const lines = result.issues.map((issue) => {
    const name = String(issue.path?.[0]?.key ?? "environment");
    return `  ${name}=${JSON.stringify(env[name] ?? "")}: ${issue.message}`;
  });
  throw new ConfigError(`invalid environment:\n${lines.join("\n")}`);
}

let loaded: Config | undefined;

/** The process's configuration, parsed from `process.env` on first use; exits with the error list if invalid. */
export function config(): Config {
  if (loaded) return loaded;
  try {
    loaded = parseConfig(process.env);
  } catch (error) {
    console.error(error instanceof ConfigError ? error.message : error);
    process.exit(1);
  }
  return loaded;
}
