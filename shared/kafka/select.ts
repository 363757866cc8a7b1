/**
 * Which client library carries the records: `KAFKA_CLIENT` picks @platformatic/kafka or librdkafka (through
 * bun:ffi) for every producer and consumer of the process. Both implement the same port, so nothing else changes.
 * @platformatic/kafka's clients are loaded on first use: a process on librdkafka never pays for their modules.
 */
import { config, type KafkaClientName } from "../config.ts";
import { createRdConsumer } from "./rdkafka/consumer.ts";
import { createRdProducer } from "./rdkafka/producer.ts";
import type { ConsumerOptions, KafkaConsumer, KafkaProducer, ProducerOptions } from "./types.ts";

/** One implementation of the port's clients. */
export interface KafkaClient {
  createConsumer(options: ConsumerOptions): KafkaConsumer;
  createProducer(options: ProducerOptions): KafkaProducer;
}

// Synchronous loads, because creating a client is: the modules hold no top-level await.
const platformaticConsumer = (options: ConsumerOptions): KafkaConsumer =>
  (require("./consumer.ts") as typeof import("./consumer.ts")).createConsumer(options);
const platformaticProducer = (options: ProducerOptions): KafkaProducer =>
  (require("./producer.ts") as typeof import("./producer.ts")).createProducer(options);

const CLIENTS: Record<KafkaClientName, KafkaClient> = {
  platformatic: { createConsumer: platformaticConsumer, createProducer: platformaticProducer },
  librdkafka: { createConsumer: createRdConsumer, createProducer: createRdProducer },
};

/**
 * The clients of `name`, by default the one `KAFKA_CLIENT` selects: a test that compares the two names it.
 *
 * @example
 * const producer = kafkaClient("librdkafka").createProducer({ kafka, clientId: "bench" });
 */
export function kafkaClient(name: KafkaClientName = config().KAFKA_CLIENT): KafkaClient {
  return CLIENTS[name];
}

/**
 * A consumer of the selected client (see {@link ConsumerOptions}).
 *
 * @example
 * const consumer = createConsumer({ kafka, groupId: "enrich", clientId: "enrich-1", topics: ["locations.raw"] });
 */
export const createConsumer = (options: ConsumerOptions): KafkaConsumer => kafkaClient().createConsumer(options);

/**
 * A producer of the selected client (see {@link ProducerOptions}).
 *
 * @example
 * const producer = createProducer({ kafka, clientId: "ingest" });
 */
export const createProducer = (options: ProducerOptions): KafkaProducer => kafkaClient().createProducer(options);
