/** A consumer group member that reads in batches and commits only when told to. */
import { Consumer, type Message, MessagesStreamModes } from "@platformatic/kafka";
import { within } from "../deadline.ts";
import { endOffsets } from "./admin.ts";

/** A consumed record, with the bytes exactly as they were produced. */
export interface InRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | undefined;
  value: Buffer;
  headers: Record<string, string>;
  timestamp: bigint;
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
  /** Called with this member's partitions after every rebalance. */
  onAssign?: (partitions: { topic: string; partition: number }[]) => void;
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
  };
}

/** Per partition of `records`, the position after its last record: what a commit of them stores. */
export function nextPositions(records: InRecord[]): Position[] {
  const next = new Map<string, Position>();
  for (const { topic, partition, offset } of records)
    next.set(`${topic}:${partition}`, { topic, partition, offset: offset + 1n });
  return [...next.values()];
}

/** Joins `groupId` and reads `topics` with manual commits. Call `batches()` once to start reading. */
export function createConsumer(options: ConsumerOptions) {
  const consumer = new Consumer({
    clientId: options.clientId,
    groupId: options.groupId,
    bootstrapBrokers: options.brokers,
    autocommit: false,
    sessionTimeout: 6_000, // the broker's minimum: a killed member's partitions move on quickly
    heartbeatInterval: 1_000,
    maxWaitTime: 200,
    // The client's defaults (50 MB per fetch, 1,024 buffered records) cost hundreds of MB of RSS per stage.
    maxBytes: 4 * 1024 * 1024,
    maxBytesPerPartition: 1024 * 1024,
    highWaterMark: 256,
  });
  if (options.onAssign) {
    const onAssign = options.onAssign;
    consumer.on("consumer:group:join", ({ assignments }) => {
      onAssign(
        (assignments ?? []).flatMap(({ topic, partitions }) => partitions.map((partition) => ({ topic, partition }))),
      );
    });
  }
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
  // Paused by the stage (a failing batch), as opposed to paused because the queue is full.
  let held = false;

  return {
    /**
     * Yields records as they arrive, at most `maxRecords` at a time: whatever is ready, without waiting for more.
     * The stream runs in flowing mode (the client's fast path) and is paused while two batches are queued.
     */
    async *batches(maxRecords = 5_000): AsyncGenerator<InRecord[]> {
      const messages = await consumer.consume({
        topics: options.topics,
        ...(options.startAt
          ? { mode: MessagesStreamModes.MANUAL, offsets: options.startAt }
          : { mode: MessagesStreamModes.COMMITTED, fallbackMode: "earliest" }),
      });
      stream = messages;
      const queue: InRecord[] = [];
      let failure: Error | undefined;
      let wake: (() => void) | undefined;
      const notify = () => wake?.();
      messages.on("data", (message: Message) => {
        queue.push(toRecord(message));
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

    /** Commits `positions` (the next offset to read, per partition) for the group. Callers commit one at a time. */
    async commit(positions: Position[]): Promise<void> {
      if (positions.length === 0) return;
      // -1: no leader epoch known for a position that is not a fetched record's.
      await consumer.commit({ offsets: positions.map((position) => ({ ...position, leaderEpoch: -1 })) });
    },

    /** Stops fetching until `resume`; records already read stay available. */
    pause() {
      held = true;
      stream?.pause();
    },
    resume() {
      held = false;
      stream?.resume();
    },

    /** Leaves the group, so its partitions move to the other members at once. */
    async close(): Promise<void> {
      consumer.stopLagMonitoring();
      await stream?.close();
      await consumer.close();
    },
  };
}

export type KafkaConsumer = ReturnType<typeof createConsumer>;

/**
 * The last record of each partition of `topic` that has one, read with a throwaway group. Used to rebuild state
 * from a stage's own output, so a restart does not depend on process memory.
 */
export async function lastRecords(
  brokers: string[],
  topic: string,
  timeoutMs = 30_000,
): Promise<Map<number, InRecord>> {
  const ends = await endOffsets(brokers, topic);
  const wanted = new Set(ends.filter((end) => end.offset > 0n).map((end) => end.partition));
  const last = new Map<number, InRecord>();
  if (wanted.size === 0) return last;
  const reader = createConsumer({
    brokers,
    groupId: `last-records-${crypto.randomUUID()}`,
    clientId: "last-records",
    topics: [topic],
    startAt: ends.map((end) => ({ ...end, offset: end.offset > 0n ? end.offset - 1n : 0n })),
  });
  const reading = (async () => {
    for await (const batch of reader.batches()) {
      for (const record of batch) if (wanted.has(record.partition)) last.set(record.partition, record);
      if (last.size === wanted.size) return;
    }
  })();
  try {
    const done = await within(
      reading.then(() => true),
      timeoutMs,
      false,
    );
    if (!done) throw new Error(`could not read the last records of ${topic} within ${timeoutMs} ms`);
    return last;
  } finally {
    await reader.close();
  }
}
