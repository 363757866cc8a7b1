/** A consumer group member that reads in batches and commits only when told to. */
import { once } from "node:events";
import { Consumer, type Message, MessagesStreamModes } from "@platformatic/kafka";

/** A consumed record, with the bytes exactly as they were produced. */
export interface InRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | undefined;
  value: Buffer;
  headers: Record<string, string>;
  timestamp: bigint;
  /** Commits this record's offset + 1 for the group (the library merges concurrent commits per partition). */
  commit: () => Promise<void>;
}

/** A partition position: the offset of the next record to read. */
export interface Position {
  topic: string;
  partition: number;
  offset: bigint;
}

export interface ConsumerOptions {
  brokers: string[];
  groupId: string;
  clientId: string;
  topics: string[];
  /** Start here instead of at the group's committed offsets (which fall back to the earliest record). */
  startAt?: Position[];
  /** Called every few seconds with each assigned partition's lag (latest offset minus committed offset). */
  onLag?: (lag: { topic: string; partition: number; lag: number }[]) => void;
}

const LAG_INTERVAL_MS = 5_000;

function toRecord(message: Message): InRecord {
  const headers: Record<string, string> = {};
  for (const [name, value] of message.headers) headers[name.toString()] = value.toString();
  return {
    topic: message.topic,
    partition: message.partition,
    offset: message.offset,
    key: message.key && message.key.length > 0 ? message.key : undefined,
    value: message.value ?? Buffer.alloc(0),
    headers,
    timestamp: message.timestamp,
    commit: () => message.commit() as Promise<void>,
  };
}

/** Joins `groupId` and reads `topics` with manual commits. Call `batches()` once to start reading. */
export function createConsumer(options: ConsumerOptions) {
  const consumer = new Consumer({
    clientId: options.clientId,
    groupId: options.groupId,
    bootstrapBrokers: options.brokers,
    autocommit: false,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    maxWaitTime: 200,
  });
  if (options.onLag) {
    const onLag = options.onLag;
    consumer.on("consumer:lag", (lag: Map<string, bigint[]>) => {
      // -1 marks a partition that is not assigned to this member.
      const assigned = [...lag].flatMap(([topic, lags]) =>
        lags.flatMap((value, partition) => (value < 0n ? [] : [{ topic, partition, lag: Number(value) }])),
      );
      onLag(assigned);
    });
    consumer.startLagMonitoring({ topics: options.topics }, LAG_INTERVAL_MS);
  }
  let stream: Awaited<ReturnType<typeof consumer.consume>> | undefined;

  return {
    /** Yields records as they arrive, at most `maxRecords` at a time, whatever is ready without waiting more. */
    async *batches(maxRecords = 5_000): AsyncGenerator<InRecord[]> {
      stream = await consumer.consume({
        topics: options.topics,
        ...(options.startAt
          ? { mode: MessagesStreamModes.MANUAL, offsets: options.startAt }
          : { mode: MessagesStreamModes.COMMITTED, fallbackMode: "earliest" }),
      });
      const ended = once(stream, "close").then(() => null);
      while (!stream.destroyed) {
        const batch: InRecord[] = [];
        while (batch.length < maxRecords) {
          const message: Message | null = stream.read();
          if (message === null) break;
          batch.push(toRecord(message));
        }
        if (batch.length > 0) yield batch;
        else await Promise.race([once(stream, "readable"), ended]);
      }
    },

    /** Commits, per partition, the offset after the last of `records`. */
    async commit(records: InRecord[]): Promise<void> {
      const last = new Map<string, InRecord>();
      for (const record of records) last.set(`${record.topic}:${record.partition}`, record);
      await Promise.all([...last.values()].map((record) => record.commit()));
    },

    /** Stops fetching until `resume`; records already read stay available. */
    pause: () => stream?.pause(),
    resume: () => stream?.resume(),

    /** Leaves the group, so its partitions move to the other members at once. */
    async close(): Promise<void> {
      consumer.stopLagMonitoring();
      await stream?.close();
      await consumer.close();
    },
  };
}

export type KafkaConsumer = ReturnType<typeof createConsumer>;
