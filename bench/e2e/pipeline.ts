/**
 * The four stages as their own processes on free ports, as in production: started with LOG_LEVEL=warn, ready
 * once /readyz answers 200, stopped with SIGTERM (SIGKILL only if one hangs past its shutdown deadline).
 */
import type { Subprocess } from "bun";
import { pollEvery } from "../../tools/poll.ts";
import { freePort } from "../../tools/ports.ts";
import { ROOT, type StageTweaks } from "../stages.ts";
import { parseExposition, type Sample } from "./prom.ts";

/** The stages in pipeline order, with the variable that sets each one's HTTP port. */
export const STAGES = [
  { name: "ingest", script: "ingest.ts", portVariable: "INGEST_PORT" },
  { name: "enrich", script: "enrich.ts", portVariable: "ENRICH_PORT" },
  { name: "aggregate", script: "aggregate.ts", portVariable: "AGGREGATE_PORT" },
  { name: "persist", script: "persist.ts", portVariable: "PERSIST_PORT" },
] as const;

export type StageName = (typeof STAGES)[number]["name"];

/** A started stage. */
export interface Stage {
  name: StageName;
  /** http://127.0.0.1:<port>: the API for ingest, health and metrics for all. */
  url: string;
  child: Subprocess;
  /** The stage's /metrics, parsed. */
  scrape: () => Promise<Sample[]>;
}

const READY_TIMEOUT_MS = 60_000;
/** Above the stages' SHUTDOWN_TIMEOUT_MS default (10 s): a clean stop always finishes first. */
const STOP_TIMEOUT_MS = 15_000;

/** Stages this process started and has not stopped yet, so Ctrl-C or a SIGTERM of the bench stops them too. */
const live = new Set<Stage>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  // Prepended: bench/stages.ts (imported for its helpers) has a SIGINT handler of its own that exits at once.
  process.prependOnceListener(signal, () => {
    for (const stage of live) stage.child.kill("SIGTERM");
    process.exit(signal === "SIGINT" ? 130 : 143);
  });
}

const get = (url: string, timeoutMs = 2_000) => fetch(url, { signal: AbortSignal.timeout(timeoutMs) });

async function start(spec: (typeof STAGES)[number], logFile: number, tweaks: StageTweaks): Promise<Stage> {
  const port = freePort();
  const child = Bun.spawn(["bun", "run", ...tweaks.flags, spec.script], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "warn", ...tweaks.env, [spec.portVariable]: String(port) },
    stdout: logFile,
    stderr: logFile,
  });
  const url = `http://127.0.0.1:${port}`;
  const stage: Stage = {
    name: spec.name,
    url,
    child,
    // Scraped only at the ends of a window: prom-client's default heap metrics cost a stage real CPU per scrape.
    scrape: async () => parseExposition(await (await get(`${url}/metrics`, 10_000)).text()),
  };
  live.add(stage);
  return stage;
}

/**
 * Starts every stage and resolves once each answers /readyz with 200 (broker reachable, and for persist the
 * database too). If any fails to start, the ones that did are stopped again.
 */
export async function startPipeline(logFile: number, tweaks: StageTweaks): Promise<Stage[]> {
  const stages: Stage[] = [];
  try {
    for (const spec of STAGES) stages.push(await start(spec, logFile, tweaks));
    for (const stage of stages) {
      await pollEvery(
        `${stage.name} to answer ${stage.url}/readyz`,
        async () => {
          if (stage.child.exitCode !== null) throw new Error(`${stage.name} exited with code ${stage.child.exitCode}`);
          return get(`${stage.url}/readyz`).then(
            (r) => r.ok || undefined,
            () => undefined,
          );
        },
        READY_TIMEOUT_MS,
        100,
      );
    }
    return stages;
  } catch (error) {
    await stopPipeline(stages);
    throw error;
  }
}

/** SIGTERM to every stage, SIGKILL to one still running after STOP_TIMEOUT_MS; resolves when all have exited. */
export async function stopPipeline(stages: Stage[]): Promise<void> {
  await Promise.all(
    stages.map(async (stage) => {
      live.delete(stage);
      if (stage.child.exitCode !== null) return;
      stage.child.kill("SIGTERM");
      const timer = setTimeout(() => stage.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      await stage.child.exited;
      clearTimeout(timer);
    }),
  );
}

/** Throws if a stage has exited: a step's numbers mean nothing once part of the pipeline is gone. */
export function assertRunning(stages: Stage[]): void {
  const dead = stages.filter((stage) => stage.child.exitCode !== null);
  if (dead.length > 0)
    throw new Error(`stage exited: ${dead.map((s) => `${s.name} (${s.child.exitCode})`).join(", ")}`);
}
