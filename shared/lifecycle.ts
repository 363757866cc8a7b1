/**
 * Graceful shutdown in fixed phases, the same for every stage whatever order its parts were built in: intake
 * stops before the last batch is finished, the producer is flushed before the pools it fed from close, and the
 * health server answers (not ready) until the end. Steps within a phase run in the order they were added, all
 * under one deadline after which the process exits anyway.
 */
import type { Logger } from "./log.ts";

/** The shutdown phases, in the order they run. */
export const PHASES = [
  "stop intake",
  "finish and commit the current batch",
  "flush the producer",
  "close sinks and pools",
  "stop the health server",
] as const;

export type Phase = (typeof PHASES)[number];

type Step = { phase: Phase; name: string; run: () => Promise<unknown> | unknown };

/**
 * Shutdown steps of one stage.
 *
 * @example
 * const lifecycle = createLifecycle(log, 10_000);
 * lifecycle.onShutdown("close sinks and pools", "close the database pool", () => sql.end());
 * lifecycle.onShutdown("stop intake", "stop the HTTP server", () => server.stop());
 * await lifecycle.shutdown("SIGTERM"); // the HTTP server stops first, then the pool closes
 */
export function createLifecycle(log: Logger, timeoutMs: number) {
  const steps: Step[] = [];
  let stopping: Promise<void> | undefined;
  let announce: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => {
    announce = resolve;
  });

  async function runSteps() {
    for (const phase of PHASES) {
      for (const step of steps.filter((s) => s.phase === phase)) {
        try {
          await step.run();
          log.debug({ phase, step: step.name }, "shutdown step done");
        } catch (error) {
          log.error({ err: error, phase, step: step.name }, "shutdown step failed");
        }
      }
    }
  }

  return {
    /** Adds a step to `phase`. */
    onShutdown(phase: Phase, name: string, run: Step["run"]) {
      steps.push({ phase, name, run });
    },

    /**
     * Runs every step once, phase by phase; later calls return the same promise. Past the deadline the steps
     * still running are abandoned and the promise rejects, so a caller that owns the process can exit.
     */
    shutdown(reason: string): Promise<void> {
      stopping ??= (async () => {
        log.info({ reason }, "shutting down");
        announce();
        let timer: Timer | undefined;
        const deadline = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`shutdown took longer than ${timeoutMs} ms`)), timeoutMs);
        });
        try {
          await Promise.race([runSteps(), deadline]);
        } finally {
          clearTimeout(timer);
        }
        log.info("stopped");
      })();
      return stopping;
    },

    get stopping() {
      return stopping !== undefined;
    },

    /** Resolves when shutdown begins, to cut waits such as a retry backoff short. */
    stopRequested,
  };
}

export type Lifecycle = ReturnType<typeof createLifecycle>;
