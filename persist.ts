/**
 * persist: topics into a store, exactly once in effect. One sink per process, chosen by `PERSIST_SINK`
 * (persist/sinks.ts lists them), each in a consumer group of its own, so each store fails, lags and scales on
 * its own. Every batch is decoded with its topic's schema (poison records go to the DLQ), handed to the sink
 * with the positions it ends at, and committed to Kafka only once the sink has made it durable.
 */

import type { SinkRow, WriteResult } from "./persist/sink.ts";
import { SINKS } from "./persist/sinks.ts";
import { preparing } from "./shared/consume.ts";
import { within } from "./shared/deadline.ts";
import { type InRecord, nextPositions, onBroker } from "./shared/kafka.ts";
import { counter, histogram } from "./shared/metrics.ts";
import { decoderOf, mapRecords } from "./shared/records.ts";
import { main, type Stage } from "./shared/runner.ts";

/** Longer than any healthy batch; a write still open by then is stuck. */
const WRITE_DEADLINE_MS = 60_000;
/** How often a sink that holds records back (object storage) is asked to write what is due. */
const FLUSH_EVERY_MS = 1_000;

/** The persist stage, for the sink `PERSIST_SINK` names. */
export const persist: Stage = {
  name: "persist",
  port: "PERSIST_PORT",
  // A group per sink: each store fails, lags and scales on its own.
  group: (env) => `persist-${env.PERSIST_SINK}`,
  async start({ env, kafka, log, registry, produce }) {
    const name = env.PERSIST_SINK;
    const factory = SINKS[name as keyof typeof SINKS];
    if (!factory) throw new Error(`PERSIST_SINK=${name} is not a sink; the sinks are ${Object.keys(SINKS).join(", ")}`);
    // The group as the broker knows it: a run in a namespace keeps positions of its own.
    const group = onBroker(kafka, persist.group?.(env) as string);
    const sink = factory({ env, log, group });
    await sink.open();
    const writeSeconds = histogram(registry, "write_seconds", "Time of one batch write");
    const written = counter(registry, "rows_written_total", "Rows inserted or updated", ["table"]);
    const conflicts = counter(registry, "rows_conflicting_total", "Rows turned away by a stored key (replays)", [
      "table",
    ]);
    const replayed = counter(registry, "records_replayed_total", "Records below the stored positions, skipped");

    const unknown = sink.topics.filter((topic) => !decoderOf(topic));
    if (unknown.length > 0) throw new Error(`${name} stores topics with no decoding rule: ${unknown.join(", ")}`);
    const rowOf = (record: InRecord): SinkRow => {
      const value = (decoderOf(record.topic) as (record: InRecord) => unknown)(record);
      const { topic, partition, offset, key, headers } = record;
      return { topic, partition, offset, ...(key && { key }), headers, value };
    };

    /** Counts what a write or a flush did; returns the positions it says may be committed. */
    const count = (result: WriteResult) => {
      for (const [table, n] of Object.entries(result.written)) written.inc({ table }, n);
      for (const [table, n] of Object.entries(result.conflicts)) conflicts.inc({ table }, n);
      replayed.inc(result.replayed);
      return result.positions;
    };
    const flush = sink.flush;
    // Each batch is decoded while the one before it is being written.
    const decoded = preparing((batch) => mapRecords(batch, "persist", rowOf));

    return {
      consume: {
        topics: sink.topics,
        prepare: decoded.prepare,
        async handle(batch) {
          const { results, deadLetters } = decoded.take(batch);
          await produce(deadLetters);
          const timer = writeSeconds.startTimer();
          // A tombstone decodes to null: nothing to store, and its position is still the batch's.
          const rows = results.map(({ value }) => value).filter((row) => row.value !== null);
          const result = await within(sink.write(rows, nextPositions(batch)), WRITE_DEADLINE_MS, undefined);
          if (!result) {
            // A write that never settles (a connection that stopped answering mid-transaction) holds the offset
            // locks, so a retry would wait forever; exiting closes the connection and the store rolls the batch
            // back. The supervisor restarts the stage, which replays the batch.
            log.fatal({ records: batch.length, deadlineMs: WRITE_DEADLINE_MS }, "a batch write hung, exiting");
            process.exit(1);
          }
          timer();
          return count(result);
        },
        ...(flush && { tick: { everyMs: FLUSH_EVERY_MS, run: async () => count(await flush()) ?? [] } }),
      },
      ready: () => sink.ready(),
      close: () => sink.close(),
    };
  },
};

if (import.meta.main) await main(persist);
