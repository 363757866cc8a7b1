/**
 * `bun run test:faults [--profile smoke|ci|full] [--seed N]`: fault-injection accounting on the local stack.
 *
 * Every stage runs as its own process. Seeded traffic (tools/generators.ts) flows through ingest with client
 * event_ids while the run SIGKILLs consumer stages, stops the broker and PostgreSQL, and adds and removes a
 * second enrich. Then it waits for the pipeline to drain and compares what the client was told with what
 * PostgreSQL and the topics hold (tools/faults/checks.ts says what is asserted and why). It prints one summary
 * and exits 0 on a pass, 1 on any violation, 2 when it cannot run, 3 when only checks that other traffic could
 * have disturbed failed.
 *
 * It stops and restarts servers that other sessions use, and always leaves them running. Not a `*.test.ts`:
 * `bun test` does not pick it up.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { MongoClient } from "mongodb";
import { createDb } from "../persist/postgres/db.ts";
import { SINKS } from "../persist/sinks.ts";
import { documentStoreAnswers } from "../scripts/stack/ferretdb.ts";
import { config } from "../shared/config.ts";
import { within } from "../shared/deadline.ts";
import { brokerAnswers, endOffsets, ensureTopics, kafkaConnection, seekGroup } from "../shared/kafka.ts";
import { createLogger } from "../shared/log.ts";
import { TOPICS, topicSpecs } from "../shared/topics.ts";
import { localFerretDb } from "../tests/support.ts";
import { accountCdc, CDC_INSTANCES, cdcSettings, cdcStart, startUserLoad } from "./faults/cdc.ts";
import { account, type Check, type Contamination } from "./faults/checks.ts";
import { drain, MONGODB_GROUP, nextFreeWindow, raiseStoredPositions, sendClosers, snapshot } from "./faults/drain.ts";
import { groupMembers } from "./faults/groups.ts";
import { ensureBroker, mariaDbControl, postgresAnswers, postgresControl, stackBrokerPid } from "./faults/infra.ts";
import { createInjector } from "./faults/inject.ts";
import { Ledger } from "./faults/ledger.ts";
import { loadLine, type Stream, startLoad } from "./faults/load.ts";
import { MONGODB_PERSIST, Pipeline, type Role } from "./faults/pipeline.ts";
import { type ConsumerRole, describe, type Fault, PROFILES, plan } from "./faults/profiles.ts";
import { printSummary } from "./faults/summary.ts";
import { between, mulberry32, seedOf } from "./generators.ts";
import { groupOf } from "./harness.ts";
import { pollEvery, TimeoutError } from "./poll.ts";
import { freePort } from "./ports.ts";
import { userStatusLine } from "./users.ts";

const USAGE = `Usage: bun run test:faults [--profile smoke|ci|full] [--seed N] [--foreign-wait S] [--ignore-foreign]
  --profile smoke   no faults, about a minute: checks the harness itself
  --profile ci      the default, about 2.5 minutes: each consumer killed twice (intervals once) and ingest once, a broker and a
                    PostgreSQL outage, a second enrich added and removed, capture and the cdc sinks killed and MariaDB
                    restarted once each
  --profile full    about 10 minutes: more traffic, more of every fault, stages killed during outages
  --seed N          replays the same traffic and fault plan (every run prints its seed)
  --foreign-wait S  wait up to S seconds (default 60) for other consumers to leave the stages' groups
  --ignore-foreign  run even though other consumers are in the groups (checks may turn out inconclusive)`;

const { values } = parseArgs({
  options: {
    profile: { type: "string", default: "ci" },
    seed: { type: "string" },
    "foreign-wait": { type: "string", default: "60" },
    "ignore-foreign": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const profileName = values.profile as keyof typeof PROFILES;
const profile = PROFILES[profileName];
if (!profile) {
  console.error(`--profile must be one of ${Object.keys(PROFILES).join(", ")}\n\n${USAGE}`);
  process.exit(2);
}

const env = config();
const kafka = kafkaConnection(env);
const seed =
  values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(values.seed) || seedOf(values.seed);
const rng = mulberry32(seedOf(`${seed}/faults`));
/** Every event_id and user_id of the run starts with `<run>-`, so the checks count only this run. */
const run = `ft${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36)}`;
const logDir = mkdtempSync(join(tmpdir(), `faults-${run}-`));
const windowMs = profile.window.seconds * 1000;
const started = Date.now();
const ROLES: ConsumerRole[] = ["enrich", "aggregate", "intervals", "persist"];
/** Each consumer stage's group, and back: members are counted per group, instances per role. */
const GROUP_OF = new Map(ROLES.map((role) => [groupOf(role) as string, role]));
const GROUPS = [...GROUP_OF.keys()];
const INSTANCES = ["ingest", "enrich#1", "aggregate", "intervals", "persist"];
/** A killed member stays in its group until its session times out (6 s): so soon after a fault, extra members are ours. */
const MEMBERSHIP_SETTLE_MS = 20_000;
/** How long the load may take to end once stopped: longer than a request's own timeout. */
const LOAD_STOP_MS = 30_000;

function say(line: string): void {
  console.log(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)}s] ${line}`);
}

const sql = createDb(env, 2);
const postgres = await postgresControl(env);
// The MongoDB sink runs beside PostgreSQL's when a MongoDB-protocol server answers (FerretDB from the stack).
const withMongodb = await documentStoreAnswers(env.MONGODB_URL);
const mongo = withMongodb ? new MongoClient(env.MONGODB_URL, { serverSelectionTimeoutMS: 5_000 }) : undefined;
const ferretdb = withMongodb ? localFerretDb() : undefined;
if (withMongodb) INSTANCES.push(MONGODB_PERSIST);
INSTANCES.push(...CDC_INSTANCES);
const mariadb = mariaDbControl(env.MYSQL_URL);
const cdc = cdcSettings(run);
const stageEnv = {
  ...cdc.env,
  LOG_LEVEL: "info",
  WINDOW_SECONDS: String(profile.window.seconds),
  WINDOW_GRACE_SECONDS: String(profile.window.graceSeconds),
  WINDOW_IDLE_TICK_MS: "200",
};
const pipeline = new Pipeline(logDir, stageEnv, freePort, say);
const ledger = new Ledger();
const timeline: { at: string; fault: string; result: string }[] = [];
const otherMembers: string[] = [];
const problems: { text: string; fatal: boolean }[] = [];
const load = new AbortController();
let streams: Stream[] = [];
let lastFaultAt = 0;
let interrupted = false;
process.once("SIGINT", () => {
  interrupted = true;
  load.abort();
  say("interrupted: stopping the load, then the stages; the servers are left running");
});

/** The servers answer, the topics exist, and nobody else consumes in the stages' groups (or we were told to go on). */
async function preflight(): Promise<void> {
  if (!(await brokerAnswers(kafka, 3_000)) || !(await postgresAnswers(env))) {
    console.error(
      `The broker (${kafka.brokers.join(",")}) or PostgreSQL does not answer: start them with \`bun run stack\`.`,
    );
    process.exit(2);
  }
  await ensureTopics(kafka, topicSpecs(env.TOPIC_PARTITIONS));
  if (stackBrokerPid() === undefined)
    problems.push({ text: "broker faults skipped: the broker was not started by `bun run stack`", fatal: false });
  if (!postgres)
    problems.push({ text: "PostgreSQL faults skipped: no local cluster behind DATABASE_URL", fatal: false });
  if (!withMongodb) problems.push({ text: "MongoDB sink not run: nothing answers at MONGODB_URL", fatal: false });
  else if (!ferretdb) problems.push({ text: "FerretDB restarts skipped: not the stack's FerretDB", fatal: false });
  if (!mariadb) problems.push({ text: "MariaDB restarts skipped: not the stack's MariaDB", fatal: false });
  const alone = async () => {
    const busy = [...(await groupMembers(kafka, GROUPS))].filter(([, members]) => members.length > 0);
    if (busy.length === 0) return true;
    say(`waiting for other consumers to leave: ${busy.map(([g, m]) => `${g} (${m.join(", ")})`).join("; ")}`);
    return undefined;
  };
  try {
    await pollEvery("the stages' groups to be empty", alone, Number(values["foreign-wait"]) * 1000, 5_000);
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    if (!values["ignore-foreign"]) {
      console.error(`${error.message}: another pipeline consumes from this broker; stop it or pass --ignore-foreign.`);
      process.exit(2);
    }
    otherMembers.push("other members were present at the start (--ignore-foreign)");
  }
  // Every group starts where its topics end: what others left there (a test suite's groups reset, a bench's
  // millions of records) is not the run's to consume, and a backlog would only delay the run past its deadlines.
  const reads: [string, string[]][] = [
    [groupOf("enrich") as string, [TOPICS.locationsRaw, TOPICS.vehiclesRaw]],
    [groupOf("aggregate") as string, [TOPICS.loginsRaw]],
    [groupOf("intervals") as string, [TOPICS.loginsStats]],
    [groupOf("persist") as string, SINKS.postgres({ env, log: createLogger("faults", "silent"), group: "" }).topics],
    ...(withMongodb
      ? [[MONGODB_GROUP, [TOPICS.locationsEnriched, TOPICS.vehiclesEnriched]] as [string, string[]]]
      : []),
  ];
  for (const [group, topics] of reads) {
    const ends = (await Promise.all(topics.map((topic) => endOffsets(kafka, topic)))).flat();
    await seekGroup(kafka, group, ends);
    // persist's PostgreSQL sink counts as drained by the positions it keeps with its rows: they move too.
    if (group === groupOf("persist")) await raiseStoredPositions(sql, group, ends);
  }
}

/** Every few seconds: persist's counters (a kill resets them), progress, and members that are not ours. */
function startMonitor(): () => void {
  let busy = false;
  let ticks = 0;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      await pipeline.scrapePersist();
      if (++ticks % 4 === 0) say(loadLine(streams));
      const lastCrash = pipeline.crashes.at(-1)?.at ?? 0;
      if (Date.now() - Math.max(lastFaultAt, lastCrash) < MEMBERSHIP_SETTLE_MS) return;
      for (const [group, members] of (await groupMembers(kafka, GROUPS).catch(() => undefined)) ?? []) {
        const ours = pipeline.instances(GROUP_OF.get(group) as Role).length;
        if (members.length > ours)
          otherMembers.push(
            `${new Date().toISOString()}: ${group} has ${members.length} members, ${ours} of them ours`,
          );
      }
    } finally {
      busy = false;
    }
  }, 2_500);
  return () => clearInterval(timer);
}

/** The plan, one fault after another, with load before, between and after them. */
async function runFaults(faults: Fault[]): Promise<void> {
  const inject = createInjector({
    pipeline,
    sql,
    kafka,
    logDir,
    profile,
    rng,
    postgres,
    ferretdb,
    mariadb,
    requestsSoFar: () => streams.reduce((n, s) => n + s.tally.requests, 0),
  });
  // These sleeps shape the run (faults land at random moments under load); every wait on the pipeline polls.
  await Bun.sleep(profile.warmupMs);
  for (const fault of faults) {
    if (interrupted) throw new Error("interrupted");
    await Bun.sleep(between(rng, ...profile.gapMs));
    const at = ((Date.now() - started) / 1000).toFixed(1);
    lastFaultAt = Date.now();
    say(`fault: ${describe(fault)}`);
    const result = await inject(fault);
    lastFaultAt = Date.now();
    say(`  -> ${result}`);
    timeline.push({ at, fault: describe(fault), result });
  }
  await Bun.sleep(profile.tailMs);
}

const drained = (what: string, withAggregate = true) =>
  drain({ kafka, sql, what, timeoutMs: profile.drainTimeoutMs, withAggregate, withMongodb, say });

let checks: Check[] = [];
let details: string[] = [];
let contamination: Contamination = { otherLocations: 0, otherVehicles: 0, otherLogins: 0, otherMembers: 0 };
let stopMonitor = () => {};
try {
  await preflight();
  const faults = plan(profile, rng);
  say(`run ${run}, profile ${profileName}, seed ${seed}, ${faults.length} faults planned, logs in ${logDir}`);
  await Promise.all(INSTANCES.map((instance) => pipeline.start(instance)));
  const ingestUrl = pipeline.url("ingest");

  // What others left in the topics is consumed first, so it neither delays nor mixes with the run. The aggregate
  // may hold late counts of it until a window of their partition closes: warm-up closers make those close in a
  // window before the run's (their event_ids are not the run's).
  const notDrained = (error: Error) => say(`not drained before the run (${error.message}); see other traffic below`);
  await drained("others' records to be consumed", false).catch(notDrained);
  const warmupWindow = await nextFreeWindow(kafka, sql, windowMs);
  await sendClosers(kafka, ingestUrl, `warmup-${run}`, warmupWindow);
  await drained("the warm-up windows to close").catch(notDrained);
  await pipeline.scrapePersist();
  const baseline = pipeline.persistTotals();
  const startOffsets = await snapshot(kafka);
  const cdcFrom = await cdcStart(kafka);
  // An idle partition's watermark follows the wall clock, so event time starts after now as well as after the
  // warm-up windows: a drain that took long must not make the whole run late.
  const from = Math.max(warmupWindow + 2 * windowMs, Math.ceil(Date.now() / windowMs) * windowMs + windowMs);
  say(`stages up; login event times start at ${new Date(from).toISOString()} (${profile.window.seconds} s windows)`);

  const loadStart = Date.now();
  const loginClock = () => from + (Date.now() - loadStart);
  const users = await startUserLoad({ env, run, seed, rate: profile.cdc.rate, slot: cdc.slot, signal: load.signal });
  const traffic = startLoad({ ingestUrl, run, seed, profile, ledger, loginClock, signal: load.signal });
  streams = traffic.streams;
  stopMonitor = startMonitor();
  // A request or statement that never ends would stall the run to its outer timeout without a word: say which.
  const ended = (name: string, done: Promise<unknown>) =>
    within(
      done.then(() => ""),
      LOAD_STOP_MS,
      name,
    );
  let pending: string[] = [];
  try {
    await runFaults(faults);
  } finally {
    load.abort();
    const parts = await Promise.all([ended("the HTTP load", traffic.done), ended("the user writes", users.done)]);
    pending = parts.filter(Boolean);
  }
  if (pending.length > 0) throw new Error(`${pending.join(" and ")} did not stop within ${LOAD_STOP_MS} ms`);
  say(`users written: ${userStatusLine(users.tally)}`);
  say(`load stopped; ${loadLine(streams)}`);
  if (interrupted) throw new Error("interrupted");

  // One instance of each stage again, then one login per partition after everything else closes every window.
  for (const instance of INSTANCES) if (!pipeline.live.has(instance)) await pipeline.start(instance);
  if (pipeline.live.has("enrich#2")) await pipeline.stop("enrich#2", "SIGTERM");
  const closing = Math.ceil(loginClock() / windowMs) * windowMs + 2 * windowMs;
  const closers = await sendClosers(kafka, pipeline.url("ingest"), run, closing);
  ledger.record("logins", closers.result);
  say("closing logins accepted; waiting for the pipeline to drain");
  await drained("the pipeline to drain");
  const captured = await accountCdc({
    env,
    run,
    start: cdcFrom,
    users: users.tally,
    timeoutMs: profile.drainTimeoutMs,
    say,
  });
  stopMonitor();
  say("drained; stopping the stages and counting");
  await pipeline.close();
  const totals = pipeline.persistTotals();
  ({ checks, contamination, details } = await account({
    sql,
    mongo: mongo?.db(),
    kafka,
    run,
    ledger,
    startOffsets,
    windowMs,
    range: { from, to: closing + windowMs },
    persist: {
      conflicts: totals.conflicts - baseline.conflicts,
      written: totals.written - baseline.written,
      replayed: totals.replayed - baseline.replayed,
    },
    topicTimeoutMs: profile.topicTimeoutMs,
    retriedIds: new Set(closers.retried),
    otherMembers,
  }));
  checks.push(...captured.checks);
  details.push(...captured.details);
} catch (error) {
  problems.push({ text: `run failed: ${(error as Error).message}`, fatal: true });
  say(`run failed: ${(error as Error).stack ?? error}`);
  details.push(...(await pipeline.status().catch(() => [])));
} finally {
  stopMonitor();
  load.abort();
  await pipeline.close();
  // Other sessions use both servers: whatever happened, leave them running.
  for (const problem of [await ensureBroker(kafka, logDir), await postgres?.ensure()])
    if (problem) problems.push({ text: problem, fatal: true });
  // Once PostgreSQL answers again: a slot left behind would hold the shared cluster's WAL back.
  await cdc
    .drop()
    .catch((error: Error) => problems.push({ text: `capture slot not dropped: ${error.message}`, fatal: true }));
  if (ferretdb && !(await documentStoreAnswers(env.MONGODB_URL))) await ferretdb("start");
  await mariadb?.("start");
}
const status = printSummary({
  title: `fault run ${run}, profile ${profileName}, seed ${seed}, ${((Date.now() - started) / 1000).toFixed(0)} s`,
  streams,
  ledger,
  timeline,
  starts: pipeline.starts(),
  crashes: pipeline.crashes,
  checks,
  contamination,
  problems,
  details,
  otherMembers,
  logDir,
});
await sql.end({ timeout: 2 });
await mongo?.close();
process.exit(status);
