/**
 * Test preload: picks the real broker and PostgreSQL every integration test talks to.
 * 1. the configured (or default) KAFKA_BROKERS and DATABASE_URL, when they answer;
 * 2. else, when a Docker daemon answers, Redpanda and PostgreSQL from testcontainers;
 * 3. else it stops at once and says to run `bun run stack`.
 * Then it makes sure every topic exists, so tests never depend on auto-creation.
 */

import { createDb, type DatabaseSettings, databaseAnswers } from "../persist/postgres/db.ts";
import { parseConfig, redactUrl } from "../shared/config.ts";
import { brokerAnswers, ensureTopics, kafkaConnection } from "../shared/kafka.ts";
import { topicSpecs } from "../shared/topics.ts";

async function postgresAnswers(database: DatabaseSettings): Promise<boolean> {
  const sql = createDb(database, 1);
  try {
    return await databaseAnswers(sql, 3_000);
  } finally {
    await sql.end({ timeout: 1 });
  }
}

async function dockerAnswers(): Promise<boolean> {
  const info = Bun.spawn(["docker", "info", "--format", "{{.ServerVersion}}"], { stdout: "ignore", stderr: "ignore" });
  const timeout = setTimeout(() => info.kill(), 5_000);
  const code = await info.exited.catch(() => 1);
  clearTimeout(timeout);
  return code === 0;
}

/** Starts Redpanda and PostgreSQL containers and points the environment at them. */
async function startContainers(): Promise<void> {
  process.env.TESTCONTAINERS_RYUK_DISABLED = "true";
  const { RedpandaContainer } = await import("@testcontainers/redpanda");
  const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
  const { Wait } = await import("testcontainers");
  const [redpanda, pg] = await Promise.all([
    new RedpandaContainer("docker.redpanda.com/redpandadata/redpanda:v26.2.1").start(),
    new PostgreSqlContainer("postgres:15")
      // The default wait can hang under Bun; the second "ready" line comes after the init restart.
      .withWaitStrategy(Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start(),
  ]);
  process.env.KAFKA_BROKERS = redpanda.getBootstrapServers();
  process.env.DATABASE_URL = pg.getConnectionUri();
  process.on("beforeExit", () => void Promise.all([redpanda.stop(), pg.stop()]));
}

// parseConfig, not config(): the containers path changes the environment, and config() caches its first read.
const configured = parseConfig(process.env);
const { DATABASE_URL } = configured;
const kafka = kafkaConnection(configured);
const [kafkaUp, databaseUp] = await Promise.all([brokerAnswers(kafka, 3_000), postgresAnswers(configured)]);

if (!kafkaUp || !databaseUp) {
  if (await dockerAnswers()) {
    await startContainers();
  } else {
    const down = [
      !kafkaUp && `Kafka at ${kafka.brokers.join(",")}`,
      !databaseUp && `PostgreSQL at ${redactUrl(DATABASE_URL)}`,
    ];
    console.error(
      `\nThe tests need a real broker and PostgreSQL, and ${down.filter(Boolean).join(" and ")} did not answer.\n` +
        "Start them with `bun run stack` (or set KAFKA_BROKERS / DATABASE_URL, or run a Docker daemon).\n",
    );
    process.exit(1);
  }
}

const env = parseConfig(process.env);
await ensureTopics(kafkaConnection(env), topicSpecs(env.TOPIC_PARTITIONS));
