/**
 * The one way tests, benchmarks and the fault run start a stage. In-process (`runStage` on a free port) where
 * that is faithful and cheap: an HTTP API under test, a stage whose crash is not the point. As its own process
 * (`bun run <stage>.ts`) where a crash must be real: SIGKILL, a restart, a profile of the very run that is
 * timed. Both give the same handle, so a caller switches by one option.
 */
import { closeSync, openSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { aggregate } from "../aggregate.ts";
import { capture } from "../capture.ts";
import { enrich } from "../enrich.ts";
import { ingest } from "../ingest.ts";
import { intervals } from "../intervals.ts";
import { persist } from "../persist.ts";
import { poll } from "../poll.ts";
import { parseConfig } from "../shared/config.ts";
import { fetchText } from "../shared/deadline.ts";
import { deleteNamespace, ensureTopics, type KafkaConnection, kafkaConnection } from "../shared/kafka.ts";
import { runStage, type Stage } from "../shared/runner.ts";
import { topicSpecs } from "../shared/topics.ts";
import { metricSum, scrape } from "./metrics.ts";
import { pollEvery } from "./poll.ts";
import { freePort } from "./ports.ts";

/** Every stage, by name; its script is `<name>.ts` at the repository root. */
export const STAGES = { ingest, poll, enrich, aggregate, intervals, persist, capture } satisfies Record<string, Stage>;

export type StageName = keyof typeof STAGES;

/** The consumer group `name` reads in under the settings `env` (this process's by default), if it consumes. */
export const groupOf = (name: StageName, env: Record<string, string | undefined> = process.env) =>
  STAGES[name].group?.(parseConfig(env));

const ROOT = join(import.meta.dir, "..");
const START_TIMEOUT_MS = 60_000;
/** Above the stages' SHUTDOWN_TIMEOUT_MS default (10 s): a clean stop always finishes first. */
const STOP_TIMEOUT_MS = 20_000;

export interface StartOptions {
  /** "process" for a real process that can be SIGKILLed; "in-process" (the default) runs it in this one. */
  mode?: "process" | "in-process";
  /** Settings over this process's environment. */
  env?: Record<string, string>;
  /** The port; a free one when not given. */
  port?: number;
  /** Process mode: extra `bun run` flags (e.g. `--cpu-prof-md`). */
  flags?: string[];
  /**
   * Process mode: where its output goes; a file path is appended to, "inherit" shares this process's, "pipe"
   * leaves it to the caller on `child.stdout` and `child.stderr`.
   */
  output?: string | "inherit" | "pipe";
  /** Wait until `/readyz` answers 200 (broker, and for persist the store, reachable) instead of `/healthz`. */
  waitReady?: boolean;
}

/** A started stage, whichever way it runs. */
export interface StageHandle {
  name: StageName;
  url: string;
  /** The process, in process mode. */
  child?: Subprocess;
  /** The status `/readyz` answers, 0 when nothing answers. */
  ready: () => Promise<number>;
  /** The `/metrics` text, or undefined when it does not answer in time. */
  metrics: () => Promise<string | undefined>;
  /** The sum of every sample of the metric `name` (0 when absent or unreachable). */
  metric: (name: string, where?: Record<string, string>) => Promise<number>;
  /** SIGTERM (a clean stop in its phases) or SIGKILL (a crash); resolves with the exit code or signal. */
  stop: (signal?: "SIGTERM" | "SIGKILL") => Promise<string>;
}

/** A stage started in process mode, whose process is always at hand (its pid for /proc, its exit). */
export interface ProcessHandle extends StageHandle {
  child: Subprocess;
}

/** Process-mode stages not stopped yet, so that Ctrl-C of a bench or the fault run stops them too. */
const live = new Set<Subprocess>();
/** Namespaces in use by {@link inNamespace}, deleted on Ctrl-C too. */
const namespaces = new Set<KafkaConnection>();
/** How long Ctrl-C waits for the stages to stop and the namespaces to go before it exits anyway. */
const SIGNAL_CLEANUP_MS = 15_000;
const onSignal = async (signal: NodeJS.Signals) => {
  const children = [...live];
  for (const child of children) child.kill("SIGTERM");
  // A namespace's topics go once no stage of ours reads or writes them any more.
  const cleanup = Promise.all(children.map((child) => child.exited)).then(() =>
    Promise.allSettled([...namespaces].map((kafka) => deleteNamespace(kafka))),
  );
  await Promise.race([cleanup, Bun.sleep(SIGNAL_CLEANUP_MS)]);
  process.exit(signal === "SIGINT" ? 130 : 143);
};
const onSignalOnce = (signal: NodeJS.Signals) => void onSignal(signal);
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, onSignalOnce);

/** For a caller that stops its stages itself on SIGINT and SIGTERM, in an order of its own (the supervisor). */
export function handleSignalsYourself(): void {
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.off(signal, onSignalOnce);
}

/**
 * Moves this process into the Kafka namespace `name` (e.g. "bench-enrich-m1x2"): sets KAFKA_NAMESPACE in its
 * environment, so that every stage started from now on (either mode) and every connection made from the
 * environment works in `<name>.<topic>` and `<name>.<group>`, and creates the pipeline's topics there. Returns
 * the namespace's connection. Ctrl-C deletes the namespace too; otherwise {@link leaveNamespace} does.
 */
export async function enterNamespace(name: string): Promise<KafkaConnection> {
  process.env.KAFKA_NAMESPACE = name;
  const env = parseConfig(process.env);
  const kafka = kafkaConnection(env);
  namespaces.add(kafka);
  try {
    await ensureTopics(kafka, topicSpecs(env.TOPIC_PARTITIONS));
  } catch (error) {
    await leaveNamespace(kafka).catch(() => {});
    throw error;
  }
  return kafka;
}

/** Deletes the namespace of `kafka` (its topics and groups) and takes this process out of it. */
export async function leaveNamespace(kafka: KafkaConnection): Promise<void> {
  delete process.env.KAFKA_NAMESPACE;
  await deleteNamespace(kafka);
  namespaces.delete(kafka);
}

/**
 * Runs `work` in the Kafka namespace `name` ({@link enterNamespace}), then deletes it, on failure too: the
 * pipeline's own topics and groups never see the run.
 *
 * @example
 * await inNamespace("bench-enrich-m1x2", async (kafka) => {
 *   const enrich = await startStage("enrich", { mode: "process" }); // reads bench-enrich-m1x2.locations.raw
 *   await enrich.stop();
 * });
 */
export async function inNamespace<T>(name: string, work: (kafka: KafkaConnection) => Promise<T>): Promise<T> {
  const kafka = await enterNamespace(name);
  try {
    return await work(kafka);
  } finally {
    await leaveNamespace(kafka);
  }
}

const get = async (url: string) => (await fetchText(url, {}, 2_000)).response;

/**
 * Starts the stage `name` and resolves once it answers.
 *
 * @example
 * const persist = await startStage("persist", { mode: "process", env: { BATCH_MAX_RECORDS: "500" } });
 * await persist.metric("rows_written_total");
 * await persist.stop("SIGKILL");
 */
export function startStage(name: StageName, options: StartOptions & { mode: "process" }): Promise<ProcessHandle>;
export function startStage(name: StageName, options?: StartOptions): Promise<StageHandle>;
export async function startStage(name: StageName, options: StartOptions = {}): Promise<StageHandle> {
  const port = options.port ?? freePort();
  const env = { LOG_LEVEL: process.env.LOG_LEVEL ?? "warn", ...options.env };
  let stop: StageHandle["stop"];
  let child: Subprocess | undefined;
  if (options.mode === "process") {
    const output = options.output ?? "inherit";
    const fd = output === "inherit" || output === "pipe" ? undefined : openSync(output, "a");
    const stream = fd ?? (output as "inherit" | "pipe");
    const spawned = Bun.spawn(["bun", "run", ...(options.flags ?? []), `${name}.ts`], {
      cwd: ROOT,
      env: { ...process.env, ...env, [STAGES[name].port]: String(port) },
      stdout: stream,
      stderr: stream,
    });
    if (fd !== undefined) closeSync(fd); // the child has its own copy
    child = spawned;
    live.add(spawned);
    stop = async (signal = "SIGTERM") => {
      live.delete(spawned);
      if (spawned.exitCode === null && spawned.signalCode === null) {
        spawned.kill(signal);
        const timer = setTimeout(() => spawned.kill("SIGKILL"), STOP_TIMEOUT_MS);
        await spawned.exited;
        clearTimeout(timer);
      }
      return String(spawned.signalCode ?? spawned.exitCode);
    };
  } else {
    const running = await runStage(STAGES[name], { port, env });
    stop = async () => {
      await running.stop();
      return "0";
    };
  }
  const url = `http://127.0.0.1:${port}`;
  const handle: StageHandle = {
    name,
    url,
    ...(child && { child }),
    ready: () =>
      get(`${url}/readyz`).then(
        (r) => r.status,
        () => 0,
      ),
    metrics: () => scrape(url),
    metric: async (metric, where) => metricSum((await scrape(url)) ?? "", metric, where),
    stop,
  };
  const path = options.waitReady ? "readyz" : "healthz";
  try {
    await pollEvery(
      `${name} to answer ${url}/${path}`,
      async () => {
        if (child && child.exitCode !== null)
          throw new Error(`${name} exited with ${child.exitCode} before it answered`);
        return get(`${url}/${path}`).then(
          (r) => r.ok || undefined,
          () => undefined,
        );
      },
      START_TIMEOUT_MS,
      50,
    );
  } catch (error) {
    await handle.stop("SIGKILL");
    throw error;
  }
  return handle;
}
