/** The port's {@link KafkaConsumer} on @platformatic/kafka. */
import { Consumer, type GroupPartitionsAssigner, type Message, MessagesStreamModes } from "@platformatic/kafka";
import { asAccessError, clientOptions } from "./connection.ts";
import { fromBroker, onBroker } from "./namespace.ts";
import type { ConsumerOptions, InRecord, KafkaConsumer, Position } from "./types.ts";

const LAG_INTERVAL_MS = 5_000;

function toRecord(message: Message, topic: string): InRecord {
  const headers: Record<string, string> = {};
  for (const [name, value] of message.headers) headers[name.toString()] = value.toString();
  return {
    topic,
    partition: message.partition,
    offset: message.offset,
    key: message.key && message.key.length > 0 ? message.key : undefined,
    value: message.value ?? Buffer.alloc(0),
    headers,
    timestamp: message.timestamp,
  };
}

/**
 * Gives every partition of the subscribed topics to the member with the lowest id and an empty assignment to
 * the others, which stay in the group as standbys. The group leader runs it, so all members agree.
 *
 * @example
 * new Consumer({ ..., partitionAssigner: allToOne });
 */
export const allToOne: GroupPartitionsAssigner = (_current, members, topics, metadata) => {
  const ids = [...members.keys()].sort();
  return ids.map((memberId, i) => ({
    memberId,
    assignments: new Map(
      i > 0
        ? []
        : [...topics].map((topic) => {
            const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
            return [topic, { topic, partitions: Array.from({ length: count }, (_, p) => p) }];
          }),
    ),
  }));
};

/**
 * Joins `groupId` and reads `topics` with manual commits. Call `batches()` once to start reading.
 *
 * @example
 * const consumer = createConsumer({ kafka, groupId: "enrich", clientId: "enrich-1", topics: ["locations.raw"] });
 * for await (const batch of consumer.batches()) await consumer.commit(nextPositions(batch));
 */
export function createConsumer(options: ConsumerOptions): KafkaConsumer {
  const { kafka } = options;
  const topics = options.topics.map((topic) => onBroker(kafka, topic));
  /** The stages' name of each subscribed topic, by its name on the broker. */
  const topicOf = new Map(topics.map((topic, i) => [topic, options.topics[i] as string]));
  const consumer = new Consumer({
    clientId: options.clientId,
    groupId: onBroker(kafka, options.groupId),
    ...clientOptions(options.kafka),
    autocommit: false,
    sessionTimeout: 6_000, // the broker's minimum: a killed member's partitions move on quickly
    heartbeatInterval: 1_000,
    maxWaitTime: 200,
    // The client's defaults (50 MB per fetch, 1,024 buffered records) cost hundreds of MB of RSS per stage.
    maxBytes: 4 * 1024 * 1024,
    maxBytesPerPartition: 1024 * 1024,
    highWaterMark: 256,
    ...(options.exclusive && { partitionAssigner: allToOne }),
  });
  if (options.onAssign) {
    const onAssign = options.onAssign;
    consumer.on("consumer:group:join", ({ assignments }) => {
      onAssign(
        (assignments ?? []).flatMap(({ topic, partitions }) =>
          partitions.map((partition) => ({ topic: fromBroker(kafka, topic), partition })),
        ),
      );
    });
  }
  if (options.onLag) {
    const onLag = options.onLag;
    consumer.on("consumer:lag", (lag: Map<string, bigint[]>) => {
      // -1 marks a partition that is not assigned to this member.
      const assigned = [...lag].flatMap(([topic, lags]) =>
        lags.flatMap((value, partition) =>
          value < 0n ? [] : [{ topic: fromBroker(kafka, topic), partition, lag: Number(value) }],
        ),
      );
      onLag(assigned);
    });
    consumer.startLagMonitoring({ topics }, LAG_INTERVAL_MS);
  }
  let stream: Awaited<ReturnType<typeof consumer.consume>> | undefined;
  // Paused by the stage (a failing batch), as opposed to paused because the queue is full.
  let held = false;

  return {
    // The stream runs in flowing mode (the client's fast path) and is paused while two batches are queued.
    async *batches(maxRecords = 5_000): AsyncGenerator<InRecord[]> {
      const messages = await consumer
        .consume({
          topics,
          ...(options.startAt
            ? {
                mode: MessagesStreamModes.MANUAL,
                offsets: options.startAt.map((position) => ({ ...position, topic: onBroker(kafka, position.topic) })),
              }
            : { mode: MessagesStreamModes.COMMITTED, fallbackMode: "earliest" }),
        })
        .catch((error: unknown) => {
          throw asAccessError(error, options.kafka);
        });
      stream = messages;
      const queue: InRecord[] = [];
      let failure: Error | undefined;
      let wake: (() => void) | undefined;
      const notify = () => wake?.();
      messages.on("data", (message: Message) => {
        queue.push(toRecord(message, topicOf.get(message.topic) ?? message.topic));
        if (queue.length >= 2 * maxRecords) messages.pause();
        notify();
      });
      messages.on("error", (error: Error) => {
        failure = error;
        notify();
      });
      messages.on("close", notify);

      for (;;) {
        if (queue.length > 0) {
          const batch = queue.splice(0, maxRecords);
          if (!held && messages.isPaused() && queue.length < maxRecords) messages.resume();
          yield batch;
          continue;
        }
        if (failure) throw failure;
        if (messages.destroyed) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },

    async commit(positions: Position[]): Promise<void> {
      if (positions.length === 0) return;
      // -1: no leader epoch known for a position that is not a fetched record's.
      const offsets = positions.map((position) => ({
        ...position,
        topic: onBroker(kafka, position.topic),
        leaderEpoch: -1,
      }));
      await consumer.commit({ offsets });
    },

    pause() {
      held = true;
      stream?.pause();
    },
    resume() {
      held = false;
      stream?.resume();
    },

    async close(): Promise<void> {
      consumer.stopLagMonitoring();
      await stream?.close();
      await consumer.close();
    },
  };
}
