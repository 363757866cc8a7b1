/**
 * Reading what the run wrote to each topic, between two offset snapshots, to count copies per event: the
 * ground truth for "did ingest write anything twice" and "how many replays reached persist".
 */
import { type KafkaConnection, type Position, scanRange } from "../../shared/kafka.ts";

/**
 * Copies per event_id of the run's events in a topic of JSON events, from `from` to the topic's end now, and how
 * many records were someone else's.
 *
 * @example
 * const { copies, others } = await eventCopies(kafka, "logins.raw", startOffsets, `${run}-`, 60_000);
 */
export async function eventCopies(
  kafka: KafkaConnection,
  topic: string,
  from: Position[],
  idPrefix: string,
  timeoutMs: number,
): Promise<{ copies: Map<string, number>; others: number }> {
  const copies = new Map<string, number>();
  let others = 0;
  const marker = Buffer.from(`"event_id":"${idPrefix}`);
  await scanRange({
    kafka,
    topic,
    from,
    until: "end",
    timeoutMs,
    visit: (record) => {
      // Most records of a shared topic may be someone else's: skip them before parsing.
      if (!record.value.includes(marker)) {
        others++;
        return;
      }
      const id = (JSON.parse(record.value.toString()) as { event_id?: unknown }).event_id;
      if (typeof id === "string" && id.startsWith(idPrefix)) copies.set(id, (copies.get(id) ?? 0) + 1);
      else others++;
    },
  });
  return { copies, others };
}

/**
 * Copies per record key from `from` to the topic's end now, for keys `keep` accepts (logins.stats: "<window
 * start>/<partition>").
 *
 * @example
 * const windows = await keyCopies(kafka, "logins.stats", startOffsets, (key) => key.startsWith("2024"), 60_000);
 */
export async function keyCopies(
  kafka: KafkaConnection,
  topic: string,
  from: Position[],
  keep: (key: string) => boolean,
  timeoutMs: number,
): Promise<Map<string, number>> {
  const copies = new Map<string, number>();
  await scanRange({
    kafka,
    topic,
    from,
    until: "end",
    timeoutMs,
    visit: (record) => {
      const key = record.key?.toString() ?? "";
      if (keep(key)) copies.set(key, (copies.get(key) ?? 0) + 1);
    },
  });
  return copies;
}

/** Records beyond the first copy of each key. */
export const extraCopies = (copies: Map<string, number>): number =>
  [...copies.values()].reduce((sum, n) => sum + n - 1, 0);
