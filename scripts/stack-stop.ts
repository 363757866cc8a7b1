/**
 * `bun run stack:stop`: stops what `bun run stack` started and nothing else: the broker named by its pid file,
 * the FerretDB named by its pid file, and the PostgreSQL cluster only if its marker says the stack started it. Idempotent.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { $ } from "bun";
import { FERRETDB_PID_FILE, runningFerretDbPid } from "./ferretdb.ts";
import { KAFKA_PID_FILE, PG_MARKER_FILE, processExited, runningKafkaPid } from "./stack.ts";

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

async function stopFerretDb(): Promise<void> {
  const pid = runningFerretDbPid();
  if (pid === undefined) {
    console.log("ferretdb: no FerretDB started by the stack is running");
    rmSync(FERRETDB_PID_FILE, { force: true });
    return;
  }
  process.kill(pid, "SIGTERM");
  if (!(await waitForExit(pid, 10_000))) process.kill(pid, "SIGKILL");
  rmSync(FERRETDB_PID_FILE, { force: true });
  console.log(`ferretdb: stopped pid ${pid}`);
}

try {
  await Promise.all([stopKafka(), stopPostgres(), stopFerretDb()]);
} catch (error) {
  console.error(`stack:stop: ${error instanceof Error ? error.message : error}`);
  process.exit(1);
}
