/**
 * Helpers that bench/enrich.ts and bench/persist.ts share: realistic events, running a consumer stage as its own
 * process, draining its group, and timing it by its group's committed offsets while it works through a known
 * backlog.
 *
 * Every wait polls with a deadline; nothing synchronises on a fixed sleep.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import type { Sql } from "../persist/postgres/db.ts";
import {
  committedOffsets,
  createProducer,
  type Delivery,
  endOffsets,
  groupLag,
  type KafkaConnection,
  type OutRecord,
} from "../shared/kafka.ts";
import type { RawLocation } from "../shared/schemas.ts";
import { mulberry32 } from "../tools/generators.ts";
import { pollEvery } from "../tools/poll.ts";
import { freePort } from "../tools/ports.ts";

/** The repository root, where the stage scripts live. */
export const ROOT = join(import.meta.dir, "..");

/** Every user id of a bench event starts with this, so the rows the benches leave behind can be found. */
export const BENCH_USER_PREFIX = "bench-";

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
/** Short enough to time a 2 s window to a few percent; each poll is one offset fetch from the broker. */
const POLL_MS = 50;

/** Extra `bun run` flags and environment for the measured stage only (drains run the stage as it is). */
export interface StageTweaks {
  flags: string[];
  env: Record<string, string>;
}

/**
 * The measured stage's tweaks: BENCH_STAGE_FLAGS, space-separated `bun run` flags (e.g. "--cpu-prof-md
 * --cpu-prof-dir=/tmp/prof" profiles the very run that is timed), and BENCH_STAGE_ENV, space-separated
 * NAME=value pairs (e.g. "BUN_JSC_forceRAMSize=150000000" to see how RSS responds to a tighter GC).
 */
export function stageTweaks(): StageTweaks {
  const words = (name: string) => (process.env[name] ?? "").split(" ").filter(Boolean);
  const env: Record<string, string> = {};
  for (const pair of words("BENCH_STAGE_ENV")) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new Error(`BENCH_STAGE_ENV: "${pair}" is not NAME=value`);
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return { flags: words("BENCH_STAGE_FLAGS"), env };
}

/** Command-line flags, each also readable from the environment, with a fallback. */
export function numberOptions<K extends string>(spec: Record<K, { env: string; fallback: number }>) {
  const { values } = parseArgs({
    options: Object.fromEntries(Object.keys(spec).map((flag) => [flag, { type: "string" as const }])),
  });
  const result = {} as Record<K, number>;
  for (const flag of Object.keys(spec) as K[]) {
    const { env, fallback } = spec[flag];
    const raw = (values as Record<string, string | undefined>)[flag] ?? process.env[env];
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isFinite(value) || value < 0) throw new Error(`--${flag} / ${env} must be a number, got "${raw}"`);
    result[flag] = value;
  }
  return result;
}

/** A seeded PRNG, so every run of a bench sees the same points. */
export const seededRandom = mulberry32;

/** Where users are: [lat, long] of large cities on every continent, many of them near timezone borders. */
const CITIES: [number, number][] = [
  [40.71, -74.01], // New York
  [41.88, -87.63], // Chicago
  [34.05, -118.24], // Los Angeles
  [19.43, -99.13], // Mexico City
  [-23.55, -46.63], // São Paulo
  [-34.6, -58.38], // Buenos Aires
  [4.71, -74.07], // Bogotá
  [51.51, -0.13], // London
  [48.86, 2.35], // Paris
  [52.52, 13.4], // Berlin
  [41.9, 12.5], // Rome
  [50.45, 30.52], // Kyiv
  [55.76, 37.62], // Moscow
  [41.01, 28.98], // Istanbul
  [30.04, 31.24], // Cairo
  [6.52, 3.38], // Lagos
  [-1.29, 36.82], // Nairobi
  [-26.2, 28.05], // Johannesburg
  [25.2, 55.27], // Dubai
  [28.61, 77.21], // Delhi
  [19.08, 72.88], // Mumbai
  [23.81, 90.41], // Dhaka
  [13.76, 100.5], // Bangkok
  [1.35, 103.82], // Singapore
  [-6.21, 106.85], // Jakarta
  [31.23, 121.47], // Shanghai
  [39.9, 116.4], // Beijing
  [37.57, 126.98], // Seoul
  [35.68, 139.69], // Tokyo
  [14.6, 120.98], // Manila
  [-33.87, 151.21], // Sydney
  [-36.85, 174.76], // Auckland
];

/** Share of points anywhere on Earth (mostly sea, the rest sparse land); the others are near a city. */
const UNIFORM_SHARE = 0.3;
/** Spread around a city, in degrees: a few hundred km, so points cross into neighbouring zones and the sea. */
const CITY_SPREAD_DEG = 1.5;

/** `count` realistic [lat, long] points: 70% scattered around big cities, 30% uniform over the sphere. */
export function randomPoints(count: number, seed = 1970): [number, number][] {
  const random = seededRandom(seed);
  const gaussian = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const clamp = (value: number, limit: number) => Math.max(-limit, Math.min(limit, value));
  const points: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    if (random() < UNIFORM_SHARE) {
      // Uniform over the sphere's area, not over the lat/long rectangle, which would crowd the poles.
      points.push([(Math.asin(2 * random() - 1) * 180) / Math.PI, random() * 360 - 180]);
    } else {
      const [lat, long] = CITIES[Math.floor(random() * CITIES.length)] as [number, number];
      points.push([clamp(lat + gaussian() * CITY_SPREAD_DEG, 90), clamp(long + gaussian() * CITY_SPREAD_DEG, 180)]);
    }
  }
  return points;
}

/** Users a bench run's events belong to; each sends many events, as phones reporting their position do. */
const USERS = 20_000;
/** Event times spread over two years, so both sides of every DST change occur. */
const TIME_FROM = Date.UTC(2024, 0, 1);
const TIME_SPAN_MS = 2 * 365 * 86_400_000;

/**
 * `points` as the RawLocation events ingest would put on `locations.raw`: a time-ordered UUID event_id, as
 * ingest assigns, ISO UTC timestamps, and ingested_at a few seconds after the event. User ids carry `runId`, so
 * a run never inserts next to the (deleted, maybe not yet vacuumed) index entries of an earlier one.
 */
export function rawLocations(points: [number, number][], runId: string, seed = 1970): RawLocation[] {
  const random = seededRandom(seed + 1);
  return points.map(([lat, long]) => {
    const time = TIME_FROM + Math.floor(random() * TIME_SPAN_MS);
    return {
      event_id: Bun.randomUUIDv7(),
      user_id: `${BENCH_USER_PREFIX}${runId}-user-${Math.floor(random() * USERS)}`,
      timestamp: new Date(time).toISOString(),
      lat,
      long,
      ingested_at: new Date(time + Math.floor(random() * 5_000)).toISOString(),
    };
  });
}

/**
 * Deletes every bench row from `locations` (rows of other runs too, e.g. an enrich bench's events that a persist
 * drain wrote) and vacuums, so runs neither grow the table nor leave dead index entries behind for the next one.
 */
export async function deleteBenchRows(sql: Sql): Promise<number> {
  const { count } = await sql`delete from locations where user_id like ${`${BENCH_USER_PREFIX}%`}`;
  if (count > 0) await sql`vacuum (analyze) locations`;
  return count;
}

/** Runs `work` over `items` in a tight loop; returns items per second. */
export function loopRate<T>(items: T[], work: (item: T) => unknown): number {
  let sink = 0;
  const start = Bun.nanoseconds();
  for (const item of items) if (work(item)) sink++;
  const seconds = (Bun.nanoseconds() - start) / 1e9;
  if (sink < 0) console.log(sink); // keeps the loop's results alive
  return items.length / seconds;
}

/** The highest of `passes` results of `measure` (a rate: noise from other work only ever lowers it). */
export function bestOf(measure: () => number, passes = 3): number {
  let best = 0;
  for (let i = 0; i < passes; i++) best = Math.max(best, measure());
  return best;
}

/** {@link bestOf} for a measurement that has to wait for I/O; the passes run one after the other. */
export async function bestOfAsync(measure: () => Promise<number>, passes = 3): Promise<number> {
  let best = 0;
  for (let i = 0; i < passes; i++) best = Math.max(best, await measure());
  return best;
}

/** Produces `records` with the pipeline's own producer; returns where each went and the records per second. */
export async function produceAll(
  kafka: KafkaConnection,
  records: OutRecord[],
): Promise<{ rate: number; deliveries: Delivery[] }> {
  const producer = createProducer({ kafka, clientId: "bench", timeoutMs: 30_000 });
  const start = performance.now();
  try {
    const deliveries = await producer.send(records);
    return { rate: records.length / ((performance.now() - start) / 1000), deliveries };
  } finally {
    await producer.close();
  }
}

/** Records `groupId` has not committed, over `topic` and every other topic it has committed offsets for. */
async function backlogOf(kafka: KafkaConnection, groupId: string, topic: string): Promise<number> {
  const topics = new Set([topic, ...(await committedOffsets(kafka, groupId)).map((p) => p.topic)]);
  return groupLag(kafka, groupId, [...topics]);
}

/** Records in all partitions of `topic`. */
export async function topicSize(kafka: KafkaConnection, topic: string): Promise<number> {
  const partitions = await endOffsets(kafka, topic);
  return Number(partitions.reduce((sum, { offset }) => sum + offset, 0n));
}

/** Peak and current resident memory of a process, in bytes, from /proc (Linux only; 0 elsewhere). */
export function memoryOf(pid: number): { peak: number; current: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
    return { peak: kb("VmHWM"), current: kb("VmRSS") };
  } catch {
    return { peak: 0, current: 0 };
  }
}

/** Clock ticks per second of /proc's CPU times (USER_HZ): 100 on every mainstream Linux build. */
const USER_HZ = 100;

/** CPU seconds (user + system) a process has used so far, from /proc (Linux only; 0 elsewhere). */
export function cpuSecondsOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name in parentheses may hold spaces: count fields from after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / USER_HZ;
  } catch {
    return 0;
  }
}

/** Busy and total CPU seconds of the whole machine, all cores together (Linux only; zeros elsewhere). */
export function machineCpu(): { busy: number; total: number } {
  try {
    const [, ...ticks] = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/);
    // user nice system idle iowait irq softirq steal; guest time is already counted in user and nice.
    const values = ticks.slice(0, 8).map(Number);
    const total = values.reduce((sum, n) => sum + n, 0);
    const idle = (values[3] ?? 0) + (values[4] ?? 0); // idle + iowait
    return { busy: (total - idle) / USER_HZ, total: total / USER_HZ };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/** The sum of every sample of the metric `name` in a Prometheus text exposition (0 when absent). */
export function metricSum(exposition: string, name: string): number {
  let sum = 0;
  for (const line of exposition.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(" ")));
  }
  return sum;
}

/** Stages this process started and has not stopped yet, so Ctrl-C stops them too. */
const running = new Set<RunningStage>();
process.once("SIGINT", () => {
  for (const stage of running) stage.child.kill("SIGTERM");
  process.exit(130);
});

/** A stage script running as its own process (`bun run <script>`), as in production. */
export interface RunningStage {
  script: string;
  child: Subprocess;
  /** The stage's /metrics text. */
  metrics: () => Promise<string>;
  /** SIGTERM, SIGKILL if it has not exited after a while; resolves with the exit code. */
  stop: () => Promise<number>;
}

/**
 * Spawns `bun run <tweaks.flags> <script>` with its health port in `portVariable` and waits until /healthz answers.
 * The stage's output is appended to `logFile`: at LOG_LEVEL=warn a clean run writes nothing.
 */
export async function startStage(
  script: string,
  portVariable: string,
  logFile: number,
  tweaks: StageTweaks = { flags: [], env: {} },
): Promise<RunningStage> {
  const port = freePort();
  const child = Bun.spawn(["bun", "run", ...tweaks.flags, script], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", ...tweaks.env, [portVariable]: String(port) },
    stdout: logFile,
    stderr: logFile,
  });
  const url = `http://127.0.0.1:${port}`;
  const stage: RunningStage = {
    script,
    child,
    metrics: () => fetch(`${url}/metrics`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.text()),
    async stop() {
      running.delete(stage);
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const code = await child.exited;
      clearTimeout(timer);
      return code;
    },
  };
  running.add(stage);
  try {
    await pollEvery(
      `${script} to answer on ${url}/healthz`,
      async () => {
        if (child.exitCode !== null)
          throw new Error(`${script} exited with code ${child.exitCode} before it was ready`);
        return fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
          (r) => r.ok || undefined,
          () => undefined,
        );
      },
      READY_TIMEOUT_MS,
      POLL_MS,
    );
  } catch (error) {
    await stage.stop();
    throw error;
  }
  return stage;
}

/**
 * Runs `script` until `groupId` has committed everything in `topic` and in every other topic it has offsets
 * for, so that a measured run afterwards reads only the records the bench produces. A stage that reads a topic
 * the group never committed before shows up with offsets after the first drain, hence the loop.
 * Returns how many records the drains had to work through.
 */
export async function drainGroup(options: {
  kafka: KafkaConnection;
  script: string;
  portVariable: string;
  groupId: string;
  topic: string;
  logFile: number;
  timeoutMs: number;
}): Promise<number> {
  const { kafka, groupId, topic } = options;
  let drained = 0;
  for (let round = 0; round < 3; round++) {
    const backlog = await backlogOf(kafka, groupId, topic);
    if (backlog === 0) return drained;
    drained += backlog;
    const stage = await startStage(options.script, options.portVariable, options.logFile);
    try {
      await pollEvery(
        `${groupId} to catch up`,
        async () => ((await backlogOf(kafka, groupId, topic)) === 0 ? true : undefined),
        options.timeoutMs,
        POLL_MS,
      );
    } finally {
      await stage.stop();
    }
  }
  return drained;
}

/** Counts what `groupId` commits on `topic` from now on; `read()` is one offset fetch on an open connection. */
export async function commitCounter(kafka: KafkaConnection, groupId: string, topic: string) {
  const committed = async () => {
    const positions = (await committedOffsets(kafka, groupId)).filter((p) => p.topic === topic);
    // -1: never committed, which after a drain means the partition had no records yet.
    return Number(positions.reduce((sum, p) => sum + (p.offset < 0n ? 0n : p.offset), 0n));
  };
  const base = await committed();
  return {
    /** The sum of the committed offsets when the counter was made. */
    base,
    /** Records committed since the counter was made. */
    read: async () => (await committed()) - base,
    close: async () => {},
  };
}

export type CommitCounter = Awaited<ReturnType<typeof commitCounter>>;

/** How a stage worked through a backlog. */
export interface StageRun {
  /** Records per second between the group's first commit and the commit that reached the target. */
  steadyRate: number;
  /** Records per second from /healthz answering (group join and the first batch included). */
  fromReadyRate: number;
  /** Milliseconds from /healthz answering to the first commit: joining the group and the whole first batch. */
  startupMs: number;
  /** Records committed at the end (at least the target unless the deadline passed). */
  done: number;
  /** Peak and final resident memory of the stage process, in bytes. */
  memory: { peak: number; current: number };
  /** Set when the deadline passed first: another member of the group may own some partitions. */
  timedOut: boolean;
  /**
   * Records the stage itself read (its records_in_total). Well below `done` means another member of the group
   * (an integration test's stage) took part of the backlog, and the rate is not one instance's.
   */
  ownRecords: number;
  /** A /metrics scrape taken after the target was reached, for the stage's own counters. */
  exposition: string;
  /** Cores the stage kept busy in the steady window (1 = one core all the time). */
  stageCores: number;
  /** Cores busy machine-wide in the steady window: stage, broker, database, and anyone else's work. */
  machineCores: number;
}

/**
 * Times `stage` from now (just after it answered /healthz) until its group has committed `target` records.
 * Progress comes from the broker's committed offsets, never from the stage's /metrics: under Bun, prom-client's
 * default heap metrics walk the whole heap (~0.1-0.4 s of CPU per scrape once geo-tz's cache is full), so
 * scraping while timing would slow down what is being timed.
 */
export async function timeStage(
  stage: RunningStage,
  counter: CommitCounter,
  target: number,
  timeoutMs: number,
): Promise<StageRun> {
  const ready = performance.now();
  const deadline = ready + timeoutMs;
  const sample = (done: number) => ({
    at: performance.now(),
    done,
    cpu: cpuSecondsOf(stage.child.pid),
    machine: machineCpu(),
  });
  let first: ReturnType<typeof sample> | undefined;
  let last = sample(0);
  const atReady = last;
  let memory = { peak: 0, current: 0 };
  for (;;) {
    last = sample(await counter.read());
    memory = memoryOf(stage.child.pid);
    if (!first && last.done > 0) first = last;
    if (last.done >= target || last.at > deadline) break;
    if (stage.child.exitCode !== null) throw new Error(`${stage.script} exited with code ${stage.child.exitCode}`);
    await Bun.sleep(POLL_MS);
  }
  // The first commit seen can also be the last one on a tiny run: fall back to the time from ready.
  const start = first && first.at < last.at ? first : atReady;
  const seconds = (last.at - start.at) / 1000;
  const machine = (last.machine.busy - start.machine.busy) / (last.machine.total - start.machine.total);
  const exposition = await stage.metrics();
  return {
    steadyRate: (last.done - start.done) / seconds,
    stageCores: (last.cpu - start.cpu) / seconds,
    machineCores: machine * navigator.hardwareConcurrency,
    fromReadyRate: last.done / ((last.at - ready) / 1000),
    startupMs: start.at - ready,
    done: last.done,
    memory,
    timedOut: last.done < target,
    ownRecords: metricSum(exposition, "records_in_total"),
    exposition,
  };
}

/** The result column of a stage's row: why the figure does not count, or whether it meets `ratio`. */
export function verdict(run: StageRun, ratio: number, target: number): string {
  if (run.timedOut) return "TIMEOUT";
  if (run.ownRecords < run.done * 0.95) return "SHARED";
  return ratio >= target ? "pass" : "MISS";
}

/** Thousands separators, no decimals. */
export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");

/** Bytes as MiB with one decimal. */
export const mib = (bytes: number): string => `${(bytes / 1_048_576).toFixed(1)} MiB`;

/** Prints `rows` as an aligned table; the first row is the header, the first column is left-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => row[col]?.length ?? 0))) ?? [];
  for (const [i, row] of rows.entries()) {
    console.log(
      row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0))).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}
