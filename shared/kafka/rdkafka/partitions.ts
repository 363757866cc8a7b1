/**
 * rd_kafka_topic_partition_list_t to and from the port's topic-partitions, named as the stages name their topics
 * (the namespace added on the way in, taken off on the way out).
 */
import { CString, type Pointer, read, toBuffer } from "bun:ffi";
import { fromBroker, onBroker } from "../namespace.ts";
import type { KafkaConnection } from "../types.ts";
import { cstr, PARTITION_LIST, pointer, rdkafka, TOPIC_PARTITION } from "./ffi.ts";

export type TopicPartition = { topic: string; partition: number };

/** A list entry with its offset and its per-partition error code (0 for none). */
export type ListedPartition = TopicPartition & { offset: bigint; err: number };

/**
 * The entries of a list, each with its offset and error code.
 *
 * @example
 * const [first] = listedPartitions(kafka, list); // { topic: "locations.raw", partition: 0, offset: 42n, err: 0 }
 */
export function listedPartitions(kafka: KafkaConnection, list: Pointer | null): ListedPartition[] {
  if (!list) return [];
  const count = read.i32(list, PARTITION_LIST.cnt);
  const elems = read.ptr(list, PARTITION_LIST.elems) as Pointer;
  return Array.from({ length: count }, (_, i) => listedPartition(kafka, (elems + i * TOPIC_PARTITION.size) as Pointer));
}

/** One rd_kafka_topic_partition_t, read where it lies. */
export function listedPartition(kafka: KafkaConnection, element: Pointer): ListedPartition {
  return {
    topic: fromBroker(kafka, new CString(read.ptr(element, TOPIC_PARTITION.topic) as Pointer).toString()),
    partition: read.i32(element, TOPIC_PARTITION.partition),
    offset: read.i64(element, TOPIC_PARTITION.offset),
    err: read.i32(element, TOPIC_PARTITION.err),
  };
}

/**
 * The topic and partition of each entry of a list.
 *
 * @example
 * const revoked = partitionsOf(kafka, pointer(lib.rd_kafka_event_topic_partition_list(event)));
 */
export function partitionsOf(kafka: KafkaConnection, list: Pointer | null): TopicPartition[] {
  return listedPartitions(kafka, list).map(({ topic, partition }) => ({ topic, partition }));
}

/** A new list of `partitions`, each with its offset when it has one; the caller destroys it. */
function partitionList(kafka: KafkaConnection, partitions: (TopicPartition & { offset?: bigint })[]): Pointer {
  const lib = rdkafka();
  const list = pointer(lib.rd_kafka_topic_partition_list_new(Math.max(1, partitions.length)));
  if (!list) throw new Error("librdkafka could not allocate a partition list");
  for (const { topic, partition, offset } of partitions) {
    const element = pointer(lib.rd_kafka_topic_partition_list_add(list, cstr(onBroker(kafka, topic)), partition));
    if (element && offset !== undefined) toBuffer(element, TOPIC_PARTITION.offset, 8).writeBigInt64LE(offset);
  }
  return list;
}

/**
 * Runs `call` on a list of `partitions` and destroys the list.
 *
 * @example
 * withList(kafka, [{ topic: "locations.raw", partition: 0 }], (list) => lib.rd_kafka_pause_partitions(rk, list));
 */
export function withList<T>(
  kafka: KafkaConnection,
  partitions: (TopicPartition & { offset?: bigint })[],
  call: (list: Pointer) => T,
): T {
  const list = partitionList(kafka, partitions);
  try {
    return call(list);
  } finally {
    rdkafka().rd_kafka_topic_partition_list_destroy(list);
  }
}
