/**
 * Several processes of one stage on one port. The primary forks the workers and does nothing else: each worker
 * runs the whole stage (its own producer, its own shutdown phases) and serves the same port with SO_REUSEPORT, so
 * Linux spreads the connections over them. A scrape of `/metrics` answers for every process whichever of them
 * takes it: the worker asks the primary, which gathers every worker's registry with prom-client's
 * AggregatorRegistry. Each worker's series carry a `process` label (1..N), so nothing is summed behind the
 * reader's back and `sum without (process)` gives the stage's totals.
 */
import cluster from "node:cluster";
import { AggregatorRegistry, type Registry } from "prom-client";
import type { Logger } from "./log.ts";

const METRICS_REQUEST = "pipeline:metrics-request";
const METRICS_RESPONSE = "pipeline:metrics-response";

interface MetricsResponse {
  type: typeof METRICS_RESPONSE;
  id: number;
  text?: string;
  error?: string;
}

/** This process's number among the workers (1..N), or undefined when it is not a worker. */
export const workerNumber = (): number | undefined => (cluster.isWorker ? cluster.worker?.id : undefined);

/**
 * Forks `count` workers of this script and supervises them: SIGTERM or SIGINT stops them all (each runs its own
 * shutdown phases); a worker that exits on its own, a failed start included, stops the others, and the primary
 * exits 1 so that whoever runs it restarts the whole group. Exits 0 once every worker stopped cleanly (or, still
 * starting, was ended by the signal: it had nothing to finish or flush yet).
 */
export function superviseWorkers(count: number, log: Logger): void {
  const aggregator = new AggregatorRegistry();
  cluster.on("message", (worker, message: { type?: string; id?: number }) => {
    if (message?.type !== METRICS_REQUEST) return;
    const reply = (fields: Partial<MetricsResponse>) =>
      worker.send({ type: METRICS_RESPONSE, id: message.id, ...fields });
    aggregator.clusterMetrics().then(
      (text) => reply({ text }),
      (error: unknown) => reply({ error: error instanceof Error ? error.message : String(error) }),
    );
  });

  let stopping = false;
  let failed = false;
  let running = count;
  const stopAll = (reason: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ reason, processes: running }, "stopping every process");
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill("SIGTERM");
  };
  cluster.on("exit", (worker, code, signal) => {
    running--;
    // Killed by our SIGTERM: it had not started yet (a started process handles the signal and exits 0).
    const stopped = stopping && (code === 0 || signal === "SIGTERM");
    if (!stopped) failed = true;
    if (!stopping) {
      log.error({ pid: worker.process.pid, code, signal }, "a process exited on its own; stopping the others");
      stopAll("a process exited");
    }
    if (running === 0) process.exit(failed ? 1 : 0);
  });
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.once(signal, () => stopAll(signal));
  for (let i = 0; i < count; i++) cluster.fork();
  log.info({ processes: count }, "started the processes");
}

/**
 * In a worker: answers the primary's requests for `registry`, and returns the exposition of every worker's
 * metrics, gathered by the primary (which gives up after prom-client's 5 s and says so).
 */
export function clusterExposition(registry: Registry): () => Promise<string> {
  // prom-client installs the listener that answers the primary when an AggregatorRegistry is constructed.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  const pending = new Map<number, (response: MetricsResponse) => void>();
  let next = 0;
  process.on("message", (message: MetricsResponse) => {
    if (message?.type !== METRICS_RESPONSE) return;
    pending.get(message.id)?.(message);
    pending.delete(message.id);
  });
  return () =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, ({ text, error }) => (error === undefined ? resolve(text ?? "") : reject(new Error(error))));
      process.send?.({ type: METRICS_REQUEST, id });
    });
}
