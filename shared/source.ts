/**
 * The source contract: a source brings records from outside Kafka onto topics (HTTP requests today; polled APIs
 * and database changes work the same way) and acknowledges its upstream (an HTTP 202, a replication slot's
 * confirmed position, a poll cursor) only once the broker has acknowledged every record. Anything short of that
 * is reported as not published, so the upstream keeps the data and sends it again.
 */
import { within } from "./deadline.ts";
import type { Delivery, KafkaProducer, OutRecord } from "./kafka.ts";

/** The outcome of publishing: every record acknowledged, or none of them known to be. */
export type Published = { ok: true; deliveries: Delivery[] } | { ok: false; reason: string };

/**
 * A publish function for a source: never rejects, and says `ok` only when the broker acknowledged every record
 * within `timeoutMs`.
 *
 * @example
 * const publish = createPublisher(producer, 5_000);
 * const published = await publish([{ topic: "logins.raw", key: "u1", value: "{...}" }]);
 * if (published.ok) confirmUpstream();
 */
export function createPublisher(producer: KafkaProducer, timeoutMs: number) {
  return async (records: OutRecord[]): Promise<Published> => {
    const sent = producer.send(records).then(
      (deliveries): Published => ({ ok: true, deliveries }),
      (error: unknown): Published => ({ ok: false, reason: error instanceof Error ? error.message : String(error) }),
    );
    return within(sent, timeoutMs, { ok: false, reason: `no acknowledgement within ${timeoutMs} ms` });
  };
}
