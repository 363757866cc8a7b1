/**
 * enrich: events with a place and a time get their IANA timezone, UTC offset and local time. Each input topic
 * has its journey: location events from `locations.raw` to `locations.enriched` keyed by user_id, vehicle
 * positions from `vehicles.raw` to `vehicles.enriched` keyed by vehicle_id. Input offsets are committed only
 * after the broker acknowledged the output (at least once into Kafka; persist removes the duplicates a crash can
 * cause).
 */
import { boundTileCache, enrichLocation, type Located } from "./enrich/timezone.ts";
import { preparing } from "./shared/consume.ts";
import type { InRecord, OutRecord } from "./shared/kafka.ts";
import { DECODERS, mapRecords } from "./shared/records.ts";
import { main, type Stage } from "./shared/runner.ts";
import { TOPICS, type TopicName } from "./shared/topics.ts";

/**
 * One input topic's journey: its records are decoded by their topic's rule, enriched, and produced to `output` under
 * the event's `key` field, so that an enriched event lands on the partition of the same key as its raw one.
 */
function journey<K extends string, E extends Located & Record<K, string>>(
  decode: (record: InRecord) => E,
  output: TopicName,
  key: K,
): (record: InRecord) => OutRecord {
  return (record) => {
    const value = enrichLocation(decode(record));
    return { topic: output, key: value[key], value: JSON.stringify(value) };
  };
}

/** Input topic -> its journey. A record that cannot make it goes to `<input topic>.dlq`. */
const JOURNEYS: Record<string, (record: InRecord) => OutRecord> = {
  [TOPICS.locationsRaw]: journey(DECODERS[TOPICS.locationsRaw], TOPICS.locationsEnriched, "user_id"),
  [TOPICS.vehiclesRaw]: journey(DECODERS[TOPICS.vehiclesRaw], TOPICS.vehiclesEnriched, "vehicle_id"),
};

/** A batch's output records and dead letters. */
function enrichBatch(batch: InRecord[]): OutRecord[] {
  const { results, deadLetters } = mapRecords(batch, "enrich", (record) =>
    (JOURNEYS[record.topic] as (record: InRecord) => OutRecord)(record),
  );
  return [...results.map(({ value }) => value), ...deadLetters];
}

/** The enrich stage: one consumer group over every input topic of {@link JOURNEYS}, poison records to their DLQ. */
export const enrich: Stage = {
  name: "enrich",
  port: "ENRICH_PORT",
  group: () => "enrich",
  start: ({ env, produce }) => {
    boundTileCache(env.ENRICH_TZ_CACHE_TILES);
    // Each batch is enriched while the one before it waits for the broker's acknowledgements.
    const enriched = preparing(enrichBatch);
    return {
      consume: {
        topics: Object.keys(JOURNEYS),
        prepare: enriched.prepare,
        handle: async (batch) => {
          await produce(enriched.take(batch));
        },
      },
    };
  },
};

if (import.meta.main) await main(enrich);
