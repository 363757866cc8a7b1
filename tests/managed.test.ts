/**
 * The security settings against real servers, as a managed cluster would be reached: the local broker's SASL_SSL
 * listener (SASL over TLS, a CA of our own) and PostgreSQL with TLS, both set up by `bun run stack`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDb, type DatabaseSettings } from "../persist/postgres/db.ts";
import { LOCAL_SASL_SSL } from "../scripts/stack.ts";
import {
  checkBroker,
  createConsumer,
  createProducer,
  deleteGroup,
  endOffsets,
  type KafkaConnection,
  kafkaConnection,
  readRange,
} from "../shared/kafka.ts";
import { dlqOf, TOPICS } from "../shared/topics.ts";
import { startStage } from "../tools/harness.ts";
import { localCluster, snapshot, testConfig } from "./support.ts";

/** A topic no stage reads, so the records written here disturb nobody. */
const TOPIC = dlqOf(TOPICS.loginsStats);
const RUN = crypto.randomUUID().slice(0, 8);
const MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] as const;

/** The settings of a client of the local SASL_SSL listener, as a managed cluster's would be set. */
const saslSsl = (overrides: Record<string, string> = {}): Record<string, string> => ({
  KAFKA_BROKERS: LOCAL_SASL_SSL.broker,
  KAFKA_SASL_MECHANISM: "SCRAM-SHA-256",
  KAFKA_SASL_USERNAME: LOCAL_SASL_SSL.username,
  KAFKA_SASL_PASSWORD: LOCAL_SASL_SSL.password,
  KAFKA_TLS: "on",
  KAFKA_TLS_CA_FILE: LOCAL_SASL_SSL.caFile,
  ...overrides,
});

const connection = (overrides: Record<string, string> = {}): KafkaConnection =>
  kafkaConnection(testConfig(saslSsl(overrides)));

// The listener is the local stack's: elsewhere (testcontainers, a broker of someone else) there is none to test.
const localStack = testConfig().KAFKA_BROKERS.join(",") === "127.0.0.1:19092";

/** A CA that signed nothing the servers present, for the untrusted-certificate cases. */
let scratch = "";
let otherCa = "";
beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "managed-test-"));
  otherCa = join(scratch, "other-ca.crt");
  const key = join(scratch, "other-ca.key");
  await Bun.$`openssl req -x509 -new -nodes -newkey rsa:2048 -days 1 -subj /CN=untrusted -keyout ${key} -out ${otherCa}`.quiet();
});
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe.skipIf(!localStack)("Kafka over SASL_SSL", () => {
  test("the local stack has its SASL_SSL listener (else: bun run stack:stop && bun run stack)", async () => {
    expect(await checkBroker(connection(), 10_000)).toBe(true);
  });

  test.each(MECHANISMS)("a client produces and consumes through SASL_SSL with %s", async (mechanism) => {
    const kafka = connection({ KAFKA_SASL_MECHANISM: mechanism });
    const key = `managed-${RUN}-${mechanism}`;
    const from = await endOffsets(kafka, TOPIC);
    const producer = createProducer({ kafka, clientId: "managed-test" });
    const values = ["one", "two", "three"].map((n) => `${mechanism} ${n}`);
    try {
      await producer.send(values.map((value) => ({ topic: TOPIC, key, value })));
    } finally {
      await producer.close();
    }
    // A consumer group over the same listener: joining needs the coordinator, found through the advertised address.
    const records = await readRange({
      kafka,
      topic: TOPIC,
      from,
      done: (read) => read.filter((r) => r.key?.toString() === key).length >= values.length,
      timeoutMs: 30_000,
    });
    expect(records.filter((r) => r.key?.toString() === key).map((r) => r.value.toString())).toEqual(values);
  });

  test("a consumer group commits through SASL_SSL", async () => {
    const kafka = connection({ KAFKA_SASL_MECHANISM: "SCRAM-SHA-512" });
    const group = `managed-${RUN}`;
    // From where the topic ends now: what other runs left in it is not this test's to read through.
    const startAt = await snapshot(TOPIC);
    const consumer = createConsumer({ kafka, groupId: group, clientId: "managed-test", topics: [TOPIC], startAt });
    try {
      const producer = createProducer({ kafka, clientId: "managed-test" });
      await producer.send([{ topic: TOPIC, key: `group-${RUN}`, value: "x" }]).finally(() => producer.close());
      for await (const batch of consumer.batches()) {
        const ours = batch.find((r) => r.key?.toString() === `group-${RUN}`);
        if (!ours) continue;
        await consumer.commit([{ topic: TOPIC, partition: ours.partition, offset: ours.offset + 1n }]);
        break;
      }
    } finally {
      await consumer.close();
      await deleteGroup(kafka, group).catch(() => {});
    }
  });

  test.each([
    [
      "a wrong password",
      () => ({ KAFKA_SASL_PASSWORD: "not-the-password" }),
      /rejected user "pipeline" \(SCRAM-SHA-256\): wrong username or password; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD$/,
    ],
    [
      "an unknown user",
      () => ({ KAFKA_SASL_MECHANISM: "SCRAM-SHA-512", KAFKA_SASL_USERNAME: "nobody" }),
      /rejected user "nobody"/,
    ],
    [
      "an untrusted CA",
      () => ({ KAFKA_TLS_CA_FILE: otherCa }),
      // Node's code for it with @platformatic/kafka, OpenSSL's words with librdkafka.
      /TLS handshake failed \(.*(SELF_SIGNED_CERT_IN_CHAIN|certificate verify failed).*check KAFKA_TLS_CA_FILE/,
    ],
    [
      "TLS off against the TLS port",
      () => ({ KAFKA_TLS: "off", KAFKA_TLS_CA_FILE: "" }),
      /SASL handshake failed; check KAFKA_SASL_MECHANISM \(and KAFKA_TLS=on if the port is a TLS one\)$/,
    ],
    [
      "TLS against the plaintext port",
      () => ({ KAFKA_BROKERS: "127.0.0.1:19092" }),
      /Kafka at 127\.0\.0\.1:19092: TLS handshake failed\. .*Check KAFKA_TLS and the port of KAFKA_BROKERS$/,
    ],
  ])("%s stops the stage at start with one clear line", async (_, overrides, message) => {
    const output = join(scratch, `enrich-${RUN}-${crypto.randomUUID().slice(0, 4)}.log`);
    const started = Date.now();
    const start = startStage("enrich", {
      mode: "process",
      output,
      env: saslSsl({ LOG_LEVEL: "info", ...overrides() }),
    });
    await expect(start).rejects.toThrow("enrich exited with 1 before it answered");
    // Fast: one refused handshake, not a retry loop that ends in a timeout.
    expect(Date.now() - started).toBeLessThan(15_000);
    const lines = readFileSync(output, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0] ?? "{}");
    expect(line).toMatchObject({ level: 60, service: "enrich" });
    expect(line.msg).toStartWith("enrich could not start: Kafka at 127.0.0.1:");
    expect(line.msg).toMatch(message);
    expect(lines[0]).not.toContain("not-the-password");
  });

  test("a stage runs through SASL_SSL, and neither its logs nor /metrics show the password", async () => {
    const output = join(scratch, `ingest-${RUN}.log`);
    const stage = await startStage("ingest", {
      mode: "process",
      output,
      waitReady: true, // ready: its producer reached the broker through SASL_SSL
      env: saslSsl({ LOG_LEVEL: "debug", KAFKA_SASL_MECHANISM: "SCRAM-SHA-512" }),
    });
    try {
      const metrics = (await stage.metrics()) ?? "";
      expect(metrics).toContain("records_out_total");
      expect(metrics).not.toContain(LOCAL_SASL_SSL.password);
    } finally {
      await stage.stop();
    }
    expect(readFileSync(output, "utf8")).not.toContain(LOCAL_SASL_SSL.password);
  });
});

/** The tests' database, with TLS settings over it. */
function database(sslmode: string, caFile?: string, host?: string): DatabaseSettings {
  const url = new URL(testConfig().DATABASE_URL);
  if (host) url.hostname = host;
  url.searchParams.set("sslmode", sslmode);
  return { DATABASE_URL: url.href, ...(caFile && { DATABASE_TLS_CA_FILE: caFile }) };
}

/** Whether the session of `settings` runs over TLS, or the error that kept it from connecting. */
async function sessionTls(settings: DatabaseSettings): Promise<boolean | string> {
  const sql = createDb(settings, 1);
  try {
    const [row] = await sql<{ ssl: boolean }[]>`select ssl from pg_stat_ssl where pid = pg_backend_pid()`;
    return row?.ssl ?? false;
  } catch (error) {
    return String((error as { code?: string }).code ?? error);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

const localDatabase = (await localCluster()) !== undefined;

describe.skipIf(!localDatabase)("PostgreSQL over TLS", () => {
  test("verify-full with the local CA connects over TLS, by IP address and by host name", async () => {
    expect(await sessionTls(database("verify-full", LOCAL_SASL_SSL.caFile))).toBe(true);
    expect(await sessionTls(database("verify-full", LOCAL_SASL_SSL.caFile, "localhost"))).toBe(true);
  });

  test("verify-full refuses a server certificate that the CA did not sign", async () => {
    expect(await sessionTls(database("verify-full", otherCa))).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
    expect(await sessionTls(database("verify-ca", otherCa))).toBe("UNABLE_TO_VERIFY_LEAF_SIGNATURE");
  });

  test("require uses TLS without checking; disable and no sslmode use none, as before", async () => {
    expect(await sessionTls(database("require"))).toBe(true);
    expect(await sessionTls(database("disable"))).toBe(false);
    expect(await sessionTls({ DATABASE_URL: testConfig().DATABASE_URL })).toBe(false);
  });
});
