import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig, redactUrl } from "../../shared/config.ts";

/** The error `parseConfig(env)` throws; fails the test if it does not throw a ConfigError. */
function configError(env: Record<string, string | undefined>): ConfigError {
  try {
    parseConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

/** The variable names the error message reports as bad, one per line. */
function badNames(error: ConfigError): string[] {
  return error.message
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split("=")[0] ?? "");
}

describe("defaults", () => {
  test("an empty environment runs against the local stack", () => {
    expect(parseConfig({})).toMatchObject({
      KAFKA_BROKERS: ["127.0.0.1:19092"],
      DATABASE_URL: "postgres://pipeline:pipeline@127.0.0.1:5432/pipeline",
      TOPIC_PARTITIONS: 6,
      LOG_LEVEL: "info",
      SHUTDOWN_TIMEOUT_MS: 10_000,
      INGEST_PORT: 3000,
      INGEST_BODY_LIMIT_BYTES: 1_048_576,
      INGEST_MAX_EVENTS: 10_000,
      INGEST_ACK_TIMEOUT_MS: 5_000,
      INGEST_API_KEYS: [],
      INGEST_RATE_LIMIT_PER_SECOND: 0,
      INGEST_PROCESSES: 1,
    });
  });

  test("every service listens on its own port by default", () => {
    const config: Record<string, unknown> = parseConfig({});
    const ports = Object.entries(config).filter(([name]) => name.endsWith("_PORT"));
    expect(ports.length).toBeGreaterThanOrEqual(1);
    for (const [, port] of ports) expect(port).toBeInteger();
    expect(new Set(ports.map(([, port]) => port)).size).toBe(ports.length);
  });

  test("variables that are present but undefined take their defaults", () => {
    const config = parseConfig({ INGEST_PORT: undefined, KAFKA_BROKERS: undefined, INGEST_API_KEYS: undefined });
    expect(config.INGEST_PORT).toBe(3000);
    expect(config.KAFKA_BROKERS).toEqual(["127.0.0.1:19092"]);
    expect(config.INGEST_API_KEYS).toEqual([]);
  });

  test("unrelated variables are ignored", () => {
    const config = parseConfig({ PATH: "/usr/bin", HOME: "/root", npm_config_user_agent: "bun/1.4.5" });
    expect(config.INGEST_PORT).toBe(3000);
    expect(config).not.toHaveProperty("PATH");
  });
});

describe("values", () => {
  test("numbers are parsed, whitespace trimmed", () => {
    const config = parseConfig({
      INGEST_PORT: " 8080 ",
      TOPIC_PARTITIONS: "12",
      INGEST_BODY_LIMIT_BYTES: "2097152",
      INGEST_MAX_EVENTS: "500",
      INGEST_ACK_TIMEOUT_MS: "250",
      SHUTDOWN_TIMEOUT_MS: "100",
      INGEST_RATE_LIMIT_PER_SECOND: "50",
    });
    expect(config).toMatchObject({
      INGEST_PORT: 8080,
      TOPIC_PARTITIONS: 12,
      INGEST_BODY_LIMIT_BYTES: 2_097_152,
      INGEST_MAX_EVENTS: 500,
      INGEST_ACK_TIMEOUT_MS: 250,
      SHUTDOWN_TIMEOUT_MS: 100,
      INGEST_RATE_LIMIT_PER_SECOND: 50,
    });
  });

  test("lists are split on commas, trimmed, and empty parts dropped", () => {
    const config = parseConfig({
      KAFKA_BROKERS: " broker-1:9092 ,broker-2:9093,, broker-3:9094 ",
      INGEST_API_KEYS: "key-a, key-b ,,key-c,",
    });
    expect(config.KAFKA_BROKERS).toEqual(["broker-1:9092", "broker-2:9093", "broker-3:9094"]);
    expect(config.INGEST_API_KEYS).toEqual(["key-a", "key-b", "key-c"]);
  });

  test("an empty API key list means no keys", () => {
    expect(parseConfig({ INGEST_API_KEYS: " , " }).INGEST_API_KEYS).toEqual([]);
  });

  test.each(["postgres://u:p@db:5432/app", "postgresql://db/app"])("DATABASE_URL %p is accepted", (url) => {
    expect(parseConfig({ DATABASE_URL: url }).DATABASE_URL).toBe(url);
  });

  test.each(["trace", "debug", "info", "warn", "error", "fatal", "silent"])("LOG_LEVEL %p is accepted", (level) => {
    expect(parseConfig({ LOG_LEVEL: level }).LOG_LEVEL).toBe(level);
  });

  test.each([
    ["INGEST_PORT", "1", 1],
    ["INGEST_PORT", "65535", 65535],
    ["TOPIC_PARTITIONS", "1", 1],
    ["TOPIC_PARTITIONS", "1000", 1000],
    ["INGEST_RATE_LIMIT_PER_SECOND", "0", 0],
    ["SHUTDOWN_TIMEOUT_MS", "100", 100],
    ["INGEST_PROCESSES", "1", 1],
    ["INGEST_PROCESSES", "64", 64],
  ])("%s=%p is accepted (boundary)", (name, value, expected) => {
    expect(parseConfig({ [name]: value })).toHaveProperty(name, expected);
  });
});

describe("bad values", () => {
  test.each([
    ["INGEST_PORT", "0", "must be at least 1"],
    ["INGEST_PORT", "65536", "must be at most 65535"],
    ["INGEST_PORT", "http", "must be a whole number"],
    ["INGEST_PORT", "-1", "must be a whole number"],
    ["INGEST_PORT", "3000.5", "must be a whole number"],
    ["INGEST_PORT", "", "must be a whole number"],
    ["TOPIC_PARTITIONS", "0", "must be at least 1"],
    ["TOPIC_PARTITIONS", "1001", "must be at most 1000"],
    ["SHUTDOWN_TIMEOUT_MS", "99", "must be at least 100"],
    ["INGEST_MAX_EVENTS", "0", "must be at least 1"],
    ["INGEST_PROCESSES", "0", "must be at least 1"],
    ["INGEST_PROCESSES", "65", "must be at most 64"],
    ["INGEST_PROCESSES", "two", "must be a whole number"],
    ["INGEST_BODY_LIMIT_BYTES", "1e6", "must be a whole number"],
    ["INGEST_BODY_LIMIT_BYTES", "67108865", "must be at most 67108864"],
    ["DATABASE_URL", "mysql://db/app", "must be a postgres:// URL"],
    ["KAFKA_BROKERS", "", "must name at least one broker"],
    ["KAFKA_BROKERS", " , ", "must name at least one broker"],
  ])("%s=%p is rejected: %s", (name, value, message) => {
    const error = configError({ [name]: value });
    expect(error.name).toBe("ConfigError");
    expect(error.message).toContain(`${name}=${JSON.stringify(value)}: ${message}`);
  });

  test.each(["localhost", "127.0.0.1", "broker:port", "host:9092:1", "my host:9092"])(
    "KAFKA_BROKERS=%p (not host:port) is rejected",
    (brokers) => {
      const error = configError({ KAFKA_BROKERS: brokers });
      expect(error.message).toContain("KAFKA_BROKERS");
      expect(error.message).toContain("must be host:port");
    },
  );

  test("one bad broker among good ones is rejected", () => {
    expect(configError({ KAFKA_BROKERS: "a:9092,b,c:9094" }).message).toContain("must be host:port");
  });

  test("LOG_LEVEL outside the list is rejected", () => {
    expect(configError({ LOG_LEVEL: "verbose" }).message).toContain('LOG_LEVEL="verbose"');
  });

  test("one ConfigError lists every bad variable at once", () => {
    const error = configError({
      KAFKA_BROKERS: "a:1",
      DATABASE_URL: "mysql://db",
      TOPIC_PARTITIONS: "many",
      LOG_LEVEL: "loud",
      INGEST_PORT: "70000",
      INGEST_MAX_EVENTS: "0",
      INGEST_API_KEYS: "fine",
      INGEST_RATE_LIMIT_PER_SECOND: "-5",
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.message.split("\n")[0]).toBe("invalid environment:");
    expect(badNames(error).toSorted()).toEqual(
      [
        "DATABASE_URL",
        "INGEST_MAX_EVENTS",
        "INGEST_PORT",
        "INGEST_RATE_LIMIT_PER_SECOND",
        "LOG_LEVEL",
        "TOPIC_PARTITIONS",
      ].toSorted(),
    );
    expect(error.message).toContain('DATABASE_URL="mysql://db"');
    expect(error.message).toContain('TOPIC_PARTITIONS="many"');
    expect(error.message).toContain('INGEST_PORT="70000": must be at most 65535');
    expect(error.message).not.toContain("KAFKA_BROKERS");
    expect(error.message).not.toContain("INGEST_API_KEYS");
  });

  test("a bad broker list is listed together with other bad variables", () => {
    const error = configError({ KAFKA_BROKERS: "localhost", INGEST_PORT: "0" });
    expect(error.message).toContain("KAFKA_BROKERS");
    expect(error.message).toContain("INGEST_PORT");
  });

  test("a bad broker list is reported with its name and the value it had", () => {
    const error = configError({ KAFKA_BROKERS: "a:9092,localhost" });
    expect(error.message).toContain('KAFKA_BROKERS="a:9092,localhost": must be host:port');
    expect(badNames(error)).toEqual(["KAFKA_BROKERS"]);
  });
});

describe("managed cluster settings", () => {
  const readable = import.meta.path; // any file this process can read

  test("SASL and TLS are off unless set, and empty values count as unset", () => {
    const blank = {
      KAFKA_SASL_MECHANISM: "",
      KAFKA_SASL_USERNAME: " ",
      KAFKA_TLS_CA_FILE: "",
      DATABASE_TLS_CA_FILE: "",
    };
    for (const env of [{}, blank]) {
      const config = parseConfig(env);
      expect(config.KAFKA_SASL_MECHANISM).toBeUndefined();
      expect(config.KAFKA_SASL_USERNAME).toBeUndefined();
      expect(config.KAFKA_TLS).toBe(false);
      expect(config.KAFKA_TLS_CA_FILE).toBeUndefined();
      expect(config.KAFKA_TLS_CHECK_SERVER_NAME).toBe(true);
      expect(config.DATABASE_TLS_CA_FILE).toBeUndefined();
    }
  });

  test.each(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])(
    "mechanism %s with a username and a password is accepted",
    (mechanism) => {
      const config = parseConfig({
        KAFKA_SASL_MECHANISM: mechanism,
        KAFKA_SASL_USERNAME: "pipeline",
        KAFKA_SASL_PASSWORD: "s3cret",
        KAFKA_TLS: "on",
        KAFKA_TLS_CA_FILE: readable,
      });
      expect(config).toMatchObject({ KAFKA_SASL_MECHANISM: mechanism, KAFKA_TLS: true, KAFKA_TLS_CA_FILE: readable });
    },
  );

  test("KAFKA_TLS takes on/off and true/false", () => {
    expect(parseConfig({ KAFKA_TLS: "on" }).KAFKA_TLS).toBe(true);
    expect(parseConfig({ KAFKA_TLS: "true" }).KAFKA_TLS).toBe(true);
    expect(parseConfig({ KAFKA_TLS: "off" }).KAFKA_TLS).toBe(false);
    expect(configError({ KAFKA_TLS: "yes" }).message).toContain('KAFKA_TLS="yes": must be on or off');
  });

  test("an unknown mechanism is named with the ones supported", () => {
    expect(configError({ KAFKA_SASL_MECHANISM: "GSSAPI" }).message).toContain(
      'KAFKA_SASL_MECHANISM="GSSAPI": must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512',
    );
  });

  test("a mechanism needs a username and a password, and they need a mechanism", () => {
    expect(badNames(configError({ KAFKA_SASL_MECHANISM: "PLAIN" })).toSorted()).toEqual([
      "KAFKA_SASL_PASSWORD",
      "KAFKA_SASL_USERNAME",
    ]);
    expect(badNames(configError({ KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" }))).toEqual([
      "KAFKA_SASL_MECHANISM",
    ]);
  });

  test("a client certificate needs its key and the key its certificate; files need KAFKA_TLS=on", () => {
    const on = { KAFKA_TLS: "on" };
    expect(badNames(configError({ ...on, KAFKA_TLS_CERT_FILE: readable }))).toEqual(["KAFKA_TLS_KEY_FILE"]);
    expect(badNames(configError({ ...on, KAFKA_TLS_KEY_FILE: readable }))).toEqual(["KAFKA_TLS_CERT_FILE"]);
    expect(configError({ KAFKA_TLS_CA_FILE: readable }).message).toContain(
      'KAFKA_TLS="": must be on when a KAFKA_TLS_*_FILE is set',
    );
  });

  test("a file that cannot be read is rejected at start, not at the first connection", () => {
    const error = configError({ KAFKA_TLS: "on", KAFKA_TLS_CA_FILE: "/no/such/ca.pem", DATABASE_TLS_CA_FILE: "/nope" });
    expect(error.message).toContain('KAFKA_TLS_CA_FILE="/no/such/ca.pem": must be a readable file');
    expect(badNames(error).toSorted()).toEqual(["DATABASE_TLS_CA_FILE", "KAFKA_TLS_CA_FILE"]);
  });

  test("DATABASE_URL's sslmode must be libpq's, and a CA file needs a mode that uses TLS", () => {
    const url = "postgres://u@db:5432/x";
    expect(configError({ DATABASE_URL: `${url}?sslmode=on` }).message).toContain("sslmode must be one of");
    for (const mode of ["require", "verify-ca", "verify-full"])
      expect(parseConfig({ DATABASE_URL: `${url}?sslmode=${mode}`, DATABASE_TLS_CA_FILE: readable }).DATABASE_URL).toBe(
        `${url}?sslmode=${mode}`,
      );
    for (const mode of ["", "?sslmode=disable", "?sslmode=prefer"])
      expect(badNames(configError({ DATABASE_URL: `${url}${mode}`, DATABASE_TLS_CA_FILE: readable }))).toEqual([
        "DATABASE_TLS_CA_FILE",
      ]);
  });

  test("rules between settings are reported together with other bad settings", () => {
    const error = configError({ KAFKA_SASL_MECHANISM: "PLAIN", KAFKA_SASL_USERNAME: "u", INGEST_PORT: "0" });
    expect(badNames(error).toSorted()).toEqual(["INGEST_PORT", "KAFKA_SASL_PASSWORD"]);
  });

  test("the error never shows a password: neither KAFKA_SASL_PASSWORD nor the one in DATABASE_URL", () => {
    const error = configError({
      KAFKA_SASL_PASSWORD: "kafka-s3cret",
      DATABASE_URL: "postgres://pipeline:db-s3cret@db:5432/pipeline?sslmode=sometimes",
    });
    expect(badNames(error).toSorted()).toEqual(["DATABASE_URL", "KAFKA_SASL_MECHANISM"]);
    expect(error.message).not.toContain("s3cret");
    expect(error.message).toContain("postgres://pipeline:***@db:5432/pipeline");
  });
});

describe("redactUrl", () => {
  test("replaces only the password", () => {
    expect(redactUrl("postgres://pipeline:s3cret@db:5432/pipeline?sslmode=require")).toBe(
      "postgres://pipeline:***@db:5432/pipeline?sslmode=require",
    );
    expect(redactUrl("postgres://pipeline@db/pipeline")).toBe("postgres://pipeline@db/pipeline");
    expect(redactUrl("not a url")).toBe("not a url");
  });
});
