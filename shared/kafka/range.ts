/**
 * Reading a stretch of a topic and stopping: from given positions up to end positions, or until the records read
 * satisfy a condition, all under one deadline. It uses only what the port offers (a consumer and end offsets), so
 * it carries over to another client unchanged. Each read joins a throwaway group of its own that never commits,
 * so it disturbs no other reader.
 */
import { endOffsets } from "./admin.ts";
import { RangeProgress } from "./positions.ts";
import { createConsumer } from "./select.ts";
import type { InRecord, KafkaConnection, KafkaConsumer, Position } from "./types.ts";

interface RangeBase {
  kafka: KafkaConnection;
  topic: string;
  /** Where each partition's range starts (an {@link endOffsets} snapshot, say); a partition left out starts at 0. */
  from: Position[];
  /** Deadline for the whole read, looking up the partitions and joining the throwaway group included. */
  timeoutMs: number;
}

/**
 * Where each partition's range ends (exclusive): these positions, where a partition left out is not read, or
 * "end": the topic's end offsets when the read starts.
 */
type RangeEnd = Position[] | "end";

/** Stops a read once it holds for the records read so far; checked after each batch, so a few more may follow. */
type RangeDone = (records: InRecord[]) => boolean;

/** A range with an end, a condition, or both (whichever comes first ends the read). */
export type ReadRangeOptions = RangeBase &
  ({ until: RangeEnd; done?: RangeDone } | { until?: undefined; done: RangeDone });

export interface ScanRangeOptions extends RangeBase {
  until: RangeEnd;
  /** Sees each record of the range once, each partition's in offset order; the reader keeps none of them. */
  visit: (record: InRecord) => void;
}

/** A range read that ran past its deadline; the message names the topic and how far each partition got. */
export class RangeTimeoutError extends Error {
  override name = "RangeTimeoutError";
}

/**
 * The records of `topic` in a range, each partition's in offset order: from `from` up to `until`, or until `done`
 * holds. Throws a {@link RangeTimeoutError} after `timeoutMs`.
 *
 * @example
 * const before = await endOffsets(kafka, "logins.raw");
 * // ... produce ...
 * const all = await readRange({ kafka, topic: "logins.raw", from: before, until: "end", timeoutMs: 10_000 });
 * const three = await readRange({ kafka, topic, from: before, done: (r) => r.length >= 3, timeoutMs: 10_000 });
 */
export async function readRange(options: ReadRangeOptions): Promise<InRecord[]> {
  const records: InRecord[] = [];
  await scan(options, (batch) => {
    for (const record of batch) records.push(record);
    return options.done?.(records) ?? false;
  });
  return records;
}

/**
 * Calls `visit` on every record of `topic` from `from` up to `until`, keeping none, for ranges too large to hold.
 * Returns how many records it visited; throws a {@link RangeTimeoutError} after `timeoutMs`.
 *
 * @example
 * let copies = 0;
 * await scanRange({ kafka, topic, from: before, until: "end", timeoutMs: 60_000, visit: () => copies++ });
 */
export function scanRange(options: ScanRangeOptions): Promise<number> {
  return scan(options, (batch) => {
    for (const record of batch) options.visit(record);
    return false;
  });
}

/**
 * The last record of each partition of `topic` that has one, by partition. Used to rebuild state from a stage's
 * own output, so a restart does not depend on process memory.
 *
 * @example
 * const emitted = await lastRecords(kafka, "logins.stats"); // Map { 0 => InRecord, 3 => InRecord }
 */
export async function lastRecords(
  kafka: KafkaConnection,
  topic: string,
  timeoutMs = 30_000,
): Promise<Map<number, InRecord>> {
  const ends = await endOffsets(kafka, topic);
  const from = ends.filter((end) => end.offset > 0n).map((end) => ({ ...end, offset: end.offset - 1n }));
  const records = await readRange({ kafka, topic, from, until: ends, timeoutMs });
  return new Map(records.map((record) => [record.partition, record]));
}

/**
 * Reads the range of `options`, handing each batch of in-range records to `take` until it returns true or every
 * partition reaches its end. Returns how many records it read.
 */
async function scan(options: RangeBase & { until?: RangeEnd }, take: (batch: InRecord[]) => boolean): Promise<number> {
  const { kafka, topic, timeoutMs } = options;
  let progress: RangeProgress | undefined;
  let reader: KafkaConsumer | undefined;
  let stopped = false;
  const reading = (async () => {
    const range = new RangeProgress(topic, await endOffsets(kafka, topic), options.from, options.until);
    progress = range;
    // The deadline may have passed during the look-up: then no reader must be left behind.
    if (range.complete || stopped) return;
    reader = createConsumer({
      kafka,
      groupId: `range-reader-${crypto.randomUUID()}`,
      clientId: "range-reader",
      topics: [topic],
      startAt: range.startAt(),
    });
    for await (const batch of reader.batches()) {
      if (take(batch.filter((record) => range.accept(record))) || range.complete) return;
    }
    if (!stopped) throw new Error("the consumer stopped before the range was read");
  })();
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const read = `${progress?.read ?? 0} records read`;
      const where = !progress
        ? "still looking up its partitions"
        : options.until === undefined
          ? `done() never held; reached ${progress.describe()}`
          : `not finished: ${progress.describe()}`;
      reject(new RangeTimeoutError(`reading ${topic} took over ${timeoutMs / 1000} s: ${read}; ${where}`));
    }, timeoutMs);
  });
  try {
    await Promise.race([reading, deadline]);
    return progress?.read ?? 0;
  } catch (error) {
    if (error instanceof RangeTimeoutError) throw error;
    const message = error instanceof Error ? error.message : String(error);
    throw new Error(`reading ${topic} failed after reading ${progress?.read ?? 0} records: ${message}`, {
      cause: error,
    });
  } finally {
    stopped = true;
    clearTimeout(timer);
    // Best effort: a reader that cannot leave drops out of its throwaway group once its session expires.
    await reader?.close().catch(() => {});
  }
}
