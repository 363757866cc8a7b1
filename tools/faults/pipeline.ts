/**
 * The running pipeline of a fault run: every instance of every stage, its lifetimes, the crashes the harness
 * did not cause (restarted at once, as compose's `restart: unless-stopped` would), and persist's counters
 * scraped across lifetimes (a restart resets them, so each lifetime's last scrape is kept).
 */
import {
  lastError,
  metricSum,
  readiness,
  type StageProcess,
  type StageSpec,
  scrape,
  startStage,
  stopStage,
} from "./processes.ts";

export type Role = "ingest" | "enrich" | "aggregate" | "persist";

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

const SCRIPTS: Record<Role, string> = {
  ingest: "ingest.ts",
  enrich: "enrich.ts",
  aggregate: "aggregate.ts",
  persist: "persist.ts",
};
const PORT_VARIABLE: Record<Role, string> = {
  ingest: "INGEST_PORT",
  enrich: "ENRICH_PORT",
  aggregate: "AGGREGATE_PORT",
  persist: "PERSIST_PORT",
};

export const roleOf = (instance: string): Role => instance.split("#")[0] as Role;

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
    const spec: StageSpec = {
      script: SCRIPTS[role],
      instance,
      port,
      env: { ...this.env, [PORT_VARIABLE[role]]: String(port) },
      logDir: this.logDir,
    };
    const stage = await startStage(spec, lifetime);
    this.live.set(instance, stage);
    void stage.child.exited.then(() => this.exited(stage));
    return stage;
  }

  /** A supervisor's part: a crash is recorded and the instance started again. */
  private async exited(stage: StageProcess): Promise<void> {
    if (stage.signalled || this.closing) return;
    if (this.live.get(stage.instance) === stage) this.live.delete(stage.instance);
    const exit = String(stage.child.signalCode ?? stage.child.exitCode);
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
    const exit = await stopStage(stage, signal);
    this.lastStopped.set(instance, Date.now());
    return exit;
  }

  /** Records the current counters of every live persist lifetime. */
  async scrapePersist(): Promise<void> {
    for (const stage of this.live.values()) {
      if (roleOf(stage.instance) !== "persist") continue;
      const text = await scrape(stage);
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
    return stage.url;
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
          `${stage.instance} (lifetime ${stage.lifetime}): /readyz ${await readiness(stage)}, log ${stage.logPath}`,
      ),
    );
  }

  /** Stops everything gracefully (SIGKILL after a deadline); crashes from here on are not restarted. */
  async close(): Promise<void> {
    this.closing = true;
    await this.scrapePersist().catch(() => {});
    await Promise.all([...this.live.values()].map((stage) => stopStage(stage, "SIGTERM").catch(() => "")));
    this.live.clear();
  }
}
