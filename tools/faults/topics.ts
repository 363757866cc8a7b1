/**
 * Reading what the run wrote to each topic, between two offset snapshots, to count copies per event: the
 * ground truth for "did ingest write anything twice" and "how many replays reached persist".
 */
import { createConsumer, endOffsets, type InRecord, type Position } from "../../shared/kafka.ts";
import { TimeoutError } from "../poll.ts";
import { slot } from "./groups.ts";

/** Calls `visit` on every record of `topic` from `from` up to (not including) `to`; fails after `timeoutMs`. */
export async function scanTopic(
  brokers: string[],
  topic: string,
  from: Position[],
  visit: (record: InRecord) => void,
  timeoutMs: number,
): Promise<number> {
  const to = await endOffsets(brokers, topic);
  const start = new Map(from.map((p) => [p.partition, p.offset]));
  // Partitions with something to read, and the last offset to reach in each.
  const remaining = new Map<number, bigint>();
  for (const end of to)
    if (end.offset > (start.get(end.partition) ?? 0n)) remaining.set(end.partition, end.offset - 1n);
  if (remaining.size === 0) return 0;
  const consumer = createConsumer({
    brokers,
    groupId: `faults-scan-${crypto.randomUUID()}`,
    clientId: "faults-scan",
    topics: [topic],
    startAt: to.map((end) => ({ topic, partition: end.partition, offset: start.get(end.partition) ?? 0n })),
  });
  let read = 0;
  const reading = (async () => {
    for await (const batch of consumer.batches()) {
      for (const record of batch) {
        const last = remaining.get(record.partition);
        if (last === undefined || record.offset > last) continue;
        read++;
        visit(record);
        if (record.offset === last) remaining.delete(record.partition);
      }
      if (remaining.size === 0) return;
    }
  })();
  let timer: Timer | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const left = [...remaining.keys()].map((p) => slot(topic, p)).join(", ");
      reject(new TimeoutError(`reading ${topic} took over ${timeoutMs / 1000} s (${read} records; not done: ${left})`));
    }, timeoutMs);
  });
  try {
    await Promise.race([reading, deadline]);
    return read;
  } finally {
    clearTimeout(timer);
    await consumer.close();
  }
}

/** Copies per event_id of the run's events in a topic of JSON events, and how many records were someone else's. */
export async function eventCopies(
  brokers: string[],
  topic: string,
  from: Position[],
  idPrefix: string,
  timeoutMs: number,
): Promise<{ copies: Map<string, number>; others: number }> {
  const copies = new Map<string, number>();
  let others = 0;
  const marker = Buffer.from(`"event_id":"${idPrefix}`);
  await scanTopic(
    brokers,
    topic,
    from,
    (record) => {
      // Most records of a shared topic may be someone else's: skip them before parsing.
      if (!record.value.includes(marker)) {
        others++;
        return;
      }
      const id = (JSON.parse(record.value.toString()) as { event_id?: unknown }).event_id;
      if (typeof id === "string" && id.startsWith(idPrefix)) copies.set(id, (copies.get(id) ?? 0) + 1);
      else others++;
    },
    timeoutMs,
  );
  return { copies, others };
}

/** Copies per record key, for keys `keep` accepts (logins.stats: "<window start>/<partition>"). */
export async function keyCopies(
  brokers: string[],
  topic: string,
  from: Position[],
  keep: (key: string) => boolean,
  timeoutMs: number,
): Promise<Map<string, number>> {
  const copies = new Map<string, number>();
  await scanTopic(
    brokers,
    topic,
    from,
    (record) => {
      const key = record.key?.toString() ?? "";
      if (keep(key)) copies.set(key, (copies.get(key) ?? 0) + 1);
    },
    timeoutMs,
  );
  return copies;
}

/** Records beyond the first copy of each key. */
export const extraCopies = (copies: Map<string, number>): number =>
  [...copies.values()].reduce((sum, n) => sum + n - 1, 0);
