/**
 * Stopping and starting the servers under the pipeline: the Kafka broker that `bun run stack` started (found by
 * its pid file, never by name) and the local PostgreSQL cluster (tests/support.ts's localCluster). Other
 * sessions share both, so callers always restore them, and the broker is restarted the way everyone starts it.
 */
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createDb, type DatabaseSettings, databaseAnswers } from "../../persist/postgres/db.ts";
import { mariaDbDown, mariaDbUp, runningMariaDbPid } from "../../scripts/stack/mariadb.ts";
import { MARIADB, processExited, runningKafkaPid, STACK_HOME } from "../../scripts/stack.ts";
import { brokerAnswers, type KafkaConnection } from "../../shared/kafka.ts";
import { localCluster } from "../../tests/support.ts";
import { pollEvery } from "../poll.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BROKER_STOP_TIMEOUT_MS = 30_000;
const BROKER_START_TIMEOUT_MS = 150_000;
const POSTGRES_TIMEOUT_MS = 60_000;

/** The broker `bun run stack` started, or undefined when the broker is someone else's (no broker faults then). */
export function stackBrokerPid(): number | undefined {
  return runningKafkaPid();
}

/**
 * Stops the stack's broker with `signal` and waits until the process is gone (SIGKILL after 30 s). Keeps a
 * copy of its log in `logDir`, because the next start rotates it away.
 */
export async function stopBroker(signal: "SIGTERM" | "SIGKILL", logDir: string, tag: string): Promise<number> {
  const pid = runningKafkaPid();
  if (pid === undefined) throw new Error("no broker started by `bun run stack` is running");
  process.kill(pid, signal);
  const gone = await pollEvery(
    "the broker to exit",
    async () => (processExited(pid) ? true : undefined),
    BROKER_STOP_TIMEOUT_MS,
    100,
  ).catch(() => false);
  if (!gone) {
    process.kill(pid, "SIGKILL");
    await pollEvery(
      "the broker to exit after SIGKILL",
      async () => (processExited(pid) ? true : undefined),
      10_000,
      100,
    );
  }
  const log = join(STACK_HOME, "kafka.log");
  if (existsSync(log)) copyFileSync(log, join(logDir, `kafka.${tag}.log`));
  return pid;
}

/**
 * Starts the broker again with `bun run stack` (the same command, JVM flags and data directory as everyone
 * else), then waits until it answers.
 */
export async function startBroker(kafka: KafkaConnection, logDir: string, tag: string): Promise<void> {
  const out = Bun.file(join(logDir, `stack.${tag}.log`));
  const child = Bun.spawn(["bun", "run", "scripts/stack.ts"], { cwd: ROOT, stdout: out, stderr: out });
  const timer = setTimeout(() => child.kill("SIGKILL"), BROKER_START_TIMEOUT_MS);
  const code = await child.exited;
  clearTimeout(timer);
  if (code !== 0) throw new Error(`bun run stack exited with ${code}; see ${join(logDir, `stack.${tag}.log`)}`);
  await pollEvery("the broker to answer", async () => ((await brokerAnswers(kafka, 1_000)) ? true : undefined), 30_000);
}

/** Starts the broker unless it answers already; for cleanup paths, so it never throws. */
export async function ensureBroker(kafka: KafkaConnection, logDir: string): Promise<string | undefined> {
  if (await brokerAnswers(kafka, 2_000)) return undefined;
  try {
    await startBroker(kafka, logDir, "restore");
    return undefined;
  } catch (error) {
    return `could not restart the broker: ${(error as Error).message}`;
  }
}

/** True when the PostgreSQL of `database` answers a query within a second. */
export async function postgresAnswers(database: DatabaseSettings): Promise<boolean> {
  const sql = createDb(database, 1);
  try {
    return await databaseAnswers(sql, 1_000);
  } finally {
    await sql.end({ timeout: 1 }).catch(() => {});
  }
}

/** Stops and starts the local PostgreSQL cluster; undefined when there is none here (no database faults then). */
export async function postgresControl(database: DatabaseSettings) {
  const cluster = await localCluster();
  if (!cluster) return undefined;
  return {
    stop: () => cluster("stop"),
    async start() {
      await cluster("start");
      await pollEvery(
        "PostgreSQL to answer",
        async () => ((await postgresAnswers(database)) ? true : undefined),
        POSTGRES_TIMEOUT_MS,
      );
    },
    /** Starts the cluster unless it answers already; for cleanup paths, so it never throws. */
    async ensure(): Promise<string | undefined> {
      if (await postgresAnswers(database)) return undefined;
      try {
        await this.start();
        return undefined;
      } catch (error) {
        return `could not restart PostgreSQL: ${(error as Error).message}`;
      }
    },
  };
}

/**
 * Stops and starts the MariaDB `bun run stack` started (its own pid file, never a search by name); undefined
 * when the server at MYSQL_URL is someone else's (no MariaDB faults then).
 *
 * @example
 * const mariadb = mariaDbControl(env.MYSQL_URL);
 * await mariadb?.("stop"); await mariadb?.("start");
 */
export function mariaDbControl(mysqlUrl: string): ((action: "stop" | "start") => Promise<void>) | undefined {
  if (runningMariaDbPid(MARIADB) === undefined) return undefined;
  return async (action) => {
    if (action === "stop") await mariaDbDown(MARIADB);
    else await mariaDbUp(mysqlUrl, MARIADB);
  };
}
