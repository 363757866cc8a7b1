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
const FERRETDB_STOP_TIMEOUT_MS = 10_000;

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!processExited(pid)) {
    if (Date.now() > deadline) return false;
    await Bun.sleep(100);
  }
  return true;
}

/**
 * Stops the server this stack started, `pid` (undefined when none runs): SIGTERM, then SIGKILL once `timeoutMs`
 * has passed; removes its pid file either way.
 */
async function stopServer(name: string, pid: number | undefined, pidFile: string, timeoutMs: number): Promise<void> {
  if (pid === undefined) {
    console.log(`${name}: none started by the stack is running`);
    rmSync(pidFile, { force: true });
    return;
  }
  const started = Date.now();
  process.kill(pid, "SIGTERM");
  if (!(await waitForExit(pid, timeoutMs))) {
    console.log(`${name}: pid ${pid} still running after ${timeoutMs / 1000} s; sending SIGKILL`);
    process.kill(pid, "SIGKILL");
    await waitForExit(pid, 5_000);
  }
  rmSync(pidFile, { force: true });
  console.log(`${name}: stopped pid ${pid} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
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
  await Promise.all([
    stopServer("kafka", runningKafkaPid(), KAFKA_PID_FILE, KAFKA_STOP_TIMEOUT_MS),
    stopPostgres(),
    stopServer("ferretdb", runningFerretDbPid(), FERRETDB_PID_FILE, FERRETDB_STOP_TIMEOUT_MS),
  ]);
} catch (error) {
  console.error(`stack:stop: ${error instanceof Error ? error.message : error}`);
  process.exit(1);
}
