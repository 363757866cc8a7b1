/**
 * `bun run stack:stop`: stops what `bun run stack` started and nothing else: the broker named by its pid file,
 * MariaDB, versitygw and FerretDB by theirs, and the PostgreSQL cluster only if its marker says the stack started it.
 * Idempotent.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { $ } from "bun";
import { ferretDbDown } from "./stack/ferretdb.ts";
import { mariaDbDown } from "./stack/mariadb.ts";
import { versityDown } from "./stack/versitygw.ts";
import { KAFKA_PID_FILE, MARIADB, PG_MARKER_FILE, processExited, runningKafkaPid, VERSITYGW } from "./stack.ts";

// A single-node broker shuts down in a few seconds; past this it is stuck and gets SIGKILL.
const KAFKA_STOP_TIMEOUT_MS = 30_000;

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!processExited(pid)) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(100);
  }
  return true;
}

async function stopKafka(): Promise<void> {
  const pid = runningKafkaPid();
  if (pid === undefined) {
    console.log("kafka: no broker started by the stack is running");
    rmSync(KAFKA_PID_FILE, { force: true });
    return;
  }
  const started = Date.now();
  process.kill(pid, "SIGTERM");
  if (!(await waitForExit(pid, KAFKA_STOP_TIMEOUT_MS))) {
    console.log(`kafka: pid ${pid} still running after ${KAFKA_STOP_TIMEOUT_MS / 1000} s; sending SIGKILL`);
    process.kill(pid, "SIGKILL");
    await waitForExit(pid, 5_000);
  }
  rmSync(KAFKA_PID_FILE, { force: true });
  console.log(`kafka: stopped pid ${pid} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

async function stopPostgres(): Promise<void> {
  if (!existsSync(PG_MARKER_FILE)) {
    console.log("postgres: not started by the stack; left as it is");
    return;
  }
  const [version = "", cluster = ""] = readFileSync(PG_MARKER_FILE, "utf8").trim().split(/\s+/);
  const result = await $`pg_ctlcluster ${version} ${cluster} stop`.nothrow().quiet();
  // pg_ctlcluster exits 2 when the cluster is already down: the goal is reached either way.
  if (result.exitCode !== 0 && result.exitCode !== 2) {
    throw new Error(`pg_ctlcluster ${version} ${cluster} stop failed:\n${result.stderr.toString().trim()}`);
  }
  rmSync(PG_MARKER_FILE, { force: true });
  console.log(`postgres: stopped cluster ${version}/${cluster}`);
}

try {
  await Promise.all([stopKafka(), stopPostgres(), mariaDbDown(MARIADB), versityDown(VERSITYGW), ferretDbDown()]);
} catch (error) {
  console.error(`stack:stop: ${error instanceof Error ? error.message : error}`);
  process.exit(1);
}
