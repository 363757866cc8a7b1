/**
 * Graceful shutdown. On SIGTERM or SIGINT the steps run in the order they were registered (stop intake first,
 * then flush, then close pools), each awaited, all under one deadline after which the process exits anyway.
 */
import type { Logger } from "./log.ts";

type Step = { name: string; run: () => Promise<unknown> | unknown };

/** Registers shutdown steps and the signal handlers that run them. */
export function createLifecycle(log: Logger, timeoutMs: number) {
  const steps: Step[] = [];
  let stopping: Promise<void> | undefined;
  let announce: () => void = () => {};
  const stopRequested = new Promise<void>((resolve) => {
    announce = resolve;
  });

  async function runSteps() {
    for (const step of steps) {
      try {
        await step.run();
        log.debug({ step: step.name }, "shutdown step done");
      } catch (error) {
        log.error({ err: error, step: step.name }, "shutdown step failed");
      }
    }
  }

  /** Runs every step once; later calls return the same promise. */
  function shutdown(reason: string): Promise<void> {
    stopping ??= (async () => {
      log.info({ reason }, "shutting down");
      announce();
      const deadline = setTimeout(() => {
        log.error({ timeoutMs }, "shutdown deadline passed, exiting");
        process.exit(1);
      }, timeoutMs);
      await runSteps();
      clearTimeout(deadline);
      log.info("stopped");
    })();
    return stopping;
  }

  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () => shutdown(signal).then(() => process.exit(0)));
  }

  return {
    /** Adds a step; steps run in the order they were added. */
    onShutdown(name: string, run: Step["run"]) {
      steps.push({ name, run });
    },
    shutdown,
    get stopping() {
      return stopping !== undefined;
    },
    /** Resolves when shutdown begins, to cut waits such as a retry backoff short. */
    stopRequested,
  };
}

export type Lifecycle = ReturnType<typeof createLifecycle>;
