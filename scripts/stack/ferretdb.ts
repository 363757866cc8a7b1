/**
 * The local document store of `bun run stack`: FerretDB, which speaks MongoDB's wire protocol, since MongoDB is
 * not in Debian. It is built once from its Go module source and cached beside the Kafka jars, and keeps its
 * documents in the local PostgreSQL, in a database of its own (`ferretdb`, owned by DATABASE_URL's user). Its
 * SQLite handler needs no other server, but it deadlocked here under concurrent clients (every connection
 * waiting for the one SQLite connection while a metadata lock was held), so PostgreSQL it is. A FerretDB
 * restart, the outage tests' fault, leaves PostgreSQL running. Like the rest of the stack: whatever answers on
 * MONGODB_URL's port is reused, and only a server this script started is recorded for `stack:stop`. Errors are
 * meant for the person running the stack: their messages say what to do.
 */
import { closeSync, cpSync, existsSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { $ } from "bun";
import { MongoClient } from "mongodb";
import { runningPid, stopServer } from "./process.ts";

/** Beside the Kafka jars and the certificates, outside the work tree, so every clone reuses one build. */
const STACK_HOME = join(homedir(), ".cache", "event-pipeline");

/** The one place that names the version; the binary and the data are kept per version. */
export const FERRETDB_VERSION = "v1.24.2";
const FERRETDB_HOME = join(STACK_HOME, `ferretdb-${FERRETDB_VERSION.slice(1)}`);
const BINARY = join(FERRETDB_HOME, "ferretdb");
const LOG = join(STACK_HOME, "ferretdb.log");
/** Pid of the FerretDB this script started; `stack:stop` signals only this one. */
export const FERRETDB_PID_FILE = join(STACK_HOME, "ferretdb.pid");
const START_TIMEOUT_MS = 30_000;
/** The oldest Go that builds this version (its go.mod's `go` line). */
const MIN_GO = [1, 24];

/** The pid of the FerretDB this script started, if it still runs (its command line checked, not just the pid). */
export const runningFerretDbPid = () => runningPid(FERRETDB_PID_FILE, BINARY);

/** Stops the FerretDB this script started, if it runs. */
export const ferretDbDown = () => stopServer("ferretdb", FERRETDB_PID_FILE, BINARY, 10_000);

/** Whether a MongoDB-protocol server answers a ping at `url` within `timeoutMs`. */
export async function documentStoreAnswers(url: string, timeoutMs = 2_000): Promise<boolean> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: timeoutMs, connectTimeoutMS: timeoutMs });
  try {
    await client.db().command({ ping: 1 });
    return true;
  } catch {
    return false;
  } finally {
    await client.close().catch(() => {});
  }
}

/** The Go toolchain: the one on PATH, else the official tarball's place. */
function goBinary(): string {
  const go = Bun.which("go") ?? (existsSync("/usr/local/go/bin/go") ? "/usr/local/go/bin/go" : undefined);
  if (!go) throw new Error("go is not installed; install it with:\n  apt-get update && apt-get install -y golang-go");
  return go;
}

/**
 * Builds FerretDB into the cache unless it is there (once per version): its module source from the Go module
 * proxy, built with the local toolchain only. `go install` of the module would build a binary that panics at
 * start, because the module leaves build/version/version.txt empty; so the source is copied aside and the
 * version written in first.
 */
async function ensureBinary(): Promise<void> {
  if (existsSync(BINARY)) return;
  const go = goBinary();
  // Never fetch another toolchain: the module's `toolchain` line would otherwise ask for one.
  const env = { ...process.env, GOTOOLCHAIN: "local", GOFLAGS: "-mod=mod" };
  const version = (await $`${go} env GOVERSION`.env(env).quiet().text()).trim();
  const [major = 0, minor = 0] = (/go(\d+)\.(\d+)/.exec(version) ?? []).slice(1).map(Number);
  if (major < (MIN_GO[0] as number) || (major === MIN_GO[0] && minor < (MIN_GO[1] as number)))
    throw new Error(`FerretDB ${FERRETDB_VERSION} needs Go ${MIN_GO.join(".")} or later; ${go} is ${version}`);
  console.log(`ferretdb: building ${FERRETDB_VERSION} with ${version} (once per version, about 2 minutes)`);
  const module = `github.com/FerretDB/FerretDB@${FERRETDB_VERSION}`;
  const { Dir } = (await $`${go} mod download -json ${module}`.env(env).quiet().json()) as { Dir: string };
  mkdirSync(FERRETDB_HOME, { recursive: true });
  // Per process, so two first runs at once do not build into each other's tree; renamed when complete.
  const source = join(FERRETDB_HOME, `src.partial-${process.pid}`);
  rmSync(source, { recursive: true, force: true });
  cpSync(Dir, source, { recursive: true });
  await $`chmod -R u+w ${source}`.quiet();
  writeFileSync(join(source, "build", "version", "version.txt"), `${FERRETDB_VERSION}\n`);
  const partial = `${BINARY}.partial-${process.pid}`;
  const build = await $`${go} build -trimpath -o ${partial} ./cmd/ferretdb`.cwd(source).env(env).nothrow().quiet();
  rmSync(source, { recursive: true, force: true });
  if (build.exitCode !== 0) {
    rmSync(partial, { force: true });
    throw new Error(`go build of FerretDB failed (exit ${build.exitCode}):\n${build.stderr.toString().trim()}`);
  }
  renameSync(partial, BINARY);
}

/**
 * The PostgreSQL database FerretDB stores its documents in: DATABASE_URL's server and user, database `ferretdb`.
 *
 * @example
 * ferretDbBackendUrl("postgres://pipeline:pipeline@127.0.0.1:5432/pipeline"); // ".../ferretdb"
 */
export function ferretDbBackendUrl(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  url.pathname = "/ferretdb";
  url.search = "";
  return url.href;
}

function spawnFerretDb(listen: string, backendUrl: string): number {
  mkdirSync(FERRETDB_HOME, { recursive: true });
  if (existsSync(LOG)) renameSync(LOG, `${LOG}.1`);
  const log = openSync(LOG, "a");
  const server = Bun.spawn(
    [
      BINARY,
      "--handler=postgresql",
      `--listen-addr=${listen}`,
      `--state-dir=${FERRETDB_HOME}`,
      // No metrics/pprof listener (it would take 8088) and no telemetry: there is no network to send it to.
      "--debug-addr=-",
      "--telemetry=disable",
      "--log-level=warn",
    ],
    // The backend URL holds a password: in the environment, not on a command line every user can read.
    {
      cwd: FERRETDB_HOME,
      detached: true,
      stdio: ["ignore", log, log],
      env: { ...process.env, FERRETDB_POSTGRESQL_URL: backendUrl },
    },
  );
  closeSync(log);
  server.unref();
  writeFileSync(FERRETDB_PID_FILE, `${server.pid}\n`);
  console.log(`ferretdb: started pid ${server.pid}, documents in PostgreSQL database ferretdb, log ${LOG}`);
  return server.pid;
}

/**
 * Starts FerretDB on MONGODB_URL's host and port unless a server answers there, and waits until it does.
 * PostgreSQL must be up, with the database of {@link ferretDbBackendUrl}.
 *
 * @example
 * await ferretDbUp("mongodb://127.0.0.1:27017/pipeline", "postgres://pipeline:pipeline@127.0.0.1:5432/pipeline");
 */
export async function ferretDbUp(url: string, databaseUrl: string): Promise<void> {
  const { hostname, port } = new URL(url);
  if (await documentStoreAnswers(url)) {
    console.log(`ferretdb: reusing the server answering on ${hostname}:${port || 27017}`);
    return;
  }
  await ensureBinary();
  const pid = runningFerretDbPid() ?? spawnFerretDb(`${hostname}:${port || 27017}`, ferretDbBackendUrl(databaseUrl));
  const started = Date.now();
  while (!(await documentStoreAnswers(url, 1_000))) {
    if (runningFerretDbPid() !== pid) {
      rmSync(FERRETDB_PID_FILE, { force: true });
      throw new Error(`FerretDB (pid ${pid}) exited while starting; see ${LOG}`);
    }
    if (Date.now() - started > START_TIMEOUT_MS)
      throw new Error(`FerretDB (pid ${pid}) did not answer on ${hostname}:${port} within 30 s; see ${LOG}`);
    await Bun.sleep(100);
  }
  console.log(
    `ferretdb: answering on ${hostname}:${port || 27017} after ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
}
