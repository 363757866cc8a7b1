/**
 * aggregate: login events from `logins.raw` become one statistics record per event-time window and input
 * partition on `logins.stats` (aggregate/windows.ts has the window rules). Input offsets are committed only up
 * to the first record of the oldest window not yet emitted, and running totals are rebuilt from the last window
 * each partition emitted, so a crash replays into the same windows instead of losing or double-counting them.
 * A partition with nothing open reports its progress as an empty window, so that intervals.ts need not wait.
 */
import { createWindowFold } from "./aggregate/windows.ts";
import { preparing } from "./shared/consume.ts";
import { committedOffsets, endOffsets, type InRecord, lastRecords, type OutRecord } from "./shared/kafka.ts";
import { counter } from "./shared/metrics.ts";
import { DECODERS, deadLetter, mapRecords } from "./shared/records.ts";
import { main, type Stage } from "./shared/runner.ts";
import type { LoginWindowStats, RawLogin } from "./shared/schemas.ts";
import { TOPICS } from "./shared/topics.ts";

const GROUP = "aggregate";
/** End offsets no partition has reached: a tick with these closes only what events closed. */
const CATCHING_UP: ReadonlyMap<number, bigint> = new Map();

class LateEvent extends Error {
  override name = "LateEvent";
}

function toRecord(stats: LoginWindowStats): OutRecord {
  const key = `${stats.timestamp_start}/${stats.partition}`;
  return { topic: TOPICS.loginsStats, key, partition: stats.partition, value: JSON.stringify(stats) };
}

/** The aggregate stage: the window fold of every partition this member owns. */
export const aggregate: Stage = {
  name: "aggregate",
  port: "AGGREGATE_PORT",
  group: () => GROUP,
  start({ env, kafka, log, registry, produce }) {
    const windowsEmitted = counter(registry, "windows_emitted_total", "Window statistics produced");
    const lateEvents = counter(registry, "late_events_total", "Events that arrived after their window closed");
    const duplicates = counter(registry, "duplicate_events_total", "Event ids seen twice in a window, counted once");
    const fold = createWindowFold({
      windowMs: env.WINDOW_SECONDS * 1000,
      graceMs: env.WINDOW_GRACE_SECONDS * 1000,
      followClock: true,
    });
    /** Output not yet acknowledged: a retry sends it again instead of folding the same records twice. */
    let outbox: OutRecord[] = [];
    let folded: InRecord[] | undefined;
    /** This member's partitions of logins.raw since the last rebalance. */
    let assigned: number[] = [];

    /** Starts partitions this member has no state for from the last window each emitted, replaying from the commit. */
    async function restore(partitions: number[]) {
      const [last, committed] = await Promise.all([
        lastRecords(kafka, TOPICS.loginsStats),
        committedOffsets(kafka, GROUP),
      ]);
      for (const partition of partitions) {
        const record = last.get(partition);
        const position = committed.find((p) => p.topic === TOPICS.loginsRaw && p.partition === partition)?.offset;
        // -1: never committed; the client then starts at the earliest record, wherever that is now.
        const resumeAt = position !== undefined && position >= 0n ? position : undefined;
        fold.restore(partition, record && DECODERS[TOPICS.loginsStats](record), Date.now(), resumeAt);
      }
      log.info({ partitions }, "restored window state from logins.stats");
    }

    /** Restores those of `partitions` the fold has no state for. */
    async function restoreMissing(partitions: number[]) {
      const known = new Set(fold.partitions());
      const missing = [...new Set(partitions)].filter((partition) => !known.has(partition));
      if (missing.length > 0) await restore(missing);
    }

    // Each batch is decoded while the one before it waits for its acknowledgements: a login, or why it is none.
    const decoded = preparing((batch) =>
      batch.map((record) => {
        try {
          return DECODERS[TOPICS.loginsRaw](record);
        } catch (error) {
          return error instanceof Error ? error : new Error(String(error));
        }
      }),
    );

    function foldBatch(batch: InRecord[]) {
      const now = Date.now();
      const logins = decoded.take(batch);
      let index = 0; // mapRecords visits the batch in order
      const { deadLetters } = mapRecords(batch, "aggregate", (record) => {
        const login = logins[index++] as RawLogin | Error;
        if (!fold.inSequence(record.partition, record.offset)) return; // a stale copy: the replay brings it in order
        if (login instanceof Error) throw login;
        fold.advance(record.partition, record.offset);
        const outcome = fold.add(record.partition, record.offset, login, now);
        if (outcome === "duplicate") duplicates.inc();
        if (outcome !== "late") return;
        lateEvents.inc();
        const late = new LateEvent("arrived after its window closed");
        outbox.push(deadLetter(record, late, "aggregate", TOPICS.loginsLate));
      });
      // Only what the events closed: idleness is the idle tick's to judge, with the end offsets in hand.
      outbox.push(...deadLetters, ...fold.tick(now, CATCHING_UP).map(toRecord));
    }

    /** Sends the outbox and returns the input positions it makes safe to commit. */
    async function flush() {
      await produce(outbox);
      windowsEmitted.inc(outbox.filter((record) => record.topic === TOPICS.loginsStats).length);
      outbox = [];
      return fold.positions().map((position) => ({ topic: TOPICS.loginsRaw, ...position }));
    }

    return {
      consume: {
        topics: [TOPICS.loginsRaw],
        prepare: decoded.prepare,
        // After every rebalance the client re-reads each assigned partition from its committed offset, which
        // trails the open windows: all state goes, and each partition is rebuilt from logins.stats and that replay.
        onAssign(partitions) {
          for (const partition of fold.partitions()) fold.forget(partition);
          assigned = partitions.filter(({ topic }) => topic === TOPICS.loginsRaw).map(({ partition }) => partition);
        },
        async handle(batch) {
          if (folded !== batch) {
            await restoreMissing(batch.map((record) => record.partition));
            foldBatch(batch);
            folded = batch;
          }
          return flush();
        },
        tick: {
          everyMs: env.WINDOW_IDLE_TICK_MS,
          async run() {
            // A partition with nothing to replay still reports its progress (intervals waits for it), so every
            // assigned partition gets its state back, not only those that deliver records.
            await restoreMissing(assigned);
            // A partition is idle only once it has read up to its end offset; one still replaying is not.
            const ends = await endOffsets(kafka, TOPICS.loginsRaw);
            const byPartition = new Map(ends.map(({ partition, offset }) => [partition, offset]));
            outbox.push(...fold.tick(Date.now(), byPartition).map(toRecord));
            return flush();
          },
        },
      },
    };
  },
};

if (import.meta.main) await main(aggregate);
