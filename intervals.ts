/**
 * intervals: the per-partition windows of `logins.stats` become one record per window over every partition on
 * `logins.intervals` (intervals/merge.ts has the rules). It needs every stats partition in one member, so it
 * consumes exclusively: one instance is active, others stand by. Each record says which stats records it
 * accounts for; commits never pass that, and after a restart or a rebalance the merge is rebuilt from the last
 * record and the replay from the commit, so no window is emitted twice or changed.
 */
import { createMerge } from "./intervals/merge.ts";
import { committedOffsets, type InRecord, lastRecords, type OutRecord } from "./shared/kafka.ts";
import { counter } from "./shared/metrics.ts";
import { DECODERS, mapRecords } from "./shared/records.ts";
import { main, type Stage } from "./shared/runner.ts";
import type { LoginInterval } from "./shared/schemas.ts";
import { TOPICS } from "./shared/topics.ts";

const GROUP = "intervals";
/** Every record goes to one partition, in order, so that partition's last record is the last one emitted. */
const PARTITION = 0;

function toRecord(interval: LoginInterval): OutRecord {
  const key = String(interval.timestamp_start);
  return { topic: TOPICS.loginsIntervals, key, partition: PARTITION, value: JSON.stringify(interval) };
}

/** The intervals stage: the merge of every partition of logins.stats, in one active member. */
export const intervals: Stage = {
  name: "intervals",
  port: "INTERVALS_PORT",
  group: () => GROUP,
  start({ kafka, log, registry, produce }) {
    const emitted = counter(registry, "intervals_emitted_total", "Interval records produced");
    const latePartials = counter(registry, "late_partials_total", "Partials of a window already emitted");
    const merge = createMerge();
    let restored = false;
    /** Output not yet acknowledged: a retry sends it again instead of merging the same records twice. */
    let outbox: OutRecord[] = [];
    let merged: InRecord[] | undefined;

    async function restore() {
      const [last, committed] = await Promise.all([
        lastRecords(kafka, TOPICS.loginsIntervals),
        committedOffsets(kafka, GROUP),
      ]);
      const record = last.get(PARTITION);
      const interval = record && DECODERS[TOPICS.loginsIntervals](record);
      merge.restore(
        interval,
        committed.filter((p) => p.topic === TOPICS.loginsStats),
      );
      restored = true;
      log.info({ after: interval?.timestamp_start }, "restored the merge from logins.intervals");
    }

    return {
      consume: {
        topics: [TOPICS.loginsStats],
        exclusive: true,
        // After a rebalance the client re-reads every partition from its committed offset: the merge starts over
        // from the last record emitted and that replay.
        onAssign() {
          restored = false;
        },
        async handle(batch) {
          if (merged !== batch) {
            if (!restored) await restore();
            const { deadLetters } = mapRecords(batch, "intervals", (record) => {
              if (!merge.inSequence(record.partition, record.offset)) return;
              merge.advance(record.partition, record.offset);
              const partial = DECODERS[TOPICS.loginsStats](record);
              if (merge.add(record.partition, record.offset, partial) === "late") latePartials.inc();
            });
            outbox.push(...deadLetters, ...merge.take().map(toRecord));
            merged = batch;
          }
          await produce(outbox);
          emitted.inc(outbox.filter((record) => record.topic === TOPICS.loginsIntervals).length);
          outbox = [];
          return merge.positions().map((position) => ({ topic: TOPICS.loginsStats, ...position }));
        },
      },
    };
  },
};

if (import.meta.main) await main(intervals);
