/**
 * `bun run stack`: every server the scripts and integration tests talk to: the Kafka broker with the pipeline's
 * topics, PostgreSQL (also the capture source, with logical WAL), MariaDB and versitygw for the cdc sinks, and
 * FerretDB, a MongoDB-protocol document store (scripts/stack/*.ts). There is no container engine here, so Kafka
 * runs from jars that Maven resolves and PostgreSQL is the Debian cluster. Idempotent: whatever already answers
 * is reused, and only what this script started is recorded, so `bun run stack:stop` never stops a server someone
 * else runs. Importing it has no side effects: `bun run kafka` (scripts/kafka.ts) and `stack:stop` use its exports.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { $ } from "bun";
import { config } from "../shared/config.ts";
import {
  brokerAnswers,
  checkBroker,
  ensureTopics,
  KafkaAccessError,
  type KafkaConnection,
  kafkaConnection,
} from "../shared/kafka.ts";
import { topicSpecs } from "../shared/topics.ts";
import {
  BROKER_KEYSTORE_FILE,
  BROKER_KEYSTORE_PASSWORD,
  ensureCertificates,
  LOCAL_CA_FILE,
  SERVER_CERT_FILE,
  SERVER_KEY_FILE,
} from "./certs.ts";
import { ferretDbBackendUrl, ferretDbUp } from "./stack/ferretdb.ts";
import { mariaDbPaths, mariaDbUp } from "./stack/mariadb.ts";
import { versityPaths, versityUp } from "./stack/versitygw.ts";

const POM = join(import.meta.dir, "..", "stack", "pom.xml");
const PROPERTIES_TEMPLATE = join(import.meta.dir, "..", "stack", "kafka.properties");
/** The source database's users table, which compose's postgres init applies too. */
const SOURCE_SQL = join(import.meta.dir, "..", "stack", "source.sql");

/** Jars, broker data, logs and the record of what this script started. Outside the work tree: clones share it. */
export const STACK_HOME = join(homedir(), ".cache", "event-pipeline");
/** Pid of the broker this script started; `stack:stop` signals only this one. */
export const KAFKA_PID_FILE = join(STACK_HOME, "kafka.pid");
/** Present (holding "<version> <cluster>") only when this script started the PostgreSQL cluster. */
export const PG_MARKER_FILE = join(STACK_HOME, "postgres-started");
const KAFKA_LOG = join(STACK_HOME, "kafka.log");
/** The stack's MariaDB (persist's `mysql` sink) and S3 server (the `s3` sink), under the same home. */
export const MARIADB = mariaDbPaths(STACK_HOME);
export const VERSITYGW = versityPaths(STACK_HOME);

// The pom is the one place that names the version. Data is kept per version, so a version bump starts clean; jars
// are kept per pom content, so any edit to the pom (a dependency added or excluded) resolves a fresh jar set on the
// next run while the data stays. Older `libs-*` directories are left alone: a running broker may use one.
const POM_TEXT = readFileSync(POM, "utf8");
export const KAFKA_VERSION = pomKafkaVersion(POM_TEXT);
const KAFKA_HOME = join(STACK_HOME, `kafka-${KAFKA_VERSION}`);
const POM_HASH = new Bun.CryptoHasher("sha256").update(POM_TEXT).digest("hex").slice(0, 8);
/** The jars stack/pom.xml resolves: the broker's and the CLI tools'. */
export const LIBS = join(KAFKA_HOME, `libs-${POM_HASH}`);
const DATA = join(KAFKA_HOME, "data");
const CLUSTER_ID_FILE = join(KAFKA_HOME, "cluster-id");
const PROPERTIES = join(KAFKA_HOME, "server.properties");
/** `java -cp` value for {@link LIBS}; the wildcard is expanded by java, not by a shell. */
export const CLASSPATH = join(LIBS, "*");

const KAFKA_START_TIMEOUT_MS = 90_000;
const PG_START_TIMEOUT_MS = 30_000;
// The stock start script takes a 1 GiB heap; a single-node test broker runs well in half of that (RSS ~350 MB).
const BROKER_JVM = ["-Xms256m", "-Xmx512m", "-XX:+ExitOnOutOfMemoryError"];
const LOG_FORMAT = [
  "-Dorg.slf4j.simpleLogger.showDateTime=true",
  "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
];
/**
 * JVM flags for short-lived tools (StorageTool here, the CLI tools of `bun run kafka`): a small heap, the fastest
 * start (C1 only, the JDK's class-data archive, serial GC) and only warnings and errors in the log: StorageTool
 * and the admin clients log their whole configuration at INFO.
 */
export const TOOL_JVM = [
  "-Xms32m",
  "-Xmx256m",
  "-XX:TieredStopAtLevel=1",
  "-Xshare:auto",
  "-XX:+UseSerialGC",
  "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
];

/**
 * The broker's SASL_SSL listener (stack/kafka.properties) and its one user, for the tests of the security settings:
 * as a managed cluster is reached, SASL over TLS, with the local CA trusted. Local-only credentials.
 */
export const LOCAL_SASL_SSL = {
  broker: "127.0.0.1:19094",
  username: "pipeline",
  password: "pipeline-secret",
  caFile: LOCAL_CA_FILE,
} as const;

/** The class behind `kafka-configs.sh` (`bun run kafka configs`): SCRAM users, among other things. */
export const CONFIG_COMMAND = "kafka.admin.ConfigCommand";

/** A failure with a message meant for the person running the script; no stack trace needed. */
export class StackError extends Error {}

function pomKafkaVersion(pom: string): string {
  const version = /<kafka\.version>([^<]+)<\/kafka\.version>/.exec(pom)?.[1];
  if (!version) throw new Error(`no <kafka.version> in ${POM}`);
  return version;
}

/** True when `pid` is a running Kafka broker; the command line is checked so a reused pid is never signalled. */
/**
 * True once every thread of `pid` has ended. A JVM's main thread can end first and leave a zombie whose other
 * threads still run shutdown hooks and hold the data directory's lock: a broker started then would fail.
 */
export function processExited(pid: number): boolean {
  const ended = (tid: string) => {
    try {
      return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"));
    } catch {
      return true; // the thread is gone
    }
  };
  try {
    return readdirSync(`/proc/${pid}/task`).every(ended);
  } catch {
    return true; // the process is gone
  }
}

export function isKafka(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("kafka.Kafka");
  } catch {
    return false;
  }
}

/** The pid of the broker this script started, if it still runs. */
export function runningKafkaPid(): number | undefined {
  if (!existsSync(KAFKA_PID_FILE)) return undefined;
  const pid = Number(readFileSync(KAFKA_PID_FILE, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 && isKafka(pid) ? pid : undefined;
}

/** Throws a {@link StackError} that says how to install `command` when it is not on the PATH. */
export function requireCommand(command: string, aptPackage: string): void {
  if (!Bun.which(command)) {
    throw new StackError(
      `${command} is not installed; install it with:\n  apt-get update && apt-get install -y ${aptPackage}`,
    );
  }
}

/** The log's errors with their exception messages, then its last lines: the cause is rarely at the very end. */
function logExcerpt(): string {
  if (!existsSync(KAFKA_LOG)) return "(no log)";
  const lines = readFileSync(KAFKA_LOG, "utf8").trimEnd().split("\n");
  const errors = lines.flatMap((line, i) => {
    if (!/ (ERROR|FATAL) /.test(line)) return [];
    const next = lines[i + 1] ?? "";
    const isMessage = next && !next.startsWith("\t") && !/^\d{4}-\d\d-\d\dT/.test(next);
    return isMessage ? [line, next] : [line];
  });
  return [...errors.slice(0, 20), "...", ...lines.slice(-10)].join("\n");
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Removes `libs-*.partial-<pid>` directories whose process is gone: downloads that were interrupted. */
function removeAbandonedDownloads(): void {
  for (const name of readdirSync(KAFKA_HOME)) {
    const download = /^libs.*\.partial(?:-(\d+))?$/.exec(name);
    if (!download) continue;
    const pid = Number(download[1] ?? 0);
    if (!(pid > 0 && alive(pid))) rmSync(join(KAFKA_HOME, name), { recursive: true, force: true });
  }
}

/**
 * Resolves stack/pom.xml's jars into {@link LIBS} unless they are there (once per pom change). `log` takes the
 * progress line: `bun run kafka` sends it to stderr, so a tool's stdout stays the tool's.
 */
export async function ensureJars(log: (line: string) => void = console.log): Promise<void> {
  if (existsSync(LIBS)) return;
  requireCommand("mvn", "maven");
  log(`kafka: resolving the Kafka ${KAFKA_VERSION} jars of ${POM} with Maven (once per change of the pom)`);
  // Copied aside and renamed, so an interrupted download is never taken for a complete one. One directory per
  // process, so two first runs at once (stack and kafka in two terminals) do not write into each other's.
  mkdirSync(KAFKA_HOME, { recursive: true });
  removeAbandonedDownloads();
  const partial = `${LIBS}.partial-${process.pid}`;
  const mvn =
    await $`mvn -B -q -f ${POM} dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=${partial}`
      .nothrow()
      .quiet();
  // Captured rather than shown: Debian's Maven prints stray colour codes even in batch mode; -q leaves only errors.
  if (mvn.exitCode !== 0) {
    const output = Bun.stripANSI(`${mvn.stdout}${mvn.stderr}`).trim();
    rmSync(partial, { recursive: true, force: true });
    throw new StackError(`Maven could not resolve Kafka's jars (exit ${mvn.exitCode}):\n${output}`);
  }
  try {
    renameSync(partial, LIBS);
  } catch (error) {
    // Another process finished the same download first; its copy is as good as this one.
    rmSync(partial, { recursive: true, force: true });
    if (!existsSync(LIBS)) throw error;
  }
}

/** The `java -cp` value for Kafka's classes, with the jars resolved first if this pom's are not there yet. */
export async function kafkaClasspath(log: (line: string) => void = console.log): Promise<string> {
  requireCommand("java", "openjdk-17-jre-headless");
  await ensureJars(log);
  return CLASSPATH;
}

async function ensureStorage(): Promise<void> {
  mkdirSync(DATA, { recursive: true });
  // Rendered on every start so edits to the template take effect without wiping the data.
  const values: Record<string, string> = {
    DATA_DIR: DATA,
    KEYSTORE_FILE: BROKER_KEYSTORE_FILE,
    KEYSTORE_PASSWORD: BROKER_KEYSTORE_PASSWORD,
    SASL_USERNAME: LOCAL_SASL_SSL.username,
    SASL_PASSWORD: LOCAL_SASL_SSL.password,
  };
  const template = readFileSync(PROPERTIES_TEMPLATE, "utf8");
  writeFileSync(
    PROPERTIES,
    template.replaceAll(/@([A-Z_]+)@/g, (_, name: string) => values[name] ?? `@${name}@`),
  );
  if (existsSync(join(DATA, "meta.properties"))) return;
  if (!existsSync(CLUSTER_ID_FILE)) {
    const id = (await $`java ${TOOL_JVM} -cp ${CLASSPATH} kafka.tools.StorageTool random-uuid`.quiet().text()).trim();
    writeFileSync(CLUSTER_ID_FILE, `${id}\n`);
  }
  const clusterId = readFileSync(CLUSTER_ID_FILE, "utf8").trim();
  console.log(`kafka: formatting storage in ${DATA} (cluster ${clusterId})`);
  await $`java ${TOOL_JVM} -cp ${CLASSPATH} kafka.tools.StorageTool format -t ${clusterId} -c ${PROPERTIES}`.quiet();
}

function spawnBroker(): number {
  // One previous log is kept: it usually holds why the last broker went away.
  if (existsSync(KAFKA_LOG)) renameSync(KAFKA_LOG, `${KAFKA_LOG}.1`);
  const log = openSync(KAFKA_LOG, "a");
  const broker = Bun.spawn(["java", ...BROKER_JVM, ...LOG_FORMAT, "-cp", CLASSPATH, "kafka.Kafka", PROPERTIES], {
    cwd: KAFKA_HOME,
    detached: true, // its own session: it outlives this script and the terminal
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  broker.unref();
  writeFileSync(KAFKA_PID_FILE, `${broker.pid}\n`);
  console.log(`kafka: started pid ${broker.pid}, log ${KAFKA_LOG}`);
  return broker.pid;
}

async function waitForBroker(kafka: KafkaConnection, pid: number): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < KAFKA_START_TIMEOUT_MS) {
    if (await brokerAnswers(kafka, 1000)) {
      console.log(
        `kafka: answering on ${kafka.brokers.join(",")} after ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
      return;
    }
    // Liveness, not the command line: a process read right after spawn may not show java's arguments yet.
    if (processExited(pid)) {
      rmSync(KAFKA_PID_FILE, { force: true });
      throw new StackError(`Kafka (pid ${pid}) exited while starting; from ${KAFKA_LOG}:\n${logExcerpt()}`);
    }
    await Bun.sleep(250);
  }
  throw new StackError(
    `Kafka (pid ${pid}) did not answer on ${kafka.brokers.join(",")} within ${KAFKA_START_TIMEOUT_MS / 1000} s; ` +
      `it is left running (bun run stack:stop ends it). From ${KAFKA_LOG}:\n${logExcerpt()}`,
  );
}

async function kafkaUp(kafka: KafkaConnection): Promise<void> {
  if (await brokerAnswers(kafka, 2000)) {
    console.log(`kafka: reusing the broker answering on ${kafka.brokers.join(",")}`);
    // `bun run kafka` runs the CLI tools from this pom's jars, which a broker started earlier may predate. Only
    // with Maven and Java present: a broker that is not ours (Redpanda under compose) needs neither.
    if (Bun.which("mvn") && Bun.which("java")) await ensureJars();
    return;
  }
  let pid = runningKafkaPid();
  if (pid) {
    console.log(`kafka: pid ${pid} (started earlier) is not answering yet; waiting for it`);
  } else {
    requireCommand("java", "openjdk-17-jre-headless");
    await Promise.all([ensureJars(), ensureCertificates()]);
    await ensureStorage();
    pid = spawnBroker();
  }
  await waitForBroker(kafka, pid);
}

/** The SASL_SSL listener as a client of `mechanism` reaches it. */
const saslSsl = (mechanism: "SCRAM-SHA-256" | "SCRAM-SHA-512" | "PLAIN"): KafkaConnection => ({
  brokers: [LOCAL_SASL_SSL.broker],
  sasl: { mechanism, username: LOCAL_SASL_SSL.username, password: LOCAL_SASL_SSL.password },
  tls: { caFile: LOCAL_SASL_SSL.caFile, checkServerName: true },
});

const SCRAM_MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512"] as const;

/** True when the SCRAM user logs in with both mechanisms; throws when the listener refuses for another reason. */
async function scramUserWorks(): Promise<boolean> {
  try {
    for (const mechanism of SCRAM_MECHANISMS) if (!(await checkBroker(saslSsl(mechanism), 5_000))) return false;
    return true;
  } catch (error) {
    if (error instanceof KafkaAccessError && error.message.includes("wrong username or password")) return false;
    throw error;
  }
}

/**
 * Makes the SASL_SSL listener usable: checks that it answers (a broker started before it was added has none) and
 * adds the SCRAM user when it cannot log in. After start, through the plaintext listener, so a data directory
 * formatted before the user existed gets it too; SCRAM credentials live in the cluster metadata and persist.
 */
async function saslSslUp(kafka: KafkaConnection): Promise<void> {
  if (!(await checkBroker(saslSsl("PLAIN"), 5_000))) {
    console.log(
      `kafka: no SASL_SSL listener answers on ${LOCAL_SASL_SSL.broker}: the running broker predates it; ` +
        "restart it with `bun run stack:stop && bun run stack` (the SASL_SSL tests fail until then)",
    );
    return;
  }
  if (!(await scramUserWorks())) {
    // One mechanism per request: the broker refuses to alter one user's credentials twice in a request.
    for (const mechanism of SCRAM_MECHANISMS) {
      const credential = `${mechanism}=[password=${LOCAL_SASL_SSL.password}]`;
      await $`java ${TOOL_JVM} -cp ${CLASSPATH} ${CONFIG_COMMAND} --bootstrap-server ${kafka.brokers.join(",")} --alter --add-config ${credential} --entity-type users --entity-name ${LOCAL_SASL_SSL.username}`.quiet();
    }
    // The credentials reach the listener through the metadata log: a moment after the command returns.
    const deadline = Date.now() + 30_000;
    while (!(await scramUserWorks())) {
      if (Date.now() > deadline)
        throw new StackError(`the SCRAM user ${LOCAL_SASL_SSL.username} cannot log in after 30 s`);
      await Bun.sleep(250);
    }
    console.log(`kafka: added SCRAM user ${LOCAL_SASL_SSL.username} (${SCRAM_MECHANISMS.join(", ")})`);
  }
  console.log(
    `kafka: SASL_SSL on ${LOCAL_SASL_SSL.broker} (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, user ${LOCAL_SASL_SSL.username}), ` +
      `CA ${LOCAL_SASL_SSL.caFile}`,
  );
}

interface Cluster {
  version: number;
  cluster: string;
  port: string;
  running: number;
}

async function postgresUp(databaseUrl: string, captureUrl: string): Promise<void> {
  requireCommand("pg_lsclusters", "postgresql");
  const url = new URL(databaseUrl);
  const port = url.port || "5432";
  const clusters: Cluster[] = await $`pg_lsclusters --json`.quiet().json();
  const cluster = clusters.find((candidate) => candidate.port === port);
  if (!cluster) {
    const known = clusters.map((c) => `${c.version}/${c.cluster} on ${c.port}`).join(", ") || "none";
    throw new StackError(`no PostgreSQL cluster listens on port ${port} (clusters: ${known}); create one with:
  pg_createcluster ${clusters[0]?.version ?? 15} main --port ${port}`);
  }
  const name = `${cluster.version}/${cluster.cluster}`;
  if (cluster.running) {
    console.log(`postgres: reusing running cluster ${name}`);
  } else {
    await $`pg_ctlcluster ${cluster.version} ${cluster.cluster} start`.quiet();
    writeFileSync(PG_MARKER_FILE, `${cluster.version} ${cluster.cluster}\n`);
    console.log(`postgres: started cluster ${name}`);
  }
  await waitForPostgres(url.hostname, port);
  await ensureLogicalWal(cluster, port);
  await waitForPostgres(url.hostname, port);
  await ensureRoleAndDatabase(url, port);
  await ensureSourceDatabase(new URL(captureUrl), port);
  // FerretDB's documents: a database of their own on the same cluster, for the same user.
  await ensureRoleAndDatabase(new URL(ferretDbBackendUrl(databaseUrl)), port);
  await ensurePostgresTls(port);
  // The check that matters: the pipeline's own login over TCP, as the services and tests will connect.
  await $`psql ${databaseUrl} -X -Atqc ${"select 1"}`.env({ ...process.env, PGCONNECT_TIMEOUT: "5" }).quiet();
  console.log(`postgres: ${url.username}@${url.host}${url.pathname} accepts logins`);
}

/** Runs `query` as the postgres superuser over the Unix socket; returns its unaligned output. */
const superuser = async (port: string, query: string) =>
  (
    await $`runuser -u postgres -- psql -X -Atq -v ON_ERROR_STOP=1 -p ${port} -c ${query}`.cwd("/").quiet().text()
  ).trim();

/**
 * capture.ts reads the `source` database over logical replication, which needs `wal_level=logical`. Changing it
 * takes a restart; the cluster is restarted only when the setting differs, so a second run changes nothing.
 * Clients of the shared cluster see their connections drop once; run it under the servers' lock.
 */
async function ensureLogicalWal(cluster: Cluster, port: string): Promise<void> {
  if ((await superuser(port, "show wal_level")) === "logical") return;
  await superuser(port, "alter system set wal_level = 'logical'");
  console.log(`postgres: wal_level=logical set; restarting cluster ${cluster.version}/${cluster.cluster}`);
  await $`pg_ctlcluster ${cluster.version} ${cluster.cluster} restart`.quiet();
}

/**
 * The database capture.ts reads by default, owned by the URL's role (given REPLICATION, as logical replication
 * needs), with the `users` table it captures (stack/source.sql).
 */
async function ensureSourceDatabase(url: URL, port: string): Promise<void> {
  const user = decodeURIComponent(url.username);
  const db = decodeURIComponent(url.pathname.slice(1));
  const sql = Buffer.from(`
alter role :"user" with replication;
select format('create database %I owner %I', :'db', :'user')
  where not exists (select from pg_database where datname = :'db') \\gexec
`);
  await $`runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p ${port} -v user=${user} -v db=${db} < ${sql}`
    .cwd("/")
    .quiet();
  await $`psql ${url.href} -X -q -v ON_ERROR_STOP=1 -f ${SOURCE_SQL}`
    .env({ ...process.env, PGCONNECT_TIMEOUT: "5", PGOPTIONS: "-c client_min_messages=warning" })
    .quiet();
  console.log(`postgres: ${db} database with table users, wal_level=logical, for capture.ts`);
}

/**
 * Has the cluster present the local CA's certificate, so that `sslmode=verify-full` with DATABASE_TLS_CA_FILE is
 * tested for real. Only TLS changes (a reload, no restart): logins without TLS work as before, and clients that
 * only require TLS keep working. The key is copied into the data directory, where the server may read it.
 */
async function ensurePostgresTls(port: string): Promise<void> {
  await ensureCertificates();
  const dataDir = await superuser(port, "show data_directory");
  const cert = join(dataDir, "pipeline-server.crt");
  const key = join(dataDir, "pipeline-server.key");
  const current = await superuser(port, "select current_setting('ssl') || ' ' || current_setting('ssl_cert_file')");
  const same =
    current === `on ${cert}` && (await $`cmp -s ${SERVER_CERT_FILE} ${cert}`.nothrow().quiet()).exitCode === 0;
  if (!same) {
    await $`install -o postgres -g postgres -m 0644 ${SERVER_CERT_FILE} ${cert}`.quiet();
    await $`install -o postgres -g postgres -m 0600 ${SERVER_KEY_FILE} ${key}`.quiet();
    for (const [name, value] of [
      ["ssl_cert_file", cert],
      ["ssl_key_file", key],
      ["ssl", "on"],
    ])
      await superuser(port, `alter system set ${name} = '${value}'`);
    await superuser(port, "select pg_reload_conf()");
    console.log(`postgres: TLS with the local CA's certificate (${cert})`);
  }
}

async function waitForPostgres(host: string, port: string): Promise<void> {
  const deadline = Date.now() + PG_START_TIMEOUT_MS;
  while ((await $`pg_isready -q -h ${host} -p ${port}`.nothrow().quiet()).exitCode !== 0) {
    if (Date.now() > deadline) throw new StackError(`PostgreSQL on ${host}:${port} not ready after 30 s`);
    await Bun.sleep(250);
  }
}

// psql variables (:'x' literal, :"x" identifier) do the quoting; \gexec runs the statement a query builds.
const ROLE_AND_DATABASE_SQL = `
select format(
  case when exists (select from pg_roles where rolname = :'user')
    then 'alter role %I with login password %L' else 'create role %I with login password %L' end,
  :'user', :'password') \\gexec
select format('create database %I owner %I', :'db', :'user')
  where not exists (select from pg_database where datname = :'db') \\gexec
`;

/** Creates the URL's role and database if missing, and sets the role's password to the URL's, as superuser. */
async function ensureRoleAndDatabase(url: URL, port: string): Promise<void> {
  const user = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  const db = decodeURIComponent(url.pathname.slice(1));
  // Over the Unix socket as the postgres OS user: Debian's pg_hba trusts that peer, no password needed.
  const sql = Buffer.from(ROLE_AND_DATABASE_SQL);
  await $`runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p ${port} -v user=${user} -v password=${password} -v db=${db} < ${sql}`
    .cwd("/")
    .quiet();
}

async function topicsUp(kafka: KafkaConnection, partitions: number): Promise<void> {
  const specs = topicSpecs(partitions);
  const created = await ensureTopics(kafka, specs);
  const note = created.length ? `created ${created.join(", ")}` : "all exist";
  console.log(`topics: ${specs.length} topics with ${partitions} partitions, ${note}`);
}

function fail(error: unknown): never {
  if (error instanceof $.ShellError) {
    console.error(`stack: a command failed (exit ${error.exitCode}):\n${error.stderr.toString().trim()}`);
  } else {
    console.error(`stack: ${error instanceof StackError ? error.message : error}`);
  }
  process.exit(1);
}

async function main(): Promise<void> {
  const env = config();
  const kafka = kafkaConnection(env);
  mkdirSync(STACK_HOME, { recursive: true });
  const started = Date.now();
  // The broker's JVM takes seconds to start; PostgreSQL (then FerretDB, which stores on it), MariaDB and
  // versitygw come up meanwhile.
  const stores = postgresUp(env.DATABASE_URL, env.CAPTURE_DATABASE_URL).then(() =>
    ferretDbUp(env.MONGODB_URL, env.DATABASE_URL).catch((error: Error) => {
      throw new StackError(error.message);
    }),
  );
  await Promise.all([kafkaUp(kafka), stores, mariaDbUp(env.MYSQL_URL, MARIADB), versityUp(env, VERSITYGW)]);
  await Promise.all([topicsUp(kafka, env.TOPIC_PARTITIONS), saslSslUp(kafka)]);
  console.log(`tls: trust ${LOCAL_CA_FILE} (KAFKA_TLS_CA_FILE, DATABASE_TLS_CA_FILE) for the local servers`);
  console.log(`stack: ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

if (import.meta.main) await main().catch(fail);
