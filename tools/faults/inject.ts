/**
 * Carrying out one fault of the plan: SIGKILL and restart a stage, stop and restart the broker or PostgreSQL
 * (optionally killing a stage while it is down), add or remove the second enrich. Downtimes are random
 * (seeded): that is load shaping; every wait for something to come back polls with a deadline.
 */
import type { Sql } from "../../persist/postgres/db.ts";
import type { KafkaConnection } from "../../shared/kafka.ts";
import { between, pick, type Rng } from "../generators.ts";
import { groupOf } from "../harness.ts";
import { pollEvery } from "../poll.ts";
import { stackBrokerPid, startBroker, stopBroker } from "./infra.ts";
import type { Pipeline, Role } from "./pipeline.ts";
import type { ConsumerRole, Fault, Profile, StageRole } from "./profiles.ts";

export interface InjectorDeps {
  pipeline: Pipeline;
  sql: Sql;
  kafka: KafkaConnection;
  logDir: string;
  profile: Profile;
  rng: Rng;
  /** Stops and starts FerretDB; undefined when the stack did not start it or the run has no MongoDB sink. */
  ferretdb: ((action: "stop" | "start") => Promise<void>) | undefined;
  /** Stops and starts MariaDB; undefined when the stack did not start it. */
  mariadb: ((action: "stop" | "start") => Promise<void>) | undefined;
  /** Stops and starts the database; undefined when there is no local cluster. */
  postgres: { stop: () => Promise<void>; start: () => Promise<void> } | undefined;
  /** Requests sent so far, to show the broker went down under load. */
  requestsSoFar: () => number;
}

/** Returns `inject(fault)`, which resolves with a one-line account of what happened. */
export function createInjector(deps: InjectorDeps) {
  const { pipeline, sql, kafka, logDir, profile, rng, postgres } = deps;
  let brokerFaults = 0;

  /** A live instance of `role`, waiting for one if a crash restart is under way. */
  const victim = (role: Role) =>
    pollEvery(
      `a live ${role}`,
      async () => {
        const live = pipeline.instances(role);
        return live.length > 0 ? pick(rng, live) : undefined;
      },
      60_000,
    );

  async function killAndRestart(role: StageRole, named?: string): Promise<string> {
    if (named && !pipeline.live.has(named)) return `skipped: ${named} is not running`;
    const instance = named ?? (await victim(role));
    const exit = await pipeline.stop(instance, "SIGKILL");
    const down = between(rng, ...profile.downMs.stage);
    await Bun.sleep(down);
    const stage = await pipeline.start(instance);
    return `${instance} exited ${exit}, down ${down} ms, lifetime ${stage.lifetime} up`;
  }

  /** Waits until persist commits a batch, so that the database goes away while it is writing. */
  async function persistWriting(): Promise<boolean> {
    const latest = async () => {
      const [row] = await sql<{ t: Date | null }[]>`
        select max(updated_at) as t from consumer_offsets where group_id = ${groupOf("persist") as string}`;
      return row?.t?.getTime() ?? 0;
    };
    const before = await latest();
    const wrote = async () => ((await latest()) > before ? true : undefined);
    return pollEvery("persist to write", wrote, 20_000, 100).catch(() => false);
  }

  async function broker(signal: "SIGTERM" | "SIGKILL", alsoKill: ConsumerRole | undefined): Promise<string> {
    if (stackBrokerPid() === undefined) return "skipped: not the stack's broker";
    const tag = `${++brokerFaults}`;
    const requests = deps.requestsSoFar();
    const pid = await stopBroker(signal, logDir, tag);
    let note = `pid ${pid} gone (${requests} requests sent so far)`;
    const down = between(rng, ...profile.downMs.broker);
    if (alsoKill) {
      // The stage must also start without a broker and connect once it is back.
      const instance = await victim(alsoKill);
      await pipeline.stop(instance, "SIGKILL");
      await Bun.sleep(down / 2);
      const stage = await pipeline.start(instance);
      note += `, ${instance} killed and restarted (lifetime ${stage.lifetime}) without a broker`;
      await Bun.sleep(down / 2);
    } else {
      await Bun.sleep(down);
    }
    await startBroker(kafka, logDir, tag);
    return `${note}, down ${down} ms, broker back`;
  }

  async function database(alsoKill: ConsumerRole | undefined): Promise<string> {
    if (!postgres) return "skipped: no local cluster";
    const writing = await persistWriting();
    // A fast shutdown waits for every walsender to hand over its WAL, and capture's was seen not to read it:
    // the cluster then never stopped. So capture goes first (SIGKILL, a crash like any other) and comes back after.
    const capture = pipeline.live.has("capture") ? await pipeline.stop("capture", "SIGKILL") : undefined;
    await postgres.stop();
    const down = between(rng, ...profile.downMs.postgres);
    const killed = alsoKill && (await victim(alsoKill));
    if (killed) await pipeline.stop(killed, "SIGKILL");
    await Bun.sleep(down);
    await postgres.start();
    // persist applies migrations when it starts, so a killed one comes back after the database.
    const restarted = killed
      ? `, ${killed} killed meanwhile, lifetime ${(await pipeline.start(killed)).lifetime} up`
      : "";
    const captured = capture
      ? `, capture killed first (${capture}), lifetime ${(await pipeline.start("capture")).lifetime} up`
      : "";
    return `stopped ${writing ? "while persist was writing" : "(persist was idle)"}, down ${down} ms${restarted}${captured}`;
  }

  /** Stops a store of the stack's for a (seeded) while under load, then starts it again. */
  async function restart(name: string, control: ((action: "stop" | "start") => Promise<void>) | undefined) {
    if (!control) return `skipped: ${name} was not started by \`bun run stack\``;
    await control("stop");
    const down = between(rng, ...profile.downMs.postgres);
    await Bun.sleep(down);
    await control("start");
    return `${name} down ${down} ms, back`;
  }

  return async function inject(fault: Fault): Promise<string> {
    switch (fault.kind) {
      case "kill":
        return killAndRestart(fault.role, fault.instance);
      case "ferretdb":
        return restart("FerretDB", deps.ferretdb);
      case "mariadb":
        return restart("MariaDB", deps.mariadb);
      case "scale-up":
        await pipeline.start("enrich#2");
        return "enrich#2 joined";
      case "scale-down": {
        await victim("enrich"); // a crash restart of enrich#2 may be under way
        if (!pipeline.instances("enrich").includes("enrich#2")) return "enrich#2 was not running";
        return `enrich#2 left (exit ${await pipeline.stop("enrich#2", "SIGTERM")})`;
      }
      case "broker":
        return broker(fault.signal, fault.alsoKill);
      case "postgres":
        return database(fault.alsoKill);
    }
  };
}
