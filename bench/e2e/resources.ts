/**
 * Memory and CPU of the processes under test, from /proc (Linux): resident memory sampled over a window (peak
 * and average), CPU time read at its ends (cores kept busy on average).
 */
import { readFileSync } from "node:fs";
import { cpuSecondsOf, machineCpu } from "../stages.ts";

/** How often resident memory is read: cheap (one small file per process), fine enough to catch GC peaks. */
const RSS_SAMPLE_MS = 250;

/**
 * VmRSS of `pid` in bytes and its private part, RssAnon (heap, JIT code, malloc arenas); the rest is mostly
 * RssFile, the pages of the Bun executable a process has touched, which every Bun process shares through the
 * page cache. Undefined once the process has exited.
 */
export function rssOf(pid: number): { rss: number; anon: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
    const rss = kb("VmRSS") * 1024;
    return Number.isNaN(rss) ? undefined : { rss, anon: kb("RssAnon") * 1024 };
  } catch {
    return undefined;
  }
}

/** Resident memory of one process over a window, in bytes. */
export interface MemoryStats {
  peak: number;
  average: number;
  /** The same for RssAnon, the part no other process shares. */
  anonPeak: number;
  anonAverage: number;
  samples: number;
}

/** What a window cost each named process, and the machine as a whole. */
export interface Usage {
  memory: Map<string, MemoryStats>;
  /** Cores each process kept busy on average (1 = one core all the time). */
  cores: Map<string, number>;
  /** Cores busy machine-wide: our processes, the broker, the database, and anyone else's work. */
  machineCores: number;
}

/** The processes of one name: a stage is one pid, PostgreSQL is its postmaster's children (one per backend). */
export type PidSource = () => number[];

/**
 * Starts sampling: memory of the processes named in `memoryOf` (one pid each), CPU of every source in `sources`. `stop` ends
 * the window and reports its usage.
 */
export function startUsage(sources: Map<string, PidSource>, memoryOf: string[]): { stop: () => Usage } {
  const rss = new Map(memoryOf.map((name) => [name, [] as { rss: number; anon: number }[]]));
  const sample = () => {
    for (const [name, list] of rss) {
      const pid = sources.get(name)?.()[0];
      const bytes = pid === undefined ? undefined : rssOf(pid);
      if (bytes) list.push(bytes);
    }
  };
  const cpuNow = () =>
    new Map([...sources].map(([name, pids]) => [name, new Map(pids().map((pid) => [pid, cpuSecondsOf(pid)]))]));
  const cpuStart = cpuNow();
  const machineStart = machineCpu();
  const started = performance.now();
  sample();
  const timer = setInterval(sample, RSS_SAMPLE_MS);
  return {
    stop() {
      clearInterval(timer);
      sample();
      const seconds = (performance.now() - started) / 1000;
      const cpuEnd = cpuNow();
      const machineEnd = machineCpu();
      const memory = new Map<string, MemoryStats>();
      for (const [name, list] of rss) {
        const stats = (values: number[]) => ({
          peak: values.length ? Math.max(...values) : 0,
          average: values.length ? values.reduce((a, b) => a + b, 0) / values.length : 0,
        });
        const all = stats(list.map((s) => s.rss));
        const anon = stats(list.map((s) => s.anon));
        memory.set(name, { ...all, anonPeak: anon.peak, anonAverage: anon.average, samples: list.length });
      }
      const cores = new Map<string, number>();
      for (const [name, end] of cpuEnd) {
        // A process that appeared during the window (a new database backend) counts from zero.
        let used = 0;
        for (const [pid, cpu] of end) used += cpu - (cpuStart.get(name)?.get(pid) ?? 0);
        cores.set(name, used / seconds);
      }
      const busy = (machineEnd.busy - machineStart.busy) / Math.max(1e-9, machineEnd.total - machineStart.total);
      return { memory, cores, machineCores: busy * navigator.hardwareConcurrency };
    },
  };
}

/** Pids of processes whose full command line matches `pattern` (pgrep -f), or whose parent is `parent`. */
function pgrep(args: string[]): number[] {
  const result = Bun.spawnSync(["pgrep", ...args]);
  return result.stdout
    .toString()
    .split("\n")
    .map(Number)
    .filter((pid) => Number.isInteger(pid) && pid > 0);
}

/**
 * CPU sources for the servers under the pipeline, when they run on this machine: the Kafka broker (one JVM) and
 * PostgreSQL (the postmaster and its children: one backend per connection plus the WAL writer, checkpointer...).
 */
export function infraSources(): Map<string, PidSource> {
  const sources = new Map<string, PidSource>();
  const [broker] = pgrep(["-of", "kafka\\.Kafka"]);
  if (broker) sources.set("kafka", () => [broker]);
  const [postmaster] = pgrep(["-ox", "postgres"]);
  if (postmaster) sources.set("postgresql", () => [postmaster, ...pgrep(["-P", String(postmaster)])]);
  return sources;
}

/** VmRSS and RssAnon of each stage right now. */
export function residentMemory(stages: { name: string; child: { pid: number } }[]) {
  return new Map(stages.map((s) => [s.name, rssOf(s.child.pid) ?? { rss: 0, anon: 0 }]));
}
