/**
 * enrich: location events from `locations.raw` get their IANA timezone, UTC offset and local time, and go on to
 * `locations.enriched` keyed by user_id. Input offsets are committed only after the broker acknowledged the
 * output (at least once into Kafka; persist removes the duplicates a crash can cause).
 */
import { enrichLocation } from "./enrich/timezone.ts";
import { DECODERS, mapRecords } from "./shared/records.ts";
import { main, type Stage } from "./shared/runner.ts";
import { TOPICS } from "./shared/topics.ts";

/** The enrich stage: one consumer group, one output topic, poison records to `locations.raw.dlq`. */
export const enrich: Stage = {
  name: "enrich",
  port: "ENRICH_PORT",
  group: () => "enrich",
  start: ({ produce }) => ({
    consume: {
      topics: [TOPICS.locationsRaw],
      async handle(batch) {
        const { results, deadLetters } = mapRecords(batch, "enrich", (record) =>
          enrichLocation(DECODERS[TOPICS.locationsRaw](record)),
        );
        const enriched = results.map(({ value }) => ({
          topic: TOPICS.locationsEnriched,
          key: value.user_id,
          value: JSON.stringify(value),
        }));
        await produce([...enriched, ...deadLetters]);
      },
    },
  }),
};

if (import.meta.main) await main(enrich);
