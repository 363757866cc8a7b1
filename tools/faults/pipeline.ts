/**
 * The running pipeline of a fault run: every instance of every stage, its lifetimes, the crashes the harness
 * did not cause (restarted at once, as compose's `restart: unless-stopped` would), and persist's counters
 * scraped across lifetimes (a restart resets them, so each lifetime's last scrape is kept).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { type ProcessHandle, type StageName, startStage } from "../harness.ts";
import { metricSum } from "../metrics.ts";

export type Role = StageName;

/** One lifetime of one instance of a stage. */
interface StageProcess {
  /** e.g. "enrich#2". */
  instance: string;
  /** 1 for the first start of the instance, +1 for each restart. */
  lifetime: number;
  logPath: string;
  handle: ProcessHandle;
  exited: Promise<number>;
  /** True once this harness has signalled it, so its exit is not a crash. */
  signalled: boolean;
}

/** persist's counters in one scrape. */
export interface PersistCounters {
  conflicts: number;
  written: number;
  replayed: number;
}

/** A crash: an exit the harness did not ask for. */
export interface Crash {
  instance: string;
  lifetime: number;
  exit: string;
  at: number;
  log: string;
  /** The last error it logged. */
  reason: string | undefined;
}

export const roleOf = (instance: string): Role => instance.split("#")[0] as Role;

/** persist with the MongoDB sink: its own instance and group (persist-mongodb), beside the PostgreSQL one. */
export const MONGODB_PERSIST = "persist#mongodb";
/**
 * Settings of an instance beyond the run's: the sink of a persist instance named after it (`persist#mongodb`,
 * `persist#mysql`, `persist#s3`); other instances of persist (`persist`) use PostgreSQL's.
 */
const instanceEnv = (instance: string): Record<string, string> => {
  const [role, name] = instance.split("#");
  return role === "persist" && name && ["mongodb", "mysql", "s3"].includes(name) ? { PERSIST_SINK: name } : {};
};

/** Instances of the stages, started, killed and restarted by name ("enrich#2"). */
export class Pipeline {
  readonly live = new Map<string, StageProcess>();
  readonly crashes: Crash[] = [];
  /** When each instance last went away on purpose (ms since the epoch): its group membership lingers a while. */
  readonly lastStopped = new Map<string, number>();
  private readonly lifetimes = new Map<string, number>();
  private readonly ports = new Map<string, number>();
  private readonly persistCounters = new Map<string, PersistCounters>();
  private closing = false;

  constructor(
    private readonly logDir: string,
    private readonly env: Record<string, string>,
    private readonly allocatePort: () => number,
    private readonly log: (line: string) => void,
  ) {}

  /** Starts (or restarts) `instance` and waits until it answers /healthz. */
  async start(instance: string): Promise<StageProcess> {
    const role = roleOf(instance);
    const port = this.ports.get(instance) ?? this.allocatePort();
    this.ports.set(instance, port);
    const lifetime = (this.lifetimes.get(instance) ?? 0) + 1;
    this.lifetimes.set(instance, lifetime);
    const logPath = join(this.logDir, `${instance.replace("#", "-")}.${lifetime}.log`);
    const env = { ...this.env, ...instanceEnv(instance) };
    const handle = await startStage(role, { mode: "process", port, env, output: logPath });
    const exited = handle.child.exited;
    const stage: StageProcess = { instance, lifetime, logPath, handle, exited, signalled: false };
    this.live.set(instance, stage);
    void exited.then(() => this.exited(stage));
    return stage;
  }

  /** A supervisor's part: a crash is recorded and the instance started again. */
  private async exited(stage: StageProcess): Promise<void> {
    if (stage.signalled || this.closing) return;
    if (this.live.get(stage.instance) === stage) this.live.delete(stage.instance);
    const exit = await stage.handle.stop();
    const reason = lastError(stage.logPath);
    this.crashes.push({
      instance: stage.instance,
      lifetime: stage.lifetime,
      exit,
      at: Date.now(),
      log: stage.logPath,
      reason,
    });
    this.log(
      `${stage.instance} (lifetime ${stage.lifetime}) CRASHED with ${exit}; restarting it (log ${stage.logPath})`,
    );
    try {
      await this.start(stage.instance);
    } catch (error) {
      this.log(`could not restart ${stage.instance}: ${(error as Error).message}`);
    }
  }

  /** Signals `instance` and waits for its exit; persist is scraped first, since its counters die with it. */
  async stop(instance: string, signal: "SIGTERM" | "SIGKILL"): Promise<string> {
    const stage = this.live.get(instance);
    if (!stage) throw new Error(`${instance} is not running`);
    if (roleOf(instance) === "persist") await this.scrapePersist();
    this.live.delete(instance);
    stage.signalled = true;
    const exit = await stage.handle.stop(signal);
    this.lastStopped.set(instance, Date.now());
    return exit;
  }

  /** Records the current counters of every live lifetime of the PostgreSQL persist (the checks are about it). */
  async scrapePersist(): Promise<void> {
    for (const stage of this.live.values()) {
      // Only PostgreSQL's persist (`persist`, not `persist#<sink>`): the checks of its counters are about it.
      if (stage.instance !== "persist") continue;
      const text = await stage.handle.metrics();
      if (text === undefined) continue;
      this.persistCounters.set(`${stage.instance}.${stage.lifetime}`, {
        conflicts: metricSum(text, "rows_conflicting_total"),
        written: metricSum(text, "rows_written_total"),
        replayed: metricSum(text, "records_replayed_total"),
      });
    }
  }

  /** persist's counters summed over lifetimes: a lower bound, as a SIGKILL loses what followed the last scrape. */
  persistTotals(): PersistCounters {
    const total = { conflicts: 0, written: 0, replayed: 0 };
    for (const c of this.persistCounters.values()) {
      total.conflicts += c.conflicts;
      total.written += c.written;
      total.replayed += c.replayed;
    }
    return total;
  }

  /** Live instances of `role`. */
  instances(role: Role): string[] {
    return [...this.live.keys()].filter((instance) => roleOf(instance) === role);
  }

  /** The base URL of a live instance. */
  url(instance: string): string {
    const stage = this.live.get(instance);
    if (!stage) throw new Error(`${instance} is not running`);
    return stage.handle.url;
  }

  /** Lifetimes started per instance so far. */
  starts(): Map<string, number> {
    return new Map(this.lifetimes);
  }

  /** Readiness and log file of every live instance, for a report. */
  async status(): Promise<string[]> {
    return Promise.all(
      [...this.live.values()].map(
        async (stage) =>
          `${stage.instance} (lifetime ${stage.lifetime}): /readyz ${await stage.handle.ready()}, log ${stage.logPath}`,
      ),
    );
  }

  /** Stops everything gracefully (SIGKILL after a deadline); crashes from here on are not restarted. */
  async close(): Promise<void> {
    this.closing = true;
    await this.scrapePersist().catch(() => {});
    await Promise.all(
      [...this.live.values()].map((stage) => {
        stage.signalled = true;
        return stage.handle.stop("SIGTERM").catch(() => "");
      }),
    );
    this.live.clear();
  }
}

/** The last fatal or error line of a stage's JSON log, shortened to its message and error: why it exited. */
function lastError(path: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
  const lines = text.trimEnd().split("\n").reverse();
  for (const line of lines) {
    try {
      const entry = JSON.parse(line) as {
        level?: number;
        msg?: string;
        err?: { message?: string; aggregateErrors?: { message?: string }[] };
      };
      if ((entry.level ?? 0) < 50) continue;
      const causes = (entry.err?.aggregateErrors ?? []).map((e) => e.message).filter(Boolean);
      return [entry.msg, entry.err?.message, ...new Set(causes)].filter(Boolean).join(": ");
    } catch {
      // not JSON (a stack trace printed by the runtime): keep looking
    }
  }
  return lines.find((line) => line.trim() !== "")?.slice(0, 300);
}
