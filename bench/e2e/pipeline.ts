/**
 * The stages an HTTP event travels through as their own processes (tools/harness.ts), as in production: ready
 * once /readyz answers 200, stopped with SIGTERM (SIGKILL only if one hangs past its shutdown deadline).
 */
import { type ProcessHandle, type StageName, startStage } from "../../tools/harness.ts";
import type { StageTweaks } from "../stages.ts";

/**
 * From the HTTP API to PostgreSQL. The other sources (poll, capture) need an API or a database of their own to
 * read, and carry nothing of the bench's traffic.
 */
export const PIPELINE: readonly StageName[] = ["ingest", "enrich", "aggregate", "intervals", "persist"];

/**
 * Starts every stage of {@link PIPELINE} side by side, with `tweaks` and their output appended to `output`, and resolves once each
 * answers /readyz with 200 (broker reachable, and for persist the database too). If any fails to start, the
 * ones that did are stopped again.
 */
export async function startPipeline(output: string, tweaks: StageTweaks): Promise<ProcessHandle[]> {
  const started = await Promise.allSettled(
    PIPELINE.map((name) => startStage(name, { mode: "process", waitReady: true, output, ...tweaks })),
  );
  const stages = started.flatMap((result) => (result.status === "fulfilled" ? [result.value] : []));
  const failed = started.find((result) => result.status === "rejected");
  if (failed) {
    await stopPipeline(stages);
    throw failed.reason;
  }
  return stages;
}

/** Stops every stage; resolves when all have exited. */
export async function stopPipeline(stages: ProcessHandle[]): Promise<void> {
  await Promise.all(stages.map((stage) => stage.stop()));
}

/** Throws if a stage has exited: a step's numbers mean nothing once part of the pipeline is gone. */
export function assertRunning(stages: ProcessHandle[]): void {
  const dead = stages.filter((stage) => stage.child.exitCode !== null);
  if (dead.length > 0)
    throw new Error(`stage exited: ${dead.map((s) => `${s.name} (${s.child.exitCode})`).join(", ")}`);
}
