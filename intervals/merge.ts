/**
 * The merge behind intervals.ts, pure: the per-partition windows of `logins.stats` in, one record per window over
 * all partitions out, so every rule is unit-tested without a broker.
 *
 * - Each stats partition reports its progress in its own ordered stream: the end of its latest window (an empty
 *   one when it had no events, aggregate/windows.ts). A window is emitted once every partition that has ever
 *   reported has reached its end; windows close after their grace, so progress already includes it. A partition
 *   that never reported is not waited for.
 * - A window with no events at all is not emitted; late counts it holds go to the next emitted window.
 * - A partial for a window already emitted (from a partition that had not reported yet) is never dropped: its
 *   messages go to the next emitted window's `late_messages` and to the running totals.
 * - Totals: the message total grows by each window's interval and late counts, the histograms by the interval
 *   histograms only, as the partials' totals do.
 * - Every emitted record names the stats records it accounts for (`source_offsets`, `source_progress`), all
 *   below those offsets and none at or above them. Restoring from the last emitted record and replaying from
 *   there gives the same records as no restart: {@link createMerge}'s positions never pass them.
 */
import { type LoginStats, loginStats } from "../aggregate/stats.ts";
import type { LoginInterval, LoginWindowStats } from "../shared/schemas.ts";

/** Where a partial's counts went: a window not emitted yet (its start), or the next emitted window's late count. */
type Target = number | "carry";

interface Held {
  offset: bigint;
  /** The partition's progress before this record: what a cut at this record records. */
  progressBefore: number | undefined;
  target: Target;
}

interface Source {
  /** The next offset to read; undefined until the first record after a restore. */
  next: bigint | undefined;
  /** Where the replay after a restore starts, when known: only a record there continues the sequence. */
  resumeAt: bigint | undefined;
  /** Records below this are in an emitted record (the restored one's cut). */
  countedBelow: bigint;
  countedProgress: number | undefined;
  /** The end (ms) of the latest window this partition reported; undefined while it never did. */
  progress: number | undefined;
  /** Records whose counts are in no emitted record yet, in offset order. */
  held: Held[];
}

interface PendingWindow {
  end: number;
  stats: LoginStats;
  late: number;
}

/** What became of one stats record. */
export type MergeOutcome = "counted" | "late" | "progress" | "already counted" | "copy";

const seconds = (ms: number) => Math.floor(ms / 1000);

/**
 * The merge of every partition of logins.stats.
 *
 * @example
 * const merge = createMerge();
 * merge.restore(lastInterval, [{ partition: 0, offset: 42n }]);
 * if (merge.inSequence(record.partition, record.offset)) merge.add(record.partition, record.offset, partial);
 * await produce(merge.take().map(toRecord));
 * await commit(merge.positions());
 */
export function createMerge() {
  const sources = new Map<number, Source>();
  const windows = new Map<number, PendingWindow>();
  let resumeAt = new Map<number, bigint>();
  /** Windows ending at or before this are done: emitted, or passed over for having no events. */
  let doneBefore = Number.NEGATIVE_INFINITY;
  let carry = 0;
  let totals = loginStats.initial();
  let cut: { partition: number; offset: bigint }[] = [];
  let out: LoginInterval[] = [];

  function source(partition: number): Source {
    let s = sources.get(partition);
    if (!s) {
      s = {
        next: undefined,
        resumeAt: resumeAt.get(partition),
        countedBelow: 0n,
        countedProgress: undefined,
        progress: undefined,
        held: [],
      };
      sources.set(partition, s);
    }
    return s;
  }

  /** Per partition, the first record not in an emitted record, and the progress of those below it. */
  function cutNow() {
    return [...sources].map(([partition, s]) => {
      const first = s.held[0];
      if (first) return { partition, offset: first.offset, progress: first.progressBefore };
      if (s.next !== undefined && s.next > s.countedBelow) return { partition, offset: s.next, progress: s.progress };
      return { partition, offset: s.countedBelow, progress: s.countedProgress };
    });
  }

  const reached = (end: number) => [...sources.values()].every((s) => s.progress === undefined || s.progress >= end);

  function release(target: Target) {
    for (const s of sources.values()) s.held = s.held.filter((h) => h.target !== target && h.target !== "carry");
  }

  function emitReady() {
    for (;;) {
      const start = Math.min(...windows.keys());
      const window = windows.get(start);
      if (!window || !reached(window.end)) return;
      windows.delete(start);
      doneBefore = window.end;
      if (window.stats.messages === 0) {
        // Only late counts: they wait for the next window that has events, and so do their records.
        carry += window.late;
        for (const s of sources.values()) for (const h of s.held) if (h.target === start) h.target = "carry";
        continue;
      }
      const late = window.late + carry;
      const merged = loginStats.merge(totals, window.stats);
      totals = { ...merged, messages: merged.messages + late };
      carry = 0;
      release(start);
      const positions = cutNow();
      cut = positions.map(({ partition, offset }) => ({ partition, offset }));
      const interval = loginStats.result(window.stats);
      const total = loginStats.result(totals);
      out.push({
        timestamp_start: seconds(start),
        timestamp_end: seconds(window.end),
        interval_messages_consumed: interval.messages,
        total_messages_consumed: total.messages,
        interval_device_type_count: interval.devices,
        interval_missing_field_count: interval.missing,
        total_device_type_count: total.devices,
        total_missing_field_count: total.missing,
        late_messages: late,
        source_offsets: Object.fromEntries(positions.map(({ partition, offset }) => [partition, Number(offset)])),
        source_progress: Object.fromEntries(
          positions.flatMap(({ partition, progress }) =>
            progress === undefined ? [] : [[partition, seconds(progress)]],
          ),
        ),
      });
    }
  }

  return {
    /**
     * Starts over from `last`, the last record emitted (or nothing), with the group's committed positions: the
     * replay starts there, and records below `last`'s offsets are already counted.
     */
    restore(last: LoginInterval | undefined, committed: { partition: number; offset: bigint }[]): void {
      sources.clear();
      windows.clear();
      out = [];
      carry = 0;
      resumeAt = new Map(committed.filter((p) => p.offset >= 0n).map((p) => [p.partition, p.offset]));
      doneBefore = last ? last.timestamp_end * 1000 : Number.NEGATIVE_INFINITY;
      totals = last
        ? {
            messages: last.total_messages_consumed,
            devices: last.total_device_type_count,
            missing: last.total_missing_field_count,
          }
        : loginStats.initial();
      for (const [key, offset] of Object.entries(last?.source_offsets ?? {})) {
        const s = source(Number(key));
        const progress = last?.source_progress[key];
        s.countedBelow = BigInt(offset);
        s.countedProgress = progress === undefined ? undefined : progress * 1000;
        s.progress = s.countedProgress;
      }
      cut = cutNow().map(({ partition, offset }) => ({ partition, offset }));
    },

    /**
     * Whether the record at `offset` continues the partition's sequence. After a restore only the replay in
     * order may count: a record fetched before a rebalance and delivered after it is not, and the replay brings
     * it again.
     */
    inSequence(partition: number, offset: bigint): boolean {
      const s = source(partition);
      return s.next === undefined ? s.resumeAt === undefined || offset === s.resumeAt : offset >= s.next;
    },

    /** Moves the partition's position past a record that carries no partial (a dead letter). */
    advance(partition: number, offset: bigint): void {
      source(partition).next = offset + 1n;
    },

    /** Adds the partial at `offset` of stats partition `partition`, a record {@link inSequence} accepted. */
    add(partition: number, offset: bigint, partial: LoginWindowStats): MergeOutcome {
      const s = source(partition);
      s.next = offset + 1n;
      if (offset < s.countedBelow) return "already counted";
      const start = Date.parse(partial.timestamp_start);
      const end = Date.parse(partial.timestamp_end);
      // A partition's windows only move forward; one that does not is a second copy of a record already read.
      if (s.progress !== undefined && end <= s.progress) return "copy";
      const progressBefore = s.progress;
      s.progress = end;
      let outcome: MergeOutcome = "progress";
      if (partial.interval_messages_consumed + partial.late_messages > 0) {
        if (start < doneBefore) {
          carry += partial.interval_messages_consumed + partial.late_messages;
          s.held.push({ offset, progressBefore, target: "carry" });
          outcome = "late";
        } else {
          const window = windows.get(start) ?? { end, stats: loginStats.initial(), late: 0 };
          window.stats = loginStats.merge(window.stats, {
            messages: partial.interval_messages_consumed,
            devices: partial.interval_device_type_count,
            missing: partial.interval_missing_field_count,
          });
          window.late += partial.late_messages;
          windows.set(start, window);
          s.held.push({ offset, progressBefore, target: start });
          outcome = "counted";
        }
      }
      emitReady();
      return outcome;
    },

    /** The records emitted since the last call, oldest first. */
    take(): LoginInterval[] {
      const taken = out;
      out = [];
      return taken;
    },

    /**
     * Per stats partition, the offset to commit: the cut of the last record emitted (or restored), never past
     * it, so a replay after a crash rebuilds everything that record does not account for, progress included.
     */
    positions: (): { partition: number; offset: bigint }[] => cut,
  };
}

export type Merge = ReturnType<typeof createMerge>;
