/**
 * A connection's namespace: with one, every topic and consumer group the stages name lives on the broker as
 * `<namespace>.<name>`, and the names come back without it. Stages, their stores and their headers see only the
 * pipeline's own names, so a run in a namespace (a benchmark's) shares the broker with the pipeline and touches
 * none of its topics or groups.
 */
import type { KafkaConnection } from "./types.ts";

/**
 * `name` (a topic or a group) as the broker knows it under `kafka`'s namespace.
 *
 * @example
 * onBroker({ brokers, namespace: "bench-x" }, "locations.raw"); // "bench-x.locations.raw"
 */
export const onBroker = (kafka: KafkaConnection, name: string): string =>
  kafka.namespace ? `${kafka.namespace}.${name}` : name;

/**
 * A broker's topic or group name as the stages name it: without the namespace of `kafka`. A name outside the
 * namespace is returned as it is.
 *
 * @example
 * fromBroker({ brokers, namespace: "bench-x" }, "bench-x.locations.raw"); // "locations.raw"
 */
export function fromBroker(kafka: KafkaConnection, name: string): string {
  const prefix = kafka.namespace ? `${kafka.namespace}.` : "";
  return prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name;
}
