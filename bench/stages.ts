/**
 * Running a pipeline stage the way the benches time it: as its own process through tools/harness.ts (so
 * BENCH_STAGE_FLAGS can profile the very run that is timed), in the bench's own Kafka namespace (the harness's
 * `inNamespace`: fresh topics and groups, deleted afterwards), timed by the group's committed offsets while it
 * works through a backlog the bench produced; and the figures that run gives.
 *
 * Every wait polls with a deadline; nothing synchronises on a fixed sleep.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  committedOffsets,
  createProducer,
  type Delivery,
  endOffsets,
  type KafkaConnection,
  type OutRecord,
} from "../shared/kafka.ts";
import { groupOf, type ProcessHandle, type StageName, type StartOptions, startStage } from "../tools/harness.ts";
import { int, mib } from "./cli.ts";

/** Short enough to time a 2 s window to a few percent; each poll is one offset fetch from the broker. */
const POLL_MS = 50;
/** A consumer stage stays at or under 100 MB resident. */
const RSS_TARGET_BYTES = 100 * 1_048_576;

/** Extra `bun run` flags and environment for a measured stage, as the harness takes them. */
export type StageTweaks = Required<Pick<StartOptions, "flags" | "env">>;

/**
 * The measured stages' tweaks: BENCH_STAGE_FLAGS, space-separated `bun run` flags (e.g. "--cpu-prof-md
 * --cpu-prof-dir=/tmp/prof" profiles the very run that is timed), and BENCH_STAGE_ENV, space-separated
 * NAME=value pairs (e.g. "BUN_JSC_forceRAMSize=150000000" to see how RSS responds to a tighter GC). Drains run
 * the stage as it is.
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

/** The consumer group of `name` when it runs with `env` over this process's environment. */
export function consumerGroup(name: StageName, env: Record<string, string> = {}): string {
  const group = groupOf(name, { ...process.env, ...env });
  if (group === undefined) throw new Error(`${name} consumes in no group`);
  return group;
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
async function produceAll(
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

/** Records in all partitions of `topic`. */
export async function topicSize(kafka: KafkaConnection, topic: string): Promise<number> {
  const partitions = await endOffsets(kafka, topic);
  return Number(partitions.reduce((sum, { offset }) => sum + offset, 0n));
}

/**
 * Peak and current resident memory of a process, and its private part now (RssAnon: heap, JIT code, malloc
 * arenas; the rest of VmRSS is mostly the Bun executable's pages, shared by every Bun process), in bytes, from
 * /proc (Linux only; 0 elsewhere).
 */
export function memoryOf(pid: number): { peak: number; current: number; anon: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0) * 1024;
    return { peak: kb("VmHWM"), current: kb("VmRSS"), anon: kb("RssAnon") };
  } catch {
    return { peak: 0, current: 0, anon: 0 };
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

/** A process and all its descendants (the workers of a stage run as several processes), from /proc (Linux only). */
export function processTree(pid: number): number[] {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    return [pid, ...children.flatMap((child) => processTree(Number(child)))];
  } catch {
    return [pid];
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

/**
 * The log file of one bench run's processes, in the temp dir; each appends its output. At LOG_LEVEL=warn a
 * clean run writes nothing, so anything in it is worth a look.
 */
export function stageLog(bench: string, runId: string) {
  const path = join(tmpdir(), `bench-${bench}-${runId}.log`);
  return {
    path,
    /** Runs `work`; when it fails, says where the logs are before passing the error on. */
    async around<T>(work: () => Promise<T>): Promise<T> {
      try {
        return await work();
      } catch (error) {
        console.error(`stage logs: ${path}`);
        throw error;
      }
    },
    /** Points to the file when anything was logged, and removes it otherwise. */
    report(): void {
      const logged = existsSync(path) ? readFileSync(path, "utf8").split("\n").filter(Boolean).length : 0;
      if (logged > 0) console.log(`the stages logged ${logged} line(s) at warn or above: ${path}`);
      else rmSync(path, { force: true });
    },
  };
}

export type StageLog = ReturnType<typeof stageLog>;

/** What every timed run of one bench shares: the broker (in the bench's namespace), the log file, the deadline. */
export interface BenchContext {
  kafka: KafkaConnection;
  log: StageLog;
  timeoutMs: number;
}

/**
 * How a stage's progress through a backlog is counted: by its group's committed offsets (the stages commit a
 * batch only once it is done), or by what it has read (its records_in_total), for a stage whose commits trail
 * what it has read by design: the aggregate commits only up to its oldest open window or pending late count.
 */
export type Progress = "committed" | "read";

/** Counts what `groupId` commits on `topic` from now on; `read()` is one offset fetch on an open connection. */
async function commitCounter(kafka: KafkaConnection, groupId: string, topic: string) {
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
  };
}

/** How a stage worked through a backlog. */
export interface StageRun {
  /** Records per second between the first progress seen (a commit, or records read) and reaching the target. */
  steadyRate: number;
  /** Records per second from /healthz answering (group join and the first batch included). */
  fromReadyRate: number;
  /** Milliseconds from /healthz answering to the first progress: joining the group and the whole first batch. */
  startupMs: number;
  /** Records done at the end, committed or read (at least the target unless the deadline passed). */
  done: number;
  /** Peak and final resident memory of the stage process, and the highest RssAnon seen, in bytes. */
  memory: { peak: number; current: number; anon: number };
  /** Set when the deadline passed first. */
  timedOut: boolean;
  /** A /metrics scrape taken after the target was reached, for the stage's own counters. */
  exposition: string;
  /** Cores the stage kept busy in the steady window (1 = one core all the time). */
  stageCores: number;
  /** Cores busy machine-wide in the steady window: stage, broker, database, and anyone else's work. */
  machineCores: number;
}

/**
 * Times `stage` from now (just after it answered /healthz) until `progress()` reaches `target` records.
 * Progress should come from the broker, not from the stage's /metrics: under Bun, prom-client's default heap
 * metrics walk the whole heap (~0.1-0.4 s of CPU per scrape once geo-tz's cache is full), so scraping while
 * timing would slow down what is being timed.
 */
async function timeStage(
  stage: ProcessHandle,
  progress: () => Promise<number>,
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
  let memory = { peak: 0, current: 0, anon: 0 };
  for (;;) {
    last = sample(await progress());
    const now = memoryOf(stage.child.pid);
    memory = { ...now, anon: Math.max(memory.anon, now.anon) };
    if (!first && last.done > 0) first = last;
    if (last.done >= target || last.at > deadline) break;
    if (stage.child.exitCode !== null) throw new Error(`${stage.name}.ts exited with code ${stage.child.exitCode}`);
    await Bun.sleep(POLL_MS);
  }
  // The first progress seen can also be the last on a tiny run: fall back to the time from ready.
  const start = first && first.at < last.at ? first : atReady;
  const seconds = (last.at - start.at) / 1000;
  const machine = (last.machine.busy - start.machine.busy) / (last.machine.total - start.machine.total);
  const exposition = await stage.metrics();
  if (exposition === undefined) throw new Error(`${stage.name}.ts did not answer ${stage.url}/metrics`);
  return {
    steadyRate: (last.done - start.done) / seconds,
    stageCores: (last.cpu - start.cpu) / seconds,
    machineCores: machine * navigator.hardwareConcurrency,
    fromReadyRate: last.done / ((last.at - ready) / 1000),
    startupMs: start.at - ready,
    done: last.done,
    memory,
    timedOut: last.done < target,
    exposition,
  };
}

/** A stage timed through a backlog, and what the bench produced for it. */
export interface TimedBacklog {
  stage: StageName;
  run: StageRun;
  /** How `run.done` was counted. */
  progress: Progress;
  /** Records the stage had to work through: what the bench produced into its fresh topic. */
  backlog: number;
  /** Records per second of producing them with the pipeline's own producer. */
  produceRate: number;
  /** Where each produced record went, in order. */
  deliveries: Delivery[];
}

/**
 * Produces `records` (all on one topic, the stage's input) and times a fresh `stage` (with the bench's
 * {@link stageTweaks}) until it has worked through the backlog, counted by `progress`.
 */
export async function timeBacklog(
  { kafka, log, timeoutMs }: BenchContext,
  stage: StageName,
  records: OutRecord[],
  progress: Progress = "committed",
): Promise<TimedBacklog> {
  const { topic } = records[0] as OutRecord;
  const tweaks = stageTweaks();
  const { rate: produceRate, deliveries } = await produceAll(kafka, records);
  const counter =
    progress === "committed" ? await commitCounter(kafka, consumerGroup(stage, tweaks.env), topic) : undefined;
  const backlog = records.length;
  // This process's garbage (the generated events, the ceilings' caches) is collected now, not while it is timed.
  Bun.gc(true);
  const running = await startStage(stage, { mode: "process", output: log.path, ...tweaks });
  try {
    const read = counter?.read ?? (() => running.metric("records_in_total"));
    const run = await timeStage(running, read, backlog, timeoutMs);
    return { stage, run, progress, backlog, produceRate, deliveries };
  } finally {
    await running.stop();
  }
}

/** The result column of a stage's row: why the figure does not count, or whether it meets `target`. */
export function verdict(run: StageRun, figure: number, target: number): string {
  if (run.timedOut) return "TIMEOUT";
  return figure >= target ? "pass" : "MISS";
}

/** Prints how the stage of `timed` got through its backlog: start-up, CPU, memory, and anything that spoils it. */
export function printTimedRun({ stage, run, progress, backlog, produceRate }: TimedBacklog): void {
  const name = `${stage}.ts`;
  const cores = navigator.hardwareConcurrency;
  console.log(
    `${name}: ${int(run.done)} records ${progress}; from /healthz answering ${int(run.fromReadyRate)} records/s ` +
      `(group join + first batch took ${int(run.startupMs)} ms)`,
  );
  console.log(
    `${name} CPU in the steady window: ${run.stageCores.toFixed(2)} cores; whole machine ` +
      `${run.machineCores.toFixed(2)} of ${cores} cores busy (the stage, the broker, the database, anything else)`,
  );
  console.log(
    `${name} RSS: peak ${mib(run.memory.peak)}, at the end ${mib(run.memory.current)} ` +
      `(target <= ${mib(RSS_TARGET_BYTES)}: ${run.memory.peak <= RSS_TARGET_BYTES ? "pass" : "MISS"}); ` +
      `RssAnon (private) at most ${mib(run.memory.anon)}`,
  );
  console.log(`produce of the input: ${int(produceRate)} records/s`);
  if (run.timedOut) console.log(`note: only ${int(run.done)} of ${int(backlog)} records were done before the deadline`);
}
