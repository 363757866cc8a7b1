/**
 * What a poll source has published, kept durably in a compacted topic, `<POLL_TOPIC>.seen`: one record per
 * event_id (the key; the value says when it was taken), written only after the broker acknowledged the record
 * itself, or its dead letter. A restarted source reads the topic back before its first poll, so nothing it published is
 * published again; compaction keeps one record per id however often the topic is rewritten.
 */
import { type KafkaConnection, type OutRecord, scanRange } from "../shared/kafka.ts";

/** The seen topic's settings: compacted, so it holds one record per id however long the source runs. */
export const SEEN_TOPIC_CONFIGS = { "cleanup.policy": "compact" };

/**
 * The event_ids `seenTopic` holds, read from its beginning to its end now.
 *
 * @example
 * const seen = await loadSeen(kafka, "locations.raw.seen", 60_000); // Set { "poll.1a2b3c4d:ping-42", ... }
 */
export async function loadSeen(kafka: KafkaConnection, seenTopic: string, timeoutMs: number): Promise<Set<string>> {
  const seen = new Set<string>();
  await scanRange({
    kafka,
    topic: seenTopic,
    from: [],
    until: "end",
    timeoutMs,
    visit: (record) => {
      if (record.key) seen.add(record.key.toString());
    },
  });
  return seen;
}

/**
 * The records that mark `ids` seen.
 *
 * @example
 * await publish(seenMarkers("locations.raw.seen", ["poll.1a2b3c4d:ping-42"]));
 */
export function seenMarkers(seenTopic: string, ids: string[]): OutRecord[] {
  const value = JSON.stringify({ seen_at: new Date().toISOString() });
  return ids.map((id) => ({ topic: seenTopic, key: id, value }));
}
