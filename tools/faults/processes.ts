/**
 * The pipeline's stages as separate processes (`bun run <stage>.ts`), as in production, so that a fault run can
 * SIGKILL them. Each lifetime of a stage logs to its own file, which is the evidence when something goes wrong.
 */
import { closeSync, openSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { pollEvery } from "../poll.ts";

const ROOT = join(import.meta.dir, "..", "..");
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

export { freePort } from "../ports.ts";

/** One lifetime of one instance of a stage. */
export interface StageProcess {
  /** e.g. "enrich#2". */
  instance: string;
  /** 1 for the first start of the instance, +1 for each restart. */
  lifetime: number;
  url: string;
  logPath: string;
  child: Subprocess;
  /** True once this harness has signalled it, so its exit is not a crash. */
  signalled: boolean;
}

export interface StageSpec {
  /** The stage script at the repository root, e.g. "enrich.ts". */
  script: string;
  instance: string;
  port: number;
  env: Record<string, string>;
  logDir: string;
}

/** Starts one lifetime of `spec` and waits until it answers /healthz. */
export async function startStage(spec: StageSpec, lifetime: number): Promise<StageProcess> {
  const logPath = join(spec.logDir, `${spec.instance.replace("#", "-")}.${lifetime}.log`);
  const fd = openSync(logPath, "a");
  const child = Bun.spawn(["bun", "run", spec.script], {
    cwd: ROOT,
    env: { ...process.env, ...spec.env },
    stdout: fd,
    stderr: fd,
  });
  closeSync(fd); // the child has its own copy
  const url = `http://127.0.0.1:${spec.port}`;
  await pollEvery(
    `${spec.instance} to answer on ${spec.port}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`${spec.instance} exited with ${child.exitCode}; see ${logPath}`);
      return fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) }).then(
        (r) => (r.ok ? true : undefined),
        () => undefined,
      );
    },
    START_TIMEOUT_MS,
    100,
  );
  return { instance: spec.instance, lifetime, url, logPath, child, signalled: false };
}

/** Sends `signal` and waits for the exit (SIGKILL after a deadline); resolves with the exit code or signal. */
export async function stopStage(stage: StageProcess, signal: "SIGTERM" | "SIGKILL"): Promise<string> {
  stage.signalled = true;
  stage.child.kill(signal);
  const timer = setTimeout(() => stage.child.kill("SIGKILL"), STOP_TIMEOUT_MS);
  await stage.child.exited;
  clearTimeout(timer);
  return String(stage.child.signalCode ?? stage.child.exitCode);
}

/** The stage's /metrics text, or undefined when it does not answer in time. */
export async function scrape(stage: StageProcess): Promise<string | undefined> {
  try {
    const response = await fetch(`${stage.url}/metrics`, { signal: AbortSignal.timeout(3_000) });
    return response.ok ? await response.text() : undefined;
  } catch {
    return undefined;
  }
}

/** The HTTP status of the stage's /readyz, 0 when it does not answer. */
export function readiness(stage: StageProcess): Promise<number> {
  return fetch(`${stage.url}/readyz`, { signal: AbortSignal.timeout(2_000) }).then(
    (r) => r.status,
    () => 0,
  );
}

/** The sum of every sample of the metric `name` in a Prometheus exposition (0 when absent). */
export function metricSum(exposition: string, name: string): number {
  let sum = 0;
  for (const line of exposition.split("\n")) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(" ")));
  }
  return sum;
}

/** The last fatal or error line of a stage's JSON log, shortened to its message and error: why it exited. */
export function lastError(path: string): string | undefined {
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
