/**
 * Event-time tumbling windows of login statistics, one independent fold per input partition. Pure: events and
 * clock ticks in, closed windows out, so every rule is unit-tested without a broker. What a login adds to a window
 * is aggregate/stats.ts's rule, the same one the end-to-end checks recompute with; this module decides which
 * window an event belongs to, when windows close, and what is already counted.
 *
 * - A window [start, start + size) is epoch-aligned in UTC and closes once the partition's watermark passes
 *   its end plus the grace period. The watermark is the highest event time seen plus the wall-clock time since
 *   the last event arrived, so a quiet partition still closes its windows.
 * - An event whose window has closed is late: it is counted in the next emitted window's `late_messages` and
 *   reported to the caller, never dropped.
 * - A partition with no open window reports its progress: when the idle watermark passes the end plus grace of a
 *   window after the last one emitted, it emits an empty window (no interval counts, its totals, any pending late
 *   count) for the latest window that watermark closed. The merge of all partitions (intervals/merge.ts) waits
 *   for every partition's progress, so a quiet partition must say how far it is; it says so once per window
 *   length, and after a long gap only for the latest window. An open window reports the same when it closes.
 *   Optionally the idle watermark follows the wall clock (see `followClock`).
 * - Each emitted window carries the partition's running totals and `source_offset_end`, the input offset up to
 *   which it accounts for everything. Restoring from the last emitted window rebuilds totals and tells a replay
 *   which records are already counted, so a crash at any point gives the same output as no crash.
 */
import type { LoginWindowStats, RawLogin } from "../shared/schemas.ts";
import { type LoginStats, loginStats, windowStart } from "./stats.ts";

interface OpenWindow {
  /** Event ids counted, so a record the producer wrote twice (a retry after a broker restart) counts once. */
  ids: Set<string>;
  stats: LoginStats;
  firstOffset: bigint;
}

interface PartitionState {
  open: Map<number, OpenWindow>;
  /** Everything before this instant is closed (the end of the last emitted window). */
  closedBefore: number;
  maxEventTime: number;
  lastArrival: number;
  late: number;
  lateFirstOffset: bigint | undefined;
  totals: LoginStats;
  /** Offsets below this, in windows before `closedBefore`, were counted before a restart. */
  countedBelow: bigint;
  /** Unknown after a restore until the replay reads its first record. */
  nextOffset: bigint | undefined;
  /** Where the replay after a restore starts (the group's committed offset), when known. */
  resumeAt: bigint | undefined;
}

export type Outcome = "counted" | "late" | "already counted" | "duplicate";

/**
 * The fold of all partitions of one consumer. With `followClock`, idleness carries a partition's watermark up to
 * the wall clock and no further, and a partition with nothing open reports progress up to the wall clock. Without
 * it a partition's watermark keeps the lead or the lag its events had on the clock for good: one whose traffic was
 * old or delayed would hold every merged window back by its lag, one whose traffic ran ahead would report windows
 * before the clock reaches them and turn the next events of the present into late ones. With it, events of a
 * partition older than its report are late.
 */
export function createWindowFold(options: { windowMs: number; graceMs: number; followClock?: boolean }) {
  const { windowMs, graceMs } = options;
  const partitions = new Map<number, PartitionState>();
  /** Windows that events closed, held until the next tick hands them out (so they depend on records only). */
  const closedByEvents: LoginWindowStats[] = [];

  function closeDue(partition: number, s: PartitionState, watermark: number, out: LoginWindowStats[]) {
    const due = [...s.open.keys()].filter((start) => start + windowMs + graceMs <= watermark).sort((a, b) => a - b);
    for (const start of due) {
      out.push(emit(partition, s, start, s.open.get(start) as OpenWindow));
      s.open.delete(start);
    }
  }

  /**
   * The progress report of a partition that has nothing open: an empty window for the latest one the watermark
   * closed, once it lies beyond the last emitted one. A partition that never saw an event has nothing to report.
   */
  function reportProgress(partition: number, s: PartitionState, watermark: number, out: LoginWindowStats[]) {
    if (s.open.size > 0 || !Number.isFinite(s.maxEventTime)) return;
    const latest = windowStart(watermark - windowMs - graceMs, windowMs);
    if (latest + windowMs <= s.closedBefore) return;
    const empty: OpenWindow = { ids: new Set(), stats: loginStats.initial(), firstOffset: 0n };
    out.push(emit(partition, s, latest, empty));
  }

  function state(partition: number): PartitionState {
    const found = partitions.get(partition);
    if (!found) throw new Error(`partition ${partition} was not restored before use`);
    return found;
  }

  function emit(partition: number, s: PartitionState, start: number, window: OpenWindow): LoginWindowStats {
    const interval = loginStats.result(window.stats);
    const totals = loginStats.merge(s.totals, window.stats);
    // Late events were never added to a window, yet they were consumed: the message total counts them.
    s.totals = { ...totals, messages: totals.messages + s.late };
    const total = loginStats.result(s.totals);
    const stats: LoginWindowStats = {
      timestamp_start: new Date(start).toISOString(),
      timestamp_end: new Date(start + windowMs).toISOString(),
      partition,
      interval_messages_consumed: interval.messages,
      interval_device_type_count: interval.devices,
      interval_missing_field_count: interval.missing,
      late_messages: s.late,
      total_messages_consumed: total.messages,
      total_device_type_count: total.devices,
      total_missing_field_count: total.missing,
      // During a replay the partition may emit before reaching the restored point; never claim less than it.
      source_offset_end: Number(
        s.nextOffset !== undefined && s.nextOffset > s.countedBelow ? s.nextOffset : s.countedBelow,
      ),
    };
    s.late = 0;
    s.lateFirstOffset = undefined;
    s.closedBefore = start + windowMs;
    return stats;
  }

  return {
    /** Starts `partition` from its last emitted window (or from nothing), at wall-clock `now`. */
    restore(partition: number, last: LoginWindowStats | undefined, now: number, resumeAt?: bigint): void {
      partitions.set(partition, {
        open: new Map(),
        closedBefore: last ? Date.parse(last.timestamp_end) : Number.NEGATIVE_INFINITY,
        // The watermark had passed the restored window's end plus grace, or it would not have been emitted: the
        // idle watermark grows from there, so a partition that stays quiet after a restart still reports progress.
        maxEventTime: last ? Date.parse(last.timestamp_end) + graceMs : Number.NEGATIVE_INFINITY,
        lastArrival: now,
        late: 0,
        lateFirstOffset: undefined,
        totals: last
          ? {
              messages: last.total_messages_consumed,
              devices: last.total_device_type_count,
              missing: last.total_missing_field_count,
            }
          : loginStats.initial(),
        countedBelow: BigInt(last?.source_offset_end ?? 0),
        nextOffset: undefined,
        resumeAt,
      });
    },

    /** Partitions that have state, so that revoked ones can be forgotten. */
    partitions: () => [...partitions.keys()],
    forget: (partition: number) => partitions.delete(partition),

    /**
     * Whether the record at `offset` continues the partition's sequence. After a rebalance the client re-reads
     * every partition from its committed offset while records fetched before may still arrive; only the replay
     * in order, from `resumeAt`, may reach the state, or a record would count twice.
     */
    inSequence(partition: number, offset: bigint): boolean {
      const s = state(partition);
      if (s.nextOffset === undefined) return s.resumeAt === undefined || offset === s.resumeAt;
      return offset >= s.nextOffset;
    },

    /** Moves the partition's position past a record that carries no event (a dead letter). */
    advance(partition: number, offset: bigint): void {
      state(partition).nextOffset = offset + 1n;
    },

    /** Adds the event at `offset` of `partition`, which arrived at wall-clock `now`. */
    add(partition: number, offset: bigint, event: RawLogin, now: number): Outcome {
      const s = state(partition);
      const time = Date.parse(event.timestamp);
      const start = windowStart(time, windowMs);
      const closed = start + windowMs <= s.closedBefore;
      s.nextOffset = offset + 1n;
      if (offset < s.countedBelow && closed) return "already counted";
      s.lastArrival = now;
      s.maxEventTime = Math.max(s.maxEventTime, time);
      if (closed) {
        s.late++;
        s.lateFirstOffset ??= offset;
        return "late";
      }
      let window = s.open.get(start);
      if (!window) {
        window = { ids: new Set(), stats: loginStats.initial(), firstOffset: offset };
        s.open.set(start, window);
      }
      if (window.ids.has(event.event_id)) return "duplicate";
      window.ids.add(event.event_id);
      window.stats = loginStats.add(window.stats, event);
      closeDue(partition, s, s.maxEventTime, closedByEvents);
      return "counted";
    },

    /**
     * The windows closed since the last tick: those events closed as they arrived, then those the idle watermark
     * closes at wall-clock `now`, then the progress reports of partitions left with no open window. Call it
     * before `positions()`: a closed window not yet handed out is in neither.
     *
     * Idleness only counts for a partition that has read everything there is: `ends` holds each partition's end
     * offset, and a partition whose position is short of it is still catching up (a replay after a restart, a
     * backlog), so its time without arrivals says nothing about its events. Closing or reporting its windows then
     * would turn the records still to come into late ones, or, below a restored window's `source_offset_end`,
     * into records taken as already counted. Without `ends` every partition counts as caught up, as when the
     * caller hands over every record there is.
     *
     * @example
     * const closed = fold.tick(Date.now(), new Map([[0, 1204n], [1, 977n]]));
     */
    tick(now: number, ends?: ReadonlyMap<number, bigint>): LoginWindowStats[] {
      const out = closedByEvents.splice(0);
      for (const [partition, s] of partitions) {
        const end = ends === undefined ? undefined : (ends.get(partition) ?? Number.POSITIVE_INFINITY);
        // Never committed: the consumer starts at the earliest record, which is at least offset 0.
        if (end !== undefined && (s.nextOffset ?? s.resumeAt ?? 0n) < end) continue;
        const idle = s.maxEventTime + Math.max(0, now - s.lastArrival);
        const watermark = options.followClock ? Math.max(s.maxEventTime, Math.min(idle, now)) : idle;
        closeDue(partition, s, watermark, out);
        reportProgress(partition, s, options.followClock ? Math.max(watermark, now) : watermark, out);
      }
      return out;
    },

    /**
     * Per partition, the offset to commit: the first record still needed (an open window's or a pending late
     * count's), or the next offset when nothing is pending. A crash replays from there into the same windows.
     */
    positions(): { partition: number; offset: bigint }[] {
      return [...partitions].flatMap(([partition, s]): { partition: number; offset: bigint }[] => {
        const pending = [...s.open.values()].map((w) => w.firstOffset);
        if (s.lateFirstOffset !== undefined) pending.push(s.lateFirstOffset);
        if (s.nextOffset === undefined) return [];
        const offset = pending.reduce((min, o) => (o < min ? o : min), s.nextOffset);
        return [{ partition, offset }];
      });
    },
  };
}

export type WindowFold = ReturnType<typeof createWindowFold>;
