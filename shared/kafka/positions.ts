/**
 * Offset arithmetic on the port's types. Nothing here talks to a broker or names a client library, so every
 * client implementation shares it and unit tests cover it without Kafka.
 */
import type { InRecord, Position } from "./types.ts";

const slot = (topic: string, partition: number) => `${topic}:${partition}`;

/**
 * Per partition of `records`, the position after its last record: what a commit of them stores.
 *
 * @example
 * await consumer.commit(nextPositions(batch));
 */
export function nextPositions(records: InRecord[]): Position[] {
  const last = new Map<string, Position>();
  let run: Position | undefined;
  for (const { topic, partition, offset } of records) {
    // A batch comes in runs of one partition: the partition is looked up where a run starts, and the offset
    // incremented once at the end (a bigint sum allocates).
    if (run === undefined || run.partition !== partition || run.topic !== topic) {
      const key = slot(topic, partition);
      run = last.get(key);
      if (run === undefined) {
        run = { topic, partition, offset };
        last.set(key, run);
      }
    }
    run.offset = offset;
  }
  return [...last.values()].map(({ topic, partition, offset }) => ({ topic, partition, offset: offset + 1n }));
}

/**
 * Records between a group's committed offsets and the end offsets `ends`. A partition the group never committed
 * (absent from `committed`, or -1) counts in full: its next member would start from the earliest record.
 *
 * @example
 * uncommitted([{ topic: "t", partition: 0, offset: 10n }], [{ topic: "t", partition: 0, offset: 4n }]); // 6
 */
export function uncommitted(ends: Position[], committed: Position[]): number {
  const done = new Map(committed.map((p) => [slot(p.topic, p.partition), p.offset]));
  let behind = 0n;
  for (const end of ends) {
    const offset = done.get(slot(end.topic, end.partition)) ?? -1n;
    behind += end.offset - (offset < 0n ? 0n : offset);
  }
  return Number(behind);
}

interface PartitionRange {
  from: bigint;
  /** Exclusive; undefined reads on without an end. */
  until: bigint | undefined;
  /** The offset after the last record accepted so far. */
  next: bigint;
}

/**
 * Which records of one topic a range read wants, and how far it has got: per partition, the offsets from a start
 * position up to (not including) an end position. A reader feeds it every record it receives and stops once
 * `complete` holds.
 *
 * @example
 * const progress = new RangeProgress("t", await endOffsets(kafka, "t"), from, "end");
 * for (const record of batch) if (progress.accept(record)) keep(record);
 * if (progress.complete) stop();
 */
export class RangeProgress {
  readonly topic: string;
  /** Records accepted so far. */
  read = 0;
  readonly #ends: Position[];
  readonly #ranges = new Map<number, PartitionRange>();

  /**
   * @param ends the topic's end offsets now: they list its partitions.
   * @param from where each partition's range starts; a partition left out starts at offset 0. Positions of other
   *   topics or of partitions the topic does not have are ignored.
   * @param until where each partition's range ends (exclusive), or "end" for `ends`; a partition left out of a
   *   list is not read. Undefined: no end, every partition is read on.
   */
  constructor(topic: string, ends: Position[], from: Position[], until: Position[] | "end" | undefined) {
    this.topic = topic;
    this.#ends = ends;
    const start = new Map(from.filter((p) => p.topic === topic).map((p) => [p.partition, p.offset]));
    const stop =
      until === undefined
        ? undefined
        : new Map(
            (until === "end" ? ends : until).filter((p) => p.topic === topic).map((p) => [p.partition, p.offset]),
          );
    for (const { partition } of ends) {
      const first = start.get(partition) ?? 0n;
      const last = stop?.get(partition);
      if (stop && (last === undefined || last <= first)) continue;
      this.#ranges.set(partition, { from: first, until: last, next: first });
    }
  }

  /**
   * Where a reader of the topic starts: every partition, those with nothing to read at their end offset, so that
   * it fetches nothing outside the range.
   */
  startAt(): Position[] {
    return this.#ends.map((end) => ({ ...end, offset: this.#ranges.get(end.partition)?.from ?? end.offset }));
  }

  /** True when `record` lies in the range (counting it); false for records outside, which the reader drops. */
  accept(record: { topic: string; partition: number; offset: bigint }): boolean {
    const range = record.topic === this.topic ? this.#ranges.get(record.partition) : undefined;
    if (!range || record.offset < range.from || (range.until !== undefined && record.offset >= range.until))
      return false;
    if (record.offset >= range.next) range.next = record.offset + 1n;
    this.read++;
    return true;
  }

  /** True once every partition has reached its end; never for a range without an end (unless it has none). */
  get complete(): boolean {
    for (const { until, next } of this.#ranges.values()) if (until === undefined || next < until) return false;
    return true;
  }

  /**
   * How far each partition got, for an error message: with an end, only the unfinished ones ("t:0 at 5 of 10"),
   * without one, all of them ("t:0 at 17").
   */
  describe(): string {
    const parts: string[] = [];
    for (const [partition, { until, next }] of [...this.#ranges].sort(([a], [b]) => a - b)) {
      if (until === undefined) parts.push(`${slot(this.topic, partition)} at ${next}`);
      else if (next < until) parts.push(`${slot(this.topic, partition)} at ${next} of ${until}`);
    }
    return parts.join(", ") || "(no partitions)";
  }
}
