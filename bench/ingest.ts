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
 * Exits 0 when targets are missed (it reports, it does not assert); 1 when it cannot run or a durable request
 * failed, since the numbers of such a run mean nothing.
 *
 * The durable scenarios write a few million records into locations.raw: a running enrich or persist consumes them
 * and competes for the same two cores (the "machine cpu" column shows it), so run this with the consumers stopped.
 */
import { closeSync, openSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { parseConfig } from "../shared/config.ts";
import { brokerAnswers, endOffsets, type KafkaConnection, kafkaConnection } from "../shared/kafka.ts";
import { TOPICS } from "../shared/topics.ts";
import { freePort } from "../tools/ports.ts";

const ROOT = join(import.meta.dir, "..");
const WRK_SCRIPTS = join(import.meta.dir, "wrk");
const WRK_INSTALL = "apt-get update && apt-get install -y wrk";
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const SINGLE_TARGET_RATIO = 0.5;
const NDJSON_TARGET_EVENTS = 250_000;

/** A failure with a message meant for the person running the bench; no stack trace needed. */
class BenchError extends Error {}

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
  server: Subprocess;
  url: string;
  script: string;
  connections: number;
  eventsPerRequest: number;
  /** Goes through the broker: a failed request makes the run invalid, and the topic's growth is checked. */
  durable: boolean;
  /** The target for this scenario, from its events/s and its ratio to the ceiling. */
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
}

function options() {
  const { values } = parseArgs({
    options: {
      duration: { type: "string" },
      warmup: { type: "string" },
      connections: { type: "string" },
      "ndjson-connections": { type: "string" },
      batch: { type: "string" },
      threads: { type: "string" },
      "stack-wait": { type: "string" },
    },
  });
  const pick = (flag: keyof typeof values, env: string, fallback: number, min = 1): number => {
    const raw = values[flag] ?? process.env[env];
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < min) {
      throw new BenchError(`--${flag} / ${env} must be a whole number of at least ${min}, got "${raw}"`);
    }
    return value;
  };
  return {
    duration: pick("duration", "BENCH_DURATION_S", 10),
    warmup: pick("warmup", "BENCH_WARMUP_S", 3, 0),
    connections: pick("connections", "BENCH_CONNECTIONS", 64),
    ndjsonConnections: pick("ndjson-connections", "BENCH_NDJSON_CONNECTIONS", 8),
    batch: pick("batch", "BENCH_NDJSON_EVENTS", 1000),
    threads: pick("threads", "BENCH_WRK_THREADS", 1),
    stackWait: pick("stack-wait", "BENCH_STACK_WAIT_S", 60, 0),
  };
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

/** Records in all partitions of `topic`, to check that what wrk saw answered really reached the broker. */
async function topicSize(kafka: KafkaConnection, topic: string): Promise<number> {
  const partitions = await endOffsets(kafka, topic);
  return Number(partitions.reduce((sum, { offset }) => sum + offset, 0n));
}

/** Polls `url` until it answers 2xx; fails early if the server process has already exited. */
async function waitReady(name: string, url: string, server: Subprocess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null)
      throw new BenchError(`${name} exited with code ${server.exitCode} before it was ready`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(1_000) }).then(
      (response) => response.ok,
      () => false,
    );
    if (ok) return;
    await Bun.sleep(100);
  }
  throw new BenchError(`${name} was not ready at ${url} within ${READY_TIMEOUT_MS} ms`);
}

async function stop(server: Subprocess): Promise<void> {
  if (server.exitCode !== null) return;
  server.kill("SIGTERM");
  const timer = setTimeout(() => server.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await server.exited;
  clearTimeout(timer);
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

/** CPU seconds that `pid` has used, from Linux's /proc (in USER_HZ ticks, 100 per second); NaN elsewhere. */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Busy CPU seconds of the whole machine, all cores summed: shows when wrk, the broker or others compete. */
function machineCpuSeconds(): number {
  try {
    const ticks = readFileSync("/proc/stat", "utf8").split("\n")[0]?.trim().split(/\s+/).slice(1).map(Number) ?? [];
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    return (ticks.reduce((sum, tick) => sum + tick, 0) - idle) / 100;
  } catch {
    return Number.NaN;
  }
}

const failures = (r: WrkResult): number =>
  r.errors.status + r.errors.timeout + r.errors.connect + r.errors.read + r.errors.write;

const int = (n: number): string => Math.round(n).toLocaleString("en-US");
const ms = (us: number): string => `${(us / 1000).toFixed(2)} ms`;

function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => row[col]?.length ?? 0))) ?? [];
  for (const [i, row] of rows.entries()) {
    console.log(
      row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0))).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}

async function main(): Promise<number> {
  const opts = options();
  if (!Bun.which("wrk")) {
    console.error(`wrk is not installed; install it with:\n  ${WRK_INSTALL}`);
    return 1;
  }
  const kafka = kafkaConnection(parseConfig(process.env));
  if (!(await waitForStack(kafka, opts.stackWait))) {
    console.error(
      `no broker with topic ${TOPICS.locationsRaw} at ${kafka.brokers.join(",")}; start it with: bun run stack`,
    );
    return 1;
  }

  const ingestPort = freePort();
  const noopPort = freePort();
  // Keys and rate limits are off: the bench measures the pipeline, not 401s and 429s.
  const env = { ...process.env, LOG_LEVEL: "warn", INGEST_API_KEYS: "", INGEST_RATE_LIMIT_PER_SECOND: "0" };
  // Service logs go to a file: a broker hiccup makes ingest log a stack trace per request, burying the table.
  const runId = Date.now().toString(36);
  const logPath = join(tmpdir(), `bench-ingest-${runId}.log`);
  const log = openSync(logPath, "a"); // append mode, so both servers' lines interleave instead of overwriting
  const spawn = (script: string, extra: Record<string, string>) =>
    Bun.spawn(["bun", "run", script], { cwd: ROOT, env: { ...env, ...extra }, stdout: log, stderr: log });
  const servers = [
    spawn("bench/noop.ts", { NOOP_PORT: String(noopPort) }),
    spawn("ingest.ts", { INGEST_PORT: String(ingestPort) }),
  ] as const;
  closeSync(log);
  const [noop, ingest] = servers;
  process.once("SIGINT", () => {
    for (const server of servers) server.kill("SIGTERM");
    process.exit(130);
  });

  const scenarios: Scenario[] = [
    {
      name: "ceiling: no-op POST",
      server: noop,
      url: `http://127.0.0.1:${noopPort}/v1/locations`,
      script: "location.lua",
      connections: opts.connections,
      eventsPerRequest: 1,
      durable: false,
    },
    {
      name: "single-event POST",
      server: ingest,
      url: `http://127.0.0.1:${ingestPort}/v1/locations`,
      script: "location.lua",
      connections: opts.connections,
      eventsPerRequest: 1,
      durable: true,
      target: {
        label: `>= ${SINGLE_TARGET_RATIO.toFixed(2)}x ceiling`,
        met: (_, ratio) => ratio >= SINGLE_TARGET_RATIO,
      },
    },
    {
      name: `NDJSON x${opts.batch}`,
      server: ingest,
      url: `http://127.0.0.1:${ingestPort}/v1/locations`,
      script: "ndjson.lua",
      connections: opts.ndjsonConnections,
      eventsPerRequest: opts.batch,
      durable: true,
      target: { label: `>= ${int(NDJSON_TARGET_EVENTS)} ev/s`, met: (events) => events >= NDJSON_TARGET_EVENTS },
    },
  ];

  const results: Measured[] = [];
  try {
    await waitReady("bench/noop.ts", `http://127.0.0.1:${noopPort}/readyz`, noop);
    await waitReady("ingest.ts", `http://127.0.0.1:${ingestPort}/readyz`, ingest);
    console.log(
      `bun ${Bun.version}, ${navigator.hardwareConcurrency} cores, broker ${kafka.brokers.join(",")}; ` +
        `${opts.warmup} s warm-up + ${opts.duration} s per scenario, wrk -t${opts.threads}`,
    );
    for (const scenario of scenarios) {
      console.log(`${scenario.name}: ${scenario.connections} connections ...`);
      if (opts.warmup > 0) await wrk(scenario, opts.warmup, opts.threads, `${runId}w`);
      const before = scenario.durable ? await topicSize(kafka, TOPICS.locationsRaw) : 0;
      const [server0, machine0] = [cpuSeconds(scenario.server.pid), machineCpuSeconds()];
      const result = await wrk(scenario, opts.duration, opts.threads, runId);
      const seconds = result.duration_us / 1e6;
      const serverCpu = (cpuSeconds(scenario.server.pid) - server0) / seconds;
      const machineCpu = (machineCpuSeconds() - machine0) / seconds;
      const stored = scenario.durable ? (await topicSize(kafka, TOPICS.locationsRaw)) - before : undefined;
      results.push({ scenario, result, serverCpu, machineCpu, ...(stored !== undefined && { stored }) });
    }
  } catch (error) {
    console.error(`server logs: ${logPath}`);
    throw error;
  } finally {
    await Promise.all(servers.map(stop));
  }

  const rate = (r: WrkResult) => r.requests / (r.duration_us / 1e6);
  const ceiling = rate(results[0]?.result as WrkResult);
  const cores = navigator.hardwareConcurrency;
  const header = ["scenario", "events/s", "req/s", "p50", "p99", "vs ceiling", "failed", "target", "result"];
  const rows = [[...header, "server cpu", `machine cpu/${cores}`]];
  for (const { scenario, result, serverCpu, machineCpu } of results) {
    const reqs = rate(result);
    const events = reqs * scenario.eventsPerRequest;
    const ratio = events / ceiling;
    const target = scenario.target?.label ?? "-";
    const verdict = scenario.target ? (scenario.target.met(events, ratio) ? "pass" : "MISS") : "-";
    const row = [scenario.name, int(events), int(reqs), ms(result.p50_us), ms(result.p99_us), `${ratio.toFixed(2)}x`];
    rows.push([...row, int(failures(result)), target, verdict, serverCpu.toFixed(2), machineCpu.toFixed(2)]);
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
  const logged = readFileSync(logPath, "utf8").split("\n").filter(Boolean).length;
  if (logged > 0) console.log(`the servers logged ${logged} line(s) at warn or above: ${logPath}`);
  const failed = results.filter(({ scenario }) => scenario.durable).reduce((n, { result }) => n + failures(result), 0);
  if (failed > 0) {
    for (const { scenario, result } of results)
      console.error(`${scenario.name}: errors ${JSON.stringify(result.errors)}`);
    console.error(`INVALID RUN: ${failed} durable request(s) failed (non-2xx or socket errors)`);
    return 1;
  }
  return 0;
}

process.exit(
  await main().catch((error: unknown) => {
    console.error(error instanceof BenchError ? error.message : error);
    return 1;
  }),
);
