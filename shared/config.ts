/**
 * The environment, read and validated once at start. Every variable has a default so each script runs with no
 * configuration against `bun run stack` or compose; a bad value stops the service with one message that lists
 * every bad variable.
 */
import { accessSync, constants } from "node:fs";
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

/** A switch: `on`/`off` as the managed-cluster settings are documented, `true`/`false` as the older ones. */
const flag = (fallback: boolean) =>
  v.pipe(
    v.optional(v.picklist(["on", "off", "true", "false"], "must be on or off"), fallback ? "on" : "off"),
    v.transform((value) => value === "on" || value === "true"),
  );

/** An optional value; empty counts as unset, so compose's `${NAME:-}` and a blank line in .env mean "not set". */
const optionalText = <T extends v.GenericSchema<string, unknown>>(schema: T) =>
  v.optional(
    v.pipe(
      v.string(),
      v.trim(),
      v.transform((text) => text || undefined),
      v.optional(schema),
    ),
  );

const readableFile = v.pipe(
  v.string(),
  v.trim(),
  v.check((path) => {
    try {
      accessSync(path, constants.R_OK);
      return true;
    } catch {
      return false;
    }
  }, "must be a readable file"),
);

const SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] as const;

/** libpq's sslmode values; postgres.js reads the same parameter from the URL. */
export const SSL_MODES = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] as const;
export type SslMode = (typeof SSL_MODES)[number];
/** The modes that use TLS for certain, where a CA file means something. */
const TLS_MODES: readonly string[] = ["require", "verify-ca", "verify-full"];

/**
 * The `sslmode` of a PostgreSQL URL, undefined when it names none (then postgres.js, unlike libpq, uses no TLS).
 *
 * @example
 * sslModeOf("postgres://u@db/x?sslmode=verify-full"); // "verify-full"
 */
export function sslModeOf(url: string): string | undefined {
  return new URL(url).searchParams.get("sslmode") ?? undefined;
}

const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** The client libraries behind shared/kafka's port; both pass the same contract tests. */
export const KAFKA_CLIENTS = ["librdkafka", "platformatic"] as const;
export type KafkaClientName = (typeof KAFKA_CLIENTS)[number];

const hostPort = v.pipe(v.string(), v.regex(/^[^\s:]+:\d{1,5}$/, "must be host:port"));

/** A Kafka topic name, as the broker accepts one. */
const topicName = v.pipe(v.string(), v.trim(), v.regex(/^[A-Za-z0-9._-]{1,249}$/, "must be a Kafka topic name"));

/** A field of a polled record: one name, no path. */
const fieldName = v.pipe(v.string(), v.trim(), v.regex(/^[^.\s]+$/, "must be a field name (no dots or spaces)"));

/** HTTP headers as a JSON object of strings: `{"Authorization":"Bearer ..."}`. */
const headerObject = v.pipe(
  v.string(),
  v.rawTransform(({ dataset, addIssue, NEVER }) => {
    try {
      return JSON.parse(dataset.value) as unknown;
    } catch {
      addIssue({ message: 'must be a JSON object of header names to values, e.g. {"Authorization":"Bearer ..."}' });
      return NEVER;
    }
  }),
  v.record(
    v.pipe(v.string(), v.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, "has a header name that is not a token")),
    v.string("must map each header name to a string"),
    'must be a JSON object of header names to values, e.g. {"Authorization":"Bearer ..."}',
  ),
);

/** The event schemas a poll source can validate its records against. */
export const POLL_SCHEMAS = ["location", "vehicle", "login"] as const;

const Fields = v.object({
  KAFKA_BROKERS: v.pipe(
    list("127.0.0.1:19092"),
    v.minLength(1, "must name at least one broker"),
    v.array(hostPort, "must be a comma-separated list of host:port"),
  ),
  KAFKA_CLIENT: v.optional(
    v.pipe(v.string(), v.trim(), v.picklist(KAFKA_CLIENTS, `must be one of ${KAFKA_CLIENTS.join(", ")}`)),
    "librdkafka",
  ),
  KAFKA_SASL_MECHANISM: optionalText(v.picklist(SASL_MECHANISMS, `must be one of ${SASL_MECHANISMS.join(", ")}`)),
  KAFKA_SASL_USERNAME: optionalText(v.string()),
  KAFKA_SASL_PASSWORD: optionalText(v.string()),
  KAFKA_TLS: flag(false),
  KAFKA_TLS_CA_FILE: optionalText(readableFile),
  KAFKA_TLS_CERT_FILE: optionalText(readableFile),
  KAFKA_TLS_KEY_FILE: optionalText(readableFile),
  /** Whether the broker's certificate must name the host connected to; only a private CA's odd names need off. */
  KAFKA_TLS_CHECK_SERVER_NAME: flag(true),
  /**
   * Every topic and consumer group on the broker as `<KAFKA_NAMESPACE>.<name>`: a run beside the pipeline's
   * own topics that never touches them (the benches). Empty: the names as they are.
   */
  KAFKA_NAMESPACE: optionalText(
    v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$/, "must be a topic name prefix")),
  ),
  DATABASE_URL: v.pipe(
    v.optional(v.string(), "postgres://pipeline:pipeline@127.0.0.1:5432/pipeline"),
    v.regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL"),
    v.check((url) => URL.canParse(url), "must be a postgres:// URL"),
    v.check(
      (url) => (SSL_MODES as readonly (string | undefined)[]).concat(undefined).includes(sslModeOf(url)),
      `sslmode must be one of ${SSL_MODES.join(", ")}`,
    ),
  ),
  DATABASE_TLS_CA_FILE: optionalText(readableFile),
  MONGODB_URL: v.pipe(
    v.optional(v.string(), "mongodb://127.0.0.1:27017/pipeline"),
    v.trim(),
    v.regex(/^mongodb(\+srv)?:\/\//, "must be a mongodb:// or mongodb+srv:// URL"),
    v.check((url) => URL.canParse(url), "must be a mongodb:// or mongodb+srv:// URL"),
    v.check((url) => !URL.canParse(url) || new URL(url).pathname.length > 1, "must name the database, e.g. /pipeline"),
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
  INGEST_BEHIND_PROXY: flag(false),
  /** Ingest processes on INGEST_PORT (reusePort), each with its own producer: more than one JS thread of intake. */
  INGEST_PROCESSES: integer(1, 1, 64),
  ENRICH_PORT: port(3001),
  /**
   * Timezone boundary tiles enrich keeps decoded (a few tens of KB of heap each): more tiles, fewer re-reads and
   * re-decodes of the ones the events keep coming back to, and less garbage from them.
   */
  ENRICH_TZ_CACHE_TILES: integer(1500, 1, 1_000_000),
  AGGREGATE_PORT: port(3002),
  PERSIST_PORT: port(3003),
  INTERVALS_PORT: port(3004),
  CAPTURE_PORT: port(3005),
  /** The database capture.ts reads changes from, over logical replication (its role needs REPLICATION). */
  CAPTURE_DATABASE_URL: v.pipe(
    v.optional(v.string(), "postgres://pipeline:pipeline@127.0.0.1:5432/source"),
    v.regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL"),
    v.check((url) => URL.canParse(url), "must be a postgres:// URL"),
  ),
  /** Tables to capture, `schema.table`; each goes to the topic `cdc.<schema>.<table>`. */
  CAPTURE_TABLES: v.pipe(
    list("public.users"),
    v.minLength(1, "must name at least one table"),
    v.array(v.pipe(v.string(), v.regex(/^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/, "must be schema.table (lower case)"))),
  ),
  /** The replication slot and the publication capture.ts creates if missing (one capture process per slot). */
  CAPTURE_SLOT: v.optional(v.pipe(v.string(), v.regex(/^[a-z0-9_]{1,63}$/, "must be a slot name")), "event_pipeline"),
  CAPTURE_PUBLICATION: v.optional(
    v.pipe(v.string(), v.regex(/^[a-z0-9_]{1,63}$/, "must be a publication name")),
    "event_pipeline",
  ),
  /** How often capture writes a heartbeat into the WAL, so an idle slot still moves and holds no WAL back. */
  CAPTURE_HEARTBEAT_MS: integer(10_000, 100, 3_600_000),
  MYSQL_URL: v.pipe(
    v.optional(v.string(), "mysql://pipeline:pipeline@127.0.0.1:3306/pipeline"),
    v.regex(/^mysql:\/\//, "must be a mysql:// URL"),
    v.check((url) => URL.canParse(url), "must be a mysql:// URL"),
  ),
  S3_ENDPOINT: v.pipe(
    v.optional(v.string(), "http://127.0.0.1:7070"),
    v.check((url) => URL.canParse(url) && /^https?:$/.test(new URL(url).protocol), "must be an http(s):// URL"),
  ),
  S3_BUCKET: v.optional(
    v.pipe(v.string(), v.regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be a bucket name")),
    "pipeline",
  ),
  S3_ACCESS_KEY_ID: v.optional(v.pipe(v.string(), v.minLength(1, "must not be empty")), "pipeline"),
  S3_SECRET_ACCESS_KEY: v.optional(v.pipe(v.string(), v.minLength(1, "must not be empty")), "pipeline-secret"),
  S3_REGION: v.optional(v.pipe(v.string(), v.minLength(1, "must not be empty")), "us-east-1"),
  /** An object holds at most this many records of one partition... */
  S3_ROTATE_RECORDS: integer(10_000, 1, 10_000_000),
  /** ...and is closed once its first record is this old (by the record's broker timestamp). */
  S3_ROTATE_SECONDS: integer(60, 1, 86_400),
  POLL_PORT: port(3006),
  /** Required by poll.ts (which says so at start); every other stage ignores it. */
  POLL_URL: optionalText(
    v.pipe(
      v.string(),
      v.check(
        (url) => URL.canParse(url) && /^https?:$/.test(new URL(url).protocol),
        "must be an http:// or https:// URL",
      ),
    ),
  ),
  POLL_INTERVAL_MS: integer(10_000, 100, 86_400_000),
  POLL_TIMEOUT_MS: integer(10_000, 100, 300_000),
  /** Where the records' array is in the response, e.g. `data.items`; empty for a response that is the array. */
  POLL_RECORDS_PATH: v.pipe(
    v.optional(v.string(), ""),
    v.trim(),
    v.regex(/^([^.\s]+(\.[^.\s]+)*)?$/, "must be a dotted path such as data.items, or empty"),
  ),
  POLL_KEY_FIELD: v.optional(fieldName, "user_id"),
  POLL_ID_FIELD: v.optional(fieldName, "id"),
  POLL_TOPIC: v.optional(topicName, "locations.raw"),
  POLL_HEADERS: optionalText(headerObject),
  POLL_SCHEMA: v.optional(v.picklist(POLL_SCHEMAS, `must be one of ${POLL_SCHEMAS.join(", ")}`), "location"),
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

export type Config = v.InferOutput<typeof Fields>;
type Name = keyof Config;

/** A rule between settings, reported on `name` when `holds` is false for valid values of `uses`. */
const rule = (name: Name, uses: [Name, ...Name[]], holds: (env: Config) => boolean, message: string) => {
  // Checked once every setting in `uses` is valid, even while others are not: one message lists them all.
  const check = v.partialCheck(uses.map((key) => [key]) as [[Name]], (env) => holds(env as Config), message);
  return v.forward<Config, v.BaseIssue<unknown>, [Name]>(
    check as unknown as v.BaseValidation<Config, Config, v.BaseIssue<unknown>>,
    [name],
  );
};

const EnvSchema = v.pipe(
  Fields,
  rule(
    "KAFKA_SASL_USERNAME",
    ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME"],
    (env) => !env.KAFKA_SASL_MECHANISM || env.KAFKA_SASL_USERNAME !== undefined,
    "is required with KAFKA_SASL_MECHANISM",
  ),
  rule(
    "KAFKA_SASL_PASSWORD",
    ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_PASSWORD"],
    (env) => !env.KAFKA_SASL_MECHANISM || env.KAFKA_SASL_PASSWORD !== undefined,
    "is required with KAFKA_SASL_MECHANISM",
  ),
  rule(
    "KAFKA_SASL_MECHANISM",
    ["KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"],
    (env) => env.KAFKA_SASL_MECHANISM !== undefined || !(env.KAFKA_SASL_USERNAME ?? env.KAFKA_SASL_PASSWORD),
    "is required with KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD",
  ),
  rule(
    "KAFKA_TLS_KEY_FILE",
    ["KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE"],
    (env) => !env.KAFKA_TLS_CERT_FILE || env.KAFKA_TLS_KEY_FILE !== undefined,
    "is required with KAFKA_TLS_CERT_FILE",
  ),
  rule(
    "KAFKA_TLS_CERT_FILE",
    ["KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE"],
    (env) => !env.KAFKA_TLS_KEY_FILE || env.KAFKA_TLS_CERT_FILE !== undefined,
    "is required with KAFKA_TLS_KEY_FILE",
  ),
  rule(
    "KAFKA_TLS",
    ["KAFKA_TLS", "KAFKA_TLS_CA_FILE", "KAFKA_TLS_CERT_FILE", "KAFKA_TLS_KEY_FILE"],
    (env) => env.KAFKA_TLS || !(env.KAFKA_TLS_CA_FILE ?? env.KAFKA_TLS_CERT_FILE ?? env.KAFKA_TLS_KEY_FILE),
    "must be on when a KAFKA_TLS_*_FILE is set",
  ),
  rule(
    "DATABASE_TLS_CA_FILE",
    ["DATABASE_URL", "DATABASE_TLS_CA_FILE"],
    (env) => !env.DATABASE_TLS_CA_FILE || TLS_MODES.includes(sslModeOf(env.DATABASE_URL) ?? ""),
    "needs sslmode=require, verify-ca or verify-full in DATABASE_URL",
  ),
);

/** A message that names every bad variable, with the value it had. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Settings whose values are never printed: the error names them, and logs redact them (shared/log.ts). */
export const SECRET_SETTINGS = ["KAFKA_SASL_PASSWORD", "S3_SECRET_ACCESS_KEY", "POLL_HEADERS"] as const;
/** Settings that hold a URL with a password in it: shown and logged with the password replaced. */
export const URL_SETTINGS = ["DATABASE_URL", "CAPTURE_DATABASE_URL", "MYSQL_URL", "MONGODB_URL"] as const;

/**
 * `url` with its password replaced by `***`, for messages and logs; text that is no URL is returned as it is.
 *
 * @example
 * redactUrl("postgres://pipeline:s3cret@db:5432/pipeline"); // "postgres://pipeline:***@db:5432/pipeline"
 */
export function redactUrl(url: string): string {
  if (!URL.canParse(url)) return url;
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.href;
}

/** A setting's value as an error message may show it. */
function shown(name: string, value: string): string {
  if ((SECRET_SETTINGS as readonly string[]).includes(name)) return value ? "***" : "";
  return (URL_SETTINGS as readonly string[]).includes(name) ? redactUrl(value) : value;
}

/** Parses the environment; throws a {@link ConfigError} listing every bad variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  // Not aborting the pipe early, so the rules between settings still run while some setting is bad; a setting
  // that fails several checks is reported once, by its first.
  const result = v.safeParse(EnvSchema, env);
  if (result.success) return result.output as Config;
  const lines = new Map<string, string>();
  for (const issue of result.issues) {
    const name = String(issue.path?.[0]?.key ?? "environment");
    if (!lines.has(name))
      lines.set(name, `  ${name}=${JSON.stringify(shown(name, env[name] ?? ""))}: ${issue.message}`);
  }
  throw new ConfigError(`invalid environment:\n${[...lines.values()].join("\n")}`);
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
