/**
 * `bun run bench:e2e`: the end-to-end load report. Every stage runs as its own process on the local
 * stack; seeded traffic is offered at fixed rates (1k and 5k events/s by default) and at the highest rate this
 * machine sustains (searched for); for each step the report gives the latency from the HTTP 202 to the row's
 * persisted_at (p50/p95/p99), the events/s each stage took in, and each service's resident memory.
 * Writes bench/results/<date>.md and <date>.png (latency against rate, throughput per stage). The stages run in a
 * Kafka namespace of the run's own (topics and groups `bench-<run>.*`, deleted at the end).
 *
 * Everything synchronises by polling with a deadline; only the pacing of the offered rate uses timers.
 * Exits 0 when goals are missed (it reports, it does not assert); 1 when it cannot run.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createDb } from "../persist/postgres/db.ts";
import { config } from "../shared/config.ts";
import { brokerAnswers, kafkaConnection } from "../shared/kafka.ts";
import { enterNamespace, leaveNamespace, type ProcessHandle } from "../tools/harness.ts";
import { pollEvery } from "../tools/poll.ts";
import { renderChart } from "./e2e/chart.ts";
import { foreignProcesses, GROUPS, lookForForeign } from "./e2e/foreign.ts";
import { createGroupWatcher } from "./e2e/groups.ts";
import { deleteRows } from "./e2e/latency.ts";
import { type Options, parseOptions, USAGE } from "./e2e/options.ts";
import { PIPELINE, startPipeline, stopPipeline } from "./e2e/pipeline.ts";
import { resultsJson, type Startup, writeReport } from "./e2e/report.ts";
import { infraSources, type PidSource, residentMemory } from "./e2e/resources.ts";
import { searchMaxRate, verdict } from "./e2e/search.ts";
import { pipelineLag, runStep, type StepResult, waitDrained } from "./e2e/step.ts";
import { memoryOf, stageLog, stageTweaks } from "./stages.ts";

const WARMUP = { rate: 1_000, durationMs: 5_000 };
/** The search never offers more than this (single-event POSTs on a laptop-class machine top out far below). */
const SEARCH_CAP = 100_000;
/** Full-length attempts at the searched rate (each a tenth lower than the last) before reporting the last. */
const MAX_TRIES = 3;
const STACK_HINT = "start the local stack first: bun run stack (Kafka on KAFKA_BROKERS, PostgreSQL on DATABASE_URL)";

const log = (line: string) => console.log(`${new Date().toISOString().slice(11, 19)} ${line}`);

let options: Options;
try {
  const parsed = parseOptions();
  if (parsed === "help") {
    console.log(USAGE);
    process.exit(0);
  }
  options = parsed;
} catch (error) {
  console.error(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
  process.exit(2);
}

const env = config();
const broker = kafkaConnection(env);
const sql = createDb(env, 2);
/** Both servers answer: the broker a metadata request, PostgreSQL a query. */
const stackUp = async () =>
  (await brokerAnswers(broker, 5_000)) &&
  (await sql`select 1`.then(
    () => true,
    () => false,
  ));
// A fault run stops and restarts the servers: wait for it (below) rather than fail; with nothing else running,
// a server that does not answer is simply not started.
if (!(await stackUp()) && foreignProcesses([]).length === 0) {
  console.error(`Kafka (${broker.brokers.join(",")}) or PostgreSQL (DATABASE_URL) does not answer: ${STACK_HINT}`);
  await sql.end({ timeout: 1 });
  process.exit(1);
}

const startedAt = new Date();
const runId = `e2e${startedAt.getTime().toString(36)}`;
await pollEvery("Kafka and PostgreSQL to answer", async () => ((await stackUp()) ? true : undefined), 120_000, 1_000);
const kafka = await enterNamespace(`bench-${runId}`);
const watcher = createGroupWatcher(kafka);
const logs = stageLog("e2e", runId);
const interference: string[] = [];
let stages: ProcessHandle[] = [];
const steps: { label: string; step: StepResult }[] = [];
const probes: StepResult[] = [];
/** Memory before any work and after draining, and the backlog that had to be drained. */
const startup: Startup = { ready: new Map(), drained: new Map(), backlog: { enrich: 0, persist: 0 } };
/** Every step run, warm-up included: their rows are deleted at the end. */
const all: StepResult[] = [];
let stepNumber = 0;

/**
 * Waits (polling) until no other pipeline work runs and nobody but our stages consumes in the pipeline's
 * groups. With --ignore-foreign it still waits for the groups: our stages would take partitions from another
 * run's members, spoiling both runs.
 */
async function waitForQuiet(): Promise<void> {
  const ours = stages.map((s) => s.child.pid);
  const perGroup = stages.length > 0 ? 1 : 0;
  const look = async () => {
    const seen = await lookForForeign(watcher, ours, perGroup);
    return options.ignoreForeign ? seen.filter((line) => line.startsWith("group ")) : seen;
  };
  const seen = await look();
  if (seen.length > 0) {
    log(`other pipeline work is running; waiting up to ${options.foreignWaitMs / 1000} s for it to end:`);
    for (const line of seen) log(`  ${line}`);
    await pollEvery(
      "other pipeline work to end",
      async () => ((await look()).length === 0 ? true : undefined),
      options.foreignWaitMs,
      5_000,
    );
    log("quiet now");
  }
  if (stages.length === 0) {
    const ignored = await lookForForeign(watcher, ours, perGroup);
    interference.push(...ignored.map((line) => `before the run (ignored): ${line}`));
  }
}

/** Steps disturbed by other work are run again after it has ended, at most this many times in all. */
const ATTEMPTS = 3;

/**
 * One step at `rate` for `durationMs`, logged as it ends. A step during which other pipeline work ran is
 * repeated once that work has ended (unless --ignore-foreign); what was seen goes into the report either way.
 */
async function step(
  rate: number,
  durationMs: number,
  sources: Map<string, PidSource>,
  name = `${rate} ev/s`,
): Promise<StepResult> {
  for (let attempt = 1; ; attempt++) {
    const result = await stepOnce(rate, durationMs, sources, name);
    if (result.interference.length === 0 || options.ignoreForeign || attempt >= ATTEMPTS) return result;
    log(`  ${name}: disturbed by other work, running it again once that has ended (attempt ${attempt + 1})`);
    interference.push(`${name} (step ${stepNumber}): repeated once the other work had ended`);
    await waitForQuiet();
  }
}

async function stepOnce(
  rate: number,
  durationMs: number,
  sources: Map<string, PidSource>,
  name: string,
): Promise<StepResult> {
  stepNumber++;
  const result = await runStep(
    {
      rate,
      durationMs,
      batch: options.batch,
      loginShare: options.loginShare,
      tag: `bench-${runId}-s${stepNumber}`,
      seed: options.seed,
      drainTimeoutMs: options.drainTimeoutMs,
    },
    { stages, watcher, sql, sources, kafka },
  );
  all.push(result);
  const { endToEnd } = result.latency.locations;
  const held = verdict(result);
  log(
    `${name} for ${durationMs / 1000} s: p50 ${endToEnd.p50.toFixed(1)} ms, p95 ${endToEnd.p95.toFixed(1)} ms, ` +
      `p99 ${endToEnd.p99.toFixed(1)} ms; ingest ${Math.round(result.stageRates.ingest)} ev/s; ` +
      `${held.ok ? "kept up" : `did not keep up: ${held.reasons.join("; ")}`}`,
  );
  for (const line of result.interference) log(`  interference: ${line}`);
  interference.push(...result.interference.map((l) => `${name} (step ${stepNumber}): ${l}`));
  return result;
}

try {
  await waitForQuiet();
  log(`starting ${PIPELINE.join(", ")} (stage logs: ${logs.path})`);
  stages = await startPipeline(logs.path, stageTweaks());
  const sources = new Map<string, PidSource>([
    ...stages.map((s) => [s.name, () => [s.child.pid]] as [string, PidSource]),
    ["bench client", () => [process.pid]],
    ...infraSources(),
  ]);
  await pollEvery(
    "each group to have our member",
    async () => {
      const members = await watcher.members(GROUPS);
      return GROUPS.every((g) => (members.get(g)?.length ?? 0) >= 1) ? true : undefined;
    },
    60_000,
    250,
  );
  startup.ready = residentMemory(stages);
  startup.backlog = await pipelineLag(watcher);
  log(`draining what was there before (enrich ${startup.backlog.enrich}, persist ${startup.backlog.persist} behind)`);
  await waitDrained(watcher, options.drainTimeoutMs);
  startup.drained = residentMemory(stages);

  log(`warm-up: ${WARMUP.rate} ev/s for ${WARMUP.durationMs / 1000} s`);
  await step(WARMUP.rate, WARMUP.durationMs, sources, "warm-up");

  for (const rate of options.rates)
    steps.push({ label: `${rate / 1000}k`, step: await step(rate, options.durationMs, sources) });

  let max: number | undefined = typeof options.max === "number" ? options.max : undefined;
  if (options.max === "auto") {
    const held = steps.filter(({ step }) => verdict(step).ok).map(({ step }) => step.options.rate);
    const start = held.length > 0 ? Math.max(...held) * 1.5 : Math.min(...options.rates);
    log(`searching for the highest sustainable rate from ${start} ev/s (${options.probeMs / 1000} s probes)`);
    max = await searchMaxRate(start, SEARCH_CAP, async (rate) => {
      const probe = await step(rate, options.probeMs, sources);
      probes.push(probe);
      return verdict(probe).ok;
    });
    if (max === undefined) log("no probed rate was sustainable");
    else if (held.length > 0 && max < Math.max(...held)) max = Math.max(...held);
  }
  // A 10 s probe can hold where the full-length step does not (the search sits right at the edge): step down by a
  // tenth until the full step holds too, a few times at most, and report the last one either way.
  for (let tries = 1; max !== undefined; tries++) {
    const result = await step(max, options.durationMs, sources);
    if (verdict(result).ok || tries >= MAX_TRIES || options.max !== "auto") {
      steps.push({ label: "max", step: result });
      break;
    }
    probes.push(result);
    max = Math.round((max * 0.9) / 250) * 250;
    log(`  did not hold for ${options.durationMs / 1000} s: trying ${max} ev/s`);
  }

  mkdirSync(options.out, { recursive: true });
  const date = startedAt.toISOString().slice(0, 10);
  const shape = options.batch === 1 ? "single-event POSTs" : `NDJSON POSTs of ${options.batch}`;
  const subtitle =
    `${navigator.hardwareConcurrency} cores · ${shape} · ${Math.round(options.loginShare * 100)}% logins · ` +
    `${options.durationMs / 1000} s per step · run ${runId}`;
  // VmHWM: the high-water mark since each stage started, the draining of an earlier backlog included.
  const lifetimePeaks = new Map(stages.map((s) => [s.name, memoryOf(s.child.pid).peak]));
  const chart = await renderChart(steps, join(options.out, date), subtitle);
  const report = await writeReport({
    path: join(options.out, `${date}.md`),
    chart,
    options,
    steps,
    probes,
    interference,
    runId,
    command: ["bun run bench:e2e", ...process.argv.slice(2)].join(" "),
    stageEnv: [process.env.BENCH_STAGE_ENV, process.env.BENCH_STAGE_FLAGS].filter(Boolean).join(" "),
    sql,
    startedAt,
    lifetimePeaks,
    startup,
  });
  await Bun.write(join(options.out, `${date}.json`), resultsJson({ options, steps, probes, runId, startedAt }));
  log(`report: ${report}`);
  log(chart.png ? `chart: ${chart.png}` : chart.note);
} finally {
  await stopPipeline(stages);
  if (!options.keepRows) {
    let deleted = 0;
    for (const step of all)
      for (const table of ["locations", "logins"] as const)
        deleted += await deleteRows(sql, table, [...step.load.acked[table].keys()]).catch(() => 0);
    if (deleted > 0) log(`deleted the bench's ${deleted} rows (--keep-rows keeps them)`);
  }
  await watcher.close();
  await leaveNamespace(kafka);
  // What persist stored for its group of the run's namespace.
  await sql`delete from consumer_offsets where group_id like ${`${kafka.namespace}.%`}`.catch(() => {});
  await sql.end({ timeout: 5 });
  logs.report();
}
