/** Prometheus metrics: one registry per process, with the runtime's default metrics and a `service` label. */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export type { Registry };

/**
 * A registry for `service`, with process metrics (RSS, CPU, event-loop lag) already registered; `labels` are
 * added to every series (`process` when several processes serve one stage).
 */
export function createRegistry(service: string, labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service, ...labels });
  collectDefaultMetrics({ register: registry });
  // Under Bun these three walk the whole heap on every scrape: 100+ ms with a large heap, stalling the stage.
  for (const name of ["total", "used", "available"])
    registry.removeSingleMetric(`nodejs_heap_space_size_${name}_bytes`);
  return registry;
}

/** A counter registered in `registry`. */
export function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[] = []) {
  return new Counter({ name, help, labelNames, registers: [registry] });
}

/** A latency histogram in seconds, with buckets from 1 ms to 10 s. */
export function histogram<L extends string>(registry: Registry, name: string, help: string, labelNames: L[] = []) {
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  return new Histogram({ name, help, labelNames, buckets, registers: [registry] });
}

/** A gauge registered in `registry`. */
export function gauge<L extends string>(registry: Registry, name: string, help: string, labelNames: L[] = []) {
  return new Gauge({ name, help, labelNames, registers: [registry] });
}

/**
 * Counts `records` by topic in the counter `counterOf` picks for each topic: one increment per topic and batch,
 * since one per record costs about as much as a cheap transform.
 *
 * @example
 * countByTopic(batch, () => recordsIn);
 */
export function countByTopic(records: readonly { topic: string }[], counterOf: (topic: string) => Counter<"topic">) {
  const counts = new Map<string, number>();
  for (const { topic } of records) counts.set(topic, (counts.get(topic) ?? 0) + 1);
  for (const [topic, count] of counts) counterOf(topic).inc({ topic }, count);
}
