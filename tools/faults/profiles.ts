/**
 * How hard a fault run pushes: the traffic, which faults and how many, and the deadlines. Measured on a
 * 2-core machine with a quiet stack before change data capture joined (its four faults add ~25 s to `ci`):
 * `ci` about 2 minutes (14 faults then, 18 now, ~21k events), `full` about 6.5 minutes (32 faults then, 40 now,
 * ~340k events, compound faults: a stage killed while the broker or the database is down),
 * `smoke` under a minute with no faults at all. A backlog others left in the topics adds the time to drain it.
 */
import { between, pick, type Rng } from "../generators.ts";
import { MONGODB_PERSIST } from "./pipeline.ts";

export interface Profile {
  /** Events per second of each stream. */
  rates: { logins: number; locations: number };
  /** Vehicles of the fleet stream, each reporting once a second. */
  vehicles: number;
  concurrency: number;
  batch: [number, number];
  invalidShare: number;
  missingShare: number;
  /** Load before the first fault, between faults, and after the last one. */
  warmupMs: number;
  gapMs: [number, number];
  tailMs: number;
  /** SIGKILLs of each stage; killing ingest turns its in-flight requests into indeterminate outcomes. */
  kills: { enrich: number; aggregate: number; intervals: number; persist: number; ingest: number };
  /** Broker stops, by signal (SIGTERM: a clean stop; SIGKILL: a crash). */
  broker: ("SIGTERM" | "SIGKILL")[];
  postgres: number;
  /** SIGKILLs of persist#mongodb (persist with the MongoDB sink) and restarts of FerretDB; none without one. */
  mongodb: { kills: number; restarts: number };
  /**
   * Change data capture: users written to the source table (changes per second), SIGKILLs of capture and of
   * persist with each cdc sink, and restarts of the stack's MariaDB.
   */
  cdc: { rate: number; kills: { capture: number; mysql: number; s3: number }; mariadb: number };
  /** Times a second enrich instance joins and later leaves. */
  rebalances: number;
  /** A stage killed while the broker, or the database, is down. */
  compound: boolean;
  /** How long each kind of fault keeps its victim down. */
  downMs: { stage: [number, number]; broker: [number, number]; postgres: [number, number] };
  drainTimeoutMs: number;
  topicTimeoutMs: number;
  /** Aggregate windows (seconds), short so the run's last windows close soon after the load stops. */
  window: { seconds: number; graceSeconds: number };
}

export const PROFILES: Record<"smoke" | "ci" | "full", Profile> = {
  /** No faults at all: checks the harness and the checks themselves in about a minute. */
  smoke: {
    rates: { logins: 100, locations: 100 },
    vehicles: 20,
    concurrency: 2,
    batch: [1, 10],
    invalidShare: 0.05,
    missingShare: 0.15,
    warmupMs: 15_000,
    gapMs: [0, 0],
    tailMs: 0,
    kills: { enrich: 0, aggregate: 0, intervals: 0, persist: 0, ingest: 0 },
    broker: [],
    postgres: 0,
    mongodb: { kills: 0, restarts: 0 },
    cdc: { rate: 20, kills: { capture: 0, mysql: 0, s3: 0 }, mariadb: 0 },
    rebalances: 0,
    compound: false,
    downMs: { stage: [0, 0], broker: [0, 0], postgres: [0, 0] },
    drainTimeoutMs: 60_000,
    topicTimeoutMs: 60_000,
    window: { seconds: 5, graceSeconds: 2 },
  },
  ci: {
    rates: { logins: 120, locations: 120 },
    vehicles: 40,
    concurrency: 3,
    batch: [1, 20],
    invalidShare: 0.02,
    missingShare: 0.15,
    warmupMs: 5_000,
    gapMs: [3_000, 6_000],
    tailMs: 4_000,
    kills: { enrich: 2, aggregate: 2, intervals: 1, persist: 2, ingest: 1 },
    broker: ["SIGTERM"],
    postgres: 1,
    mongodb: { kills: 1, restarts: 1 },
    cdc: { rate: 20, kills: { capture: 1, mysql: 1, s3: 1 }, mariadb: 1 },
    rebalances: 1,
    compound: false,
    downMs: { stage: [0, 2_000], broker: [1_000, 4_000], postgres: [2_000, 5_000] },
    drainTimeoutMs: 90_000,
    topicTimeoutMs: 60_000,
    window: { seconds: 5, graceSeconds: 2 },
  },
  full: {
    rates: { logins: 400, locations: 400 },
    vehicles: 200,
    concurrency: 6,
    batch: [1, 50],
    invalidShare: 0.02,
    missingShare: 0.15,
    warmupMs: 10_000,
    gapMs: [5_000, 15_000],
    tailMs: 10_000,
    kills: { enrich: 4, aggregate: 4, intervals: 2, persist: 4, ingest: 2 },
    broker: ["SIGTERM", "SIGKILL", "SIGTERM"],
    postgres: 3,
    mongodb: { kills: 2, restarts: 2 },
    cdc: { rate: 50, kills: { capture: 2, mysql: 2, s3: 2 }, mariadb: 2 },
    rebalances: 3,
    compound: true,
    downMs: { stage: [0, 5_000], broker: [1_000, 10_000], postgres: [2_000, 15_000] },
    drainTimeoutMs: 300_000,
    topicTimeoutMs: 180_000,
    window: { seconds: 5, graceSeconds: 2 },
  },
};

export type ConsumerRole = "enrich" | "aggregate" | "intervals" | "persist";
export type StageRole = ConsumerRole | "ingest" | "capture";

/** One fault of the plan. */
export type Fault =
  | { kind: "kill"; role: StageRole; instance?: string }
  | { kind: "ferretdb" }
  | { kind: "mariadb" }
  | { kind: "broker"; signal: "SIGTERM" | "SIGKILL"; alsoKill?: ConsumerRole }
  | { kind: "postgres"; alsoKill?: ConsumerRole }
  | { kind: "scale-up" }
  | { kind: "scale-down" };

/** A readable name of a fault, for the timeline. */
export function describe(fault: Fault): string {
  switch (fault.kind) {
    case "kill":
      return `SIGKILL ${fault.instance ?? fault.role}`;
    case "ferretdb":
      return "restart FerretDB";
    case "mariadb":
      return "restart MariaDB";
    case "broker":
      return `${fault.signal} broker${fault.alsoKill ? ` + SIGKILL ${fault.alsoKill} while it is down` : ""}`;
    case "postgres":
      return `stop PostgreSQL${fault.alsoKill ? ` + SIGKILL ${fault.alsoKill} while it is down` : ""}`;
    case "scale-up":
      return "add enrich#2";
    case "scale-down":
      return "remove enrich#2";
  }
}

function shuffle<T>(rng: Rng, items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/**
 * The faults of `profile` in a random (seeded) order. Each scale-up comes before its scale-down, with other
 * faults between them, so kills and outages also hit a two-member enrich group.
 */
export function plan(profile: Profile, rng: Rng): Fault[] {
  const faults: Fault[] = [];
  // persist's kills are the PostgreSQL sink's: the instances of the other sinks have kills of their own.
  for (const role of ["enrich", "aggregate", "intervals", "persist", "ingest"] as const)
    for (let i = 0; i < profile.kills[role]; i++)
      faults.push({ kind: "kill", role, ...(role === "persist" && { instance: "persist" }) });
  profile.broker.forEach((signal, i) => {
    const alsoKill = profile.compound && i === 0 ? pick(rng, ["enrich", "aggregate", "persist"] as const) : undefined;
    faults.push({ kind: "broker", signal, ...(alsoKill && { alsoKill }) });
  });
  for (let i = 0; i < profile.mongodb.kills; i++)
    faults.push({ kind: "kill", role: "persist", instance: MONGODB_PERSIST });
  for (let i = 0; i < profile.mongodb.restarts; i++) faults.push({ kind: "ferretdb" });
  for (let i = 0; i < profile.cdc.kills.capture; i++) faults.push({ kind: "kill", role: "capture" });
  for (const sink of ["mysql", "s3"] as const)
    for (let i = 0; i < profile.cdc.kills[sink]; i++)
      faults.push({ kind: "kill", role: "persist", instance: `persist#${sink}` });
  for (let i = 0; i < profile.cdc.mariadb; i++) faults.push({ kind: "mariadb" });
  for (let i = 0; i < profile.postgres; i++)
    faults.push({ kind: "postgres", ...(profile.compound && i === 0 && { alsoKill: "persist" as const }) });
  shuffle(rng, faults);
  for (let i = 0; i < profile.rebalances; i++) {
    // Up at a random place, down after at least one other fault when there is room (fixPairs keeps them in turn).
    const up = between(rng, 0, faults.length);
    faults.splice(up, 0, { kind: "scale-up" });
    const down = Math.min(faults.length, between(rng, up + 2, Math.max(up + 2, faults.length)));
    faults.splice(down, 0, { kind: "scale-down" });
  }
  return fixPairs(faults);
}

/** Makes sure scale-ups and scale-downs alternate (up, down, up, down...), keeping their positions. */
function fixPairs(faults: Fault[]): Fault[] {
  let scaled = false;
  return faults.map((fault) => {
    if (fault.kind !== "scale-up" && fault.kind !== "scale-down") return fault;
    const next: Fault = scaled ? { kind: "scale-down" } : { kind: "scale-up" };
    scaled = !scaled;
    return next;
  });
}
