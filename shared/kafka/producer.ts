/** The port's {@link KafkaProducer} on @platformatic/kafka, with concurrent sends coalesced into shared produce calls. */
import { ProduceAcks, Producer } from "@platformatic/kafka";
import { answers } from "./admin.ts";
import { createCoalescer } from "./coalesce.ts";
import { asAccessError, clientOptions } from "./connection.ts";
import { onBroker } from "./namespace.ts";
import { keyHash } from "./partition.ts";
import type { Delivery, KafkaProducer, OutRecord, ProducerOptions } from "./types.ts";

/** Largest produce call, kept well under the broker's 1 MiB default so one partition's batch always fits. */
const MAX_CALL_BYTES = 512 * 1024;

/**
 * An idempotent producer (acks=all). Concurrent `send` calls are coalesced into shared produce calls; each call
 * resolves with one {@link Delivery} per record once the broker has acknowledged all of them.
 *
 * @example
 * const producer = createProducer({ kafka, clientId: "ingest" });
 * const [delivery] = await producer.send([{ topic: "logins.raw", key: "user-1", value: "{}" }]);
 */
export function createProducer(options: ProducerOptions): KafkaProducer {
  const producer = new Producer({
    clientId: options.clientId,
    ...clientOptions(options.kafka),
    idempotent: true,
    acks: ProduceAcks.ALL,
    timeout: options.timeoutMs ?? 5000,
    connectTimeout: options.timeoutMs ?? 5000,
    retries: 2,
    retryDelay: 250,
  });

  async function produce(records: OutRecord[]): Promise<Delivery[]> {
    const messages = records.map((record) => {
      const key = record.key === undefined ? undefined : Buffer.from(record.key);
      // The client takes the partition modulo the topic's partition count, so the key's hash is enough here.
      const partition = record.partition ?? (key ? keyHash(key) : 0);
      const headers = record.headers && toBufferMap(record.headers);
      const value = record.value === null ? undefined : Buffer.from(record.value); // no value: a tombstone
      return { topic: onBroker(options.kafka, record.topic), key, partition, value, ...(headers && { headers }) };
    });
    const result = await producer.send({ messages }).catch((error: unknown) => {
      throw asAccessError(error, options.kafka);
    });
    // The broker answers with one base offset per partition; records of a partition follow it in send order.
    const next = new Map<string, bigint>();
    for (const { topic, partition, offset } of result.offsets ?? []) next.set(`${topic}:${partition}`, offset);
    return messages.map((message, i) => {
      const count = producer.currentMetadata?.topics.get(message.topic)?.partitionsCount ?? 1;
      const partition = message.partition % count;
      const slot = `${message.topic}:${partition}`;
      const offset = next.get(slot) ?? -1n;
      next.set(slot, offset + 1n);
      return { topic: (records[i] as OutRecord).topic, partition, offset };
    });
  }

  const coalescer = createCoalescer<OutRecord, Delivery>({
    flush: produce,
    sizeOf: (record) => (record.key?.length ?? 0) + (record.value?.length ?? 0) + 64,
    maxItems: 20_000,
    maxBytes: MAX_CALL_BYTES,
    maxInFlight: 4,
  });

  return {
    send: coalescer.submit,
    ping: (timeoutMs = 1000) => answers(producer, timeoutMs),
    async close(): Promise<void> {
      await coalescer.drained();
      await producer.close();
    },
  };
}

function toBufferMap(headers: Record<string, string>): Map<Buffer, Buffer> {
  return new Map(Object.entries(headers).map(([name, value]) => [Buffer.from(name), Buffer.from(value)]));
}
