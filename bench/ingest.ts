/**
 * `bun run bench:ingest`: throughput and latency of durable ingest, against the no-op Bun + Hono ceiling measured
 * in the same run (absolute numbers drift between runs and machines; the ratio is what the targets are about).
 *
 * Scenarios, each a warm-up and then a fixed-duration wrk run:
 * 1. ceiling: single-event POSTs to bench/noop.ts (parses the JSON body, answers 202);
 * 2. single: single-event POSTs to `bun run ingest.ts`, each with its own user_id, acked by the real broker;
 * 3. ndjson: NDJSON POSTs of 1,000 events each to ingest.
 *
 * Needs wrk (Debian package) and the local stack (`bun run stack`). Options, as flags or environment:
 *   --duration / BENCH_DURATION_S (10)            --warmup / BENCH_WARMUP_S (3)
 *   --connections / BENCH_CONNECTIONS (64)        --ndjson-connections / BENCH_NDJSON_CONNECTIONS (8)
 *   --batch / BENCH_NDJSON_EVENTS (1000)          --threads / BENCH_WRK_THREADS (1)
 *   --stack-wait / BENCH_STACK_WAIT_S (60): how long to wait for the broker and topics
 * ingest.ts alone also gets BENCH_STAGE_FLAGS and BENCH_STAGE_ENV, as in bench:enrich.
 * Exits 0 when targets are missed (it reports, it does not assert); 1 when it cannot run or a durable request
 * failed, since the numbers of such a run mean nothing.
 *
 * The durable scenarios write a few million records into locations.raw of a Kafka namespace of the run's own
 * (topics and groups `bench-ingest-<run>.*`, deleted at the end), so no consumer of the pipeline reads them; any
 * other load on the two cores still shows in the "machine cpu" column.
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { parseConfig } from "../shared/config.ts";
import { fetchText } from "../shared/deadline.ts";
import { brokerAnswers, endOffsets, type KafkaConnection, kafkaConnection } from "../shared/kafka.ts";
import { TOPICS } from "../shared/topics.ts";
import { inNamespace, type ProcessHandle, startStage } from "../tools/harness.ts";
import { pollEvery } from "../tools/poll.ts";
import { freePort } from "../tools/ports.ts";
import { BenchError, int, mib, numberOptions, printTable, runBench } from "./cli.ts";
import { cpuSecondsOf, machineCpu, memoryOf, processTree, stageLog, stageTweaks, topicSize } from "./stages.ts";

const NOOP_SCRIPT = join(import.meta.dir, "noop.ts");
const WRK_SCRIPTS = join(import.meta.dir, "wrk");
const WRK_INSTALL = "apt-get update && apt-get install -y wrk";
const NOOP_TIMEOUT_MS = 30_000;
const SINGLE_TARGET_RATIO = 0.5;
const NDJSON_TARGET_EVENTS = 400_000;

/** CPU seconds of a server and its worker processes (INGEST_PROCESSES above 1), so far. */
const treeCpuSeconds = (pid: number) => processTree(pid).reduce((sum, p) => sum + cpuSecondsOf(p), 0);

/** The largest peak VmHWM and RssAnon among a server's processes: the figure a per-process limit is about. */
function treeMemory(pid: number): { peak: number; anon: number } {
  const all = processTree(pid).map(memoryOf);
  return { peak: Math.max(...all.map((m) => m.peak)), anon: Math.max(...all.map((m) => m.anon)) };
}

/** What wrk's done() in bench/wrk/report.lua prints. */
interface WrkResult {
  requests: number;
  duration_us: number;
  p50_us: number;
  p99_us: number;
  errors: { connect: number; read: number; write: number; status: number; timeout: number };
}

interface Scenario {
  name: string;
  /** The process that serves `url`, whose CPU is measured. */
  pid: number;
  url: string;
  script: string;
  connections: number;
  eventsPerRequest: number;
  /** Goes through the broker: a failed request makes the run invalid, and the topic's growth is checked. */
  durable: boolean;
  /** The target of this scenario, from its events/s and its ratio to the ceiling. */
  target?: { label: string; met: (eventsPerSecond: number, ratio: number) => boolean };
}

interface Measured {
  scenario: Scenario;
  result: WrkResult;
  /** Cores used during the measured run, by the scenario's server and by the whole machine. */
  serverCpu: number;
  machineCpu: number;
  /** Records the raw topic gained during a durable run. */
  stored?: number;
  /** The server's peak VmRSS so far and its RssAnon at the end of the run, in bytes (its largest process's). */
  memory: { peak: number; anon: number };
}

function options() {
  return numberOptions({
    duration: { env: "BENCH_DURATION_S", fallback: 10, min: 1 },
    warmup: { env: "BENCH_WARMUP_S", fallback: 3 },
    connections: { env: "BENCH_CONNECTIONS", fallback: 64, min: 1 },
    "ndjson-connections": { env: "BENCH_NDJSON_CONNECTIONS", fallback: 8, min: 1 },
    batch: { env: "BENCH_NDJSON_EVENTS", fallback: 1000, min: 1 },
    threads: { env: "BENCH_WRK_THREADS", fallback: 1, min: 1 },
    "stack-wait": { env: "BENCH_STACK_WAIT_S", fallback: 60 },
  });
}

/** Resolves once the broker answers and the raw topic exists, polling until `seconds` have passed. */
async function waitForStack(kafka: KafkaConnection, seconds: number): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const ready =
      (await brokerAnswers(kafka, 3_000)) &&
      (await endOffsets(kafka, TOPICS.locationsRaw).then(
        (partitions) => partitions.length > 0,
        () => false,
      ));
    if (ready || Date.now() >= deadline) return ready;
    await Bun.sleep(Math.min(5_000, deadline - Date.now()));
  }
}

/** The no-op server: not a stage, so a plain process; `url` is its POST route. */
interface Noop {
  child: Subprocess;
  url: string;
}

/** Spawns the no-op server and resolves once it answers `/readyz`. */
async function startNoop(log: string): Promise<Noop> {
  const port = freePort();
  const fd = openSync(log, "a");
  const child = Bun.spawn(["bun", "run", NOOP_SCRIPT], {
    env: { ...process.env, NOOP_PORT: String(port) },
    stdout: fd,
    stderr: fd,
  });
  closeSync(fd); // the child has its own copy
  // Prepended: the harness's own handlers exit at once, after stopping only the stages.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.prependOnceListener(signal, () => child.kill("SIGTERM"));
  const noop = { child, url: `http://127.0.0.1:${port}/v1/locations` };
  try {
    await pollEvery(
      `bench/noop.ts to answer on port ${port}`,
      async () => {
        if (child.exitCode !== null) throw new BenchError(`bench/noop.ts exited with code ${child.exitCode}`);
        return fetchText(`http://127.0.0.1:${port}/readyz`, {}, 1_000).then(
          ({ response }) => response.ok || undefined,
          () => undefined,
        );
      },
      NOOP_TIMEOUT_MS,
      100,
    );
  } catch (error) {
    await stopNoop(noop);
    throw error;
  }
  return noop;
}

async function stopNoop({ child }: Noop): Promise<void> {
  child.kill("SIGTERM");
  await child.exited;
}

async function wrk(scenario: Scenario, seconds: number, threads: number, runId: string): Promise<WrkResult> {
  const args = [
    ...["-t", String(Math.min(threads, scenario.connections)), "-c", String(scenario.connections)],
    ...["-d", `${seconds}s`, "-s", join(WRK_SCRIPTS, scenario.script)],
    // Above ingest's 5 s ack deadline, so a slow broker shows up as a counted 503, not a wrk timeout.
    ...["--timeout", "10s"],
    ...[scenario.url, "--", runId, String(scenario.eventsPerRequest)],
  ];
  const run = Bun.spawn(["wrk", ...args], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([
    new Response(run.stdout).text(),
    new Response(run.stderr).text(),
    run.exited,
  ]);
  const line = stdout.split("\n").find((l) => l.startsWith("WRK_JSON "));
  if (code !== 0 || !line) throw new BenchError(`wrk ${args.join(" ")} failed (exit ${code}):\n${stdout}${stderr}`);
  return JSON.parse(line.slice("WRK_JSON ".length)) as WrkResult;
}

const failures = (r: WrkResult): number =>
  r.errors.status + r.errors.timeout + r.errors.connect + r.errors.read + r.errors.write;

const ms = (us: number): string => `${(us / 1000).toFixed(2)} ms`;

type Options = ReturnType<typeof options>;

/** The three scenarios: the no-op ceiling, then ingest with single events and with NDJSON batches. */
function scenarios(opts: Options, noop: Noop, ingest: ProcessHandle): Scenario[] {
  const single = { script: "location.lua", connections: opts.connections, eventsPerRequest: 1 };
  return [
    { name: "ceiling: no-op POST", pid: noop.child.pid, url: noop.url, ...single, durable: false },
    {
      name: "single-event POST",
      pid: ingest.child.pid,
      url: `${ingest.url}/v1/locations`,
      ...single,
      durable: true,
      target: {
        label: `>= ${SINGLE_TARGET_RATIO.toFixed(2)}x ceiling`,
        met: (_, ratio) => ratio >= SINGLE_TARGET_RATIO,
      },
    },
    {
      name: `NDJSON x${opts.batch}`,
      pid: ingest.child.pid,
      url: `${ingest.url}/v1/locations`,
      script: "ndjson.lua",
      connections: opts["ndjson-connections"],
      eventsPerRequest: opts.batch,
      durable: true,
      target: { label: `>= ${int(NDJSON_TARGET_EVENTS)} ev/s`, met: (events) => events >= NDJSON_TARGET_EVENTS },
    },
  ];
}

/** Runs each scenario, a warm-up and then the measured wrk run, with the CPU its server and the machine used. */
async function measure(opts: Options, kafka: KafkaConnection, runId: string, list: Scenario[]): Promise<Measured[]> {
  console.log(
    `bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, broker ${kafka.brokers.join(",")}; ` +
      `${opts.warmup} s warm-up + ${opts.duration} s per scenario, wrk -t${opts.threads}`,
  );
  const results: Measured[] = [];
  for (const scenario of list) {
    console.log(`${scenario.name}: ${scenario.connections} connections ...`);
    if (opts.warmup > 0) await wrk(scenario, opts.warmup, opts.threads, `${runId}w`);
    const before = scenario.durable ? await topicSize(kafka, TOPICS.locationsRaw) : 0;
    const [server0, machine0] = [treeCpuSeconds(scenario.pid), machineCpu().busy];
    const result = await wrk(scenario, opts.duration, opts.threads, runId);
    const seconds = result.duration_us / 1e6;
    const serverCpu = (treeCpuSeconds(scenario.pid) - server0) / seconds;
    const machineCores = (machineCpu().busy - machine0) / seconds;
    const stored = scenario.durable ? (await topicSize(kafka, TOPICS.locationsRaw)) - before : undefined;
    const memory = treeMemory(scenario.pid);
    results.push({
      scenario,
      result,
      serverCpu,
      machineCpu: machineCores,
      memory,
      ...(stored !== undefined && { stored }),
    });
  }
  return results;
}

async function main(): Promise<number> {
  const opts = options();
  if (!Bun.which("wrk")) throw new BenchError(`wrk is not installed; install it with:\n  ${WRK_INSTALL}`);
  const kafka = kafkaConnection(parseConfig(process.env));
  if (!(await waitForStack(kafka, opts["stack-wait"]))) {
    throw new BenchError(
      `no broker with topic ${TOPICS.locationsRaw} at ${kafka.brokers.join(",")}; start it with: bun run stack`,
    );
  }

  const runId = Date.now().toString(36);
  const tweaks = stageTweaks();
  const processes = tweaks.env.INGEST_PROCESSES ?? process.env.INGEST_PROCESSES ?? "1";
  console.log(`ingest processes: ${processes} (INGEST_PROCESSES; server cpu counts all of them)`);
  // Service logs go to a file: a broker hiccup makes ingest log a stack trace per request, burying the table.
  const log = stageLog("ingest", runId);
  const results = await log.around(() =>
    inNamespace(`bench-ingest-${runId}`, async (kafka) => {
      let noop: Noop | undefined;
      let ingest: ProcessHandle | undefined;
      try {
        noop = await startNoop(log.path);
        ingest = await startStage("ingest", {
          mode: "process",
          waitReady: true,
          output: log.path,
          flags: tweaks.flags,
          // Keys and rate limits are off: the bench measures the pipeline, not 401s and 429s.
          env: { INGEST_API_KEYS: "", INGEST_RATE_LIMIT_PER_SECOND: "0", ...tweaks.env },
        });
        return await measure(opts, kafka, runId, scenarios(opts, noop, ingest));
      } finally {
        await Promise.all([ingest?.stop(), noop && stopNoop(noop)]);
      }
    }),
  );

  const rate = (r: WrkResult) => r.requests / (r.duration_us / 1e6);
  const ceiling = rate(results[0]?.result as WrkResult);
  const cores = navigator.hardwareConcurrency;
  const header = ["scenario", "events/s", "req/s", "p50", "p99", "vs ceiling", "failed", "target", "result"];
  const rows = [[...header, "server cpu", `machine cpu/${cores}`, "server VmHWM (RssAnon)"]];
  for (const { scenario, result, serverCpu, machineCpu, memory } of results) {
    const reqs = rate(result);
    const events = reqs * scenario.eventsPerRequest;
    const ratio = events / ceiling;
    const target = scenario.target?.label ?? "-";
    const verdict = scenario.target ? (scenario.target.met(events, ratio) ? "pass" : "MISS") : "-";
    const row = [scenario.name, int(events), int(reqs), ms(result.p50_us), ms(result.p99_us), `${ratio.toFixed(2)}x`];
    const usage = [serverCpu.toFixed(2), machineCpu.toFixed(2), `${mib(memory.peak)} (${mib(memory.anon)})`];
    rows.push([...row, int(failures(result)), target, verdict, ...usage]);
  }
  console.log();
  printTable(rows);
  console.log(
    `cpu in cores: a server near 1.00 is bound by its one JS thread; the machine near ${cores} means wrk, the ` +
      "broker and any other load compete for it (numbers are only comparable within one run)",
  );
  console.log();

  for (const { scenario, result, stored } of results) {
    if (stored === undefined) continue;
    // In-flight requests of the warm-up and of the run's last moment make this approximate, never much lower.
    const answered = (result.requests - failures(result)) * scenario.eventsPerRequest;
    console.log(
      `${scenario.name}: ${TOPICS.locationsRaw} grew by ${int(stored)} records; wrk saw ${int(answered)} accepted`,
    );
  }
  log.report();
  const failed = results.filter(({ scenario }) => scenario.durable).reduce((n, { result }) => n + failures(result), 0);
  if (failed > 0) {
    for (const { scenario, result } of results)
      console.error(`${scenario.name}: errors ${JSON.stringify(result.errors)}`);
    console.error(`INVALID RUN: ${failed} durable request(s) failed (non-2xx or socket errors)`);
    return 1;
  }
  return 0;
}

await runBench(main);
