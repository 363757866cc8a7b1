/**
 * enrich: location events from `locations.raw` get their IANA timezone, UTC offset and local time, and go on to
 * `locations.enriched` keyed by user_id. Input offsets are committed only after the broker acknowledged the
 * output (at least once into Kafka; persist removes the duplicates a crash can cause).
 */

import { enrichLocation } from "./enrich/timezone.ts";
import { createProducer } from "./shared/kafka.ts";
import { decode, mapRecords } from "./shared/records.ts";
import { createStage } from "./shared/runner.ts";
import { RawLocation } from "./shared/schemas.ts";
import { TOPICS } from "./shared/topics.ts";

const stage = createStage("enrich", (env) => env.ENRICH_PORT);
const { env, lifecycle, metrics } = stage;
const producer = createProducer({ brokers: env.KAFKA_BROKERS, clientId: "enrich" });

stage.consume({
  groupId: "enrich",
  topics: [TOPICS.locationsRaw],
  async handle(batch) {
    const { results, deadLetters } = mapRecords(batch, "enrich", (record) =>
      enrichLocation(decode(RawLocation, record)),
    );
    const enriched = results.map(({ value }) => ({
      topic: TOPICS.locationsEnriched,
      key: value.user_id,
      value: JSON.stringify(value),
    }));
    await producer.send([...enriched, ...deadLetters]);
    metrics.recordsOut.inc({ topic: TOPICS.locationsEnriched }, enriched.length);
    for (const letter of deadLetters) metrics.deadLettered.inc({ topic: letter.topic });
  },
});
stage.serveHealth(() => producer.ping());
lifecycle.onShutdown("flush the producer", () => producer.close());
