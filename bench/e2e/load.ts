/**
 * Offered load for one step: seeded location pings (tools/generators.ts, users moving along paths) with a share
 * of logins, paced to a rate by tools/traffic.ts. Every event carries a client event_id unique to the run and
 * the step, and the moment its request's 202 was read is recorded per event_id, to be joined with the row's
 * persisted_at afterwards (same machine, same clock).
 */
import { createGenerator, mulberry32, seedOf } from "../../tools/generators.ts";
import { drive, emptyTally, type RequestResult, type Tally } from "../../tools/traffic.ts";

/** The tables a stream's events end up in. */
export type Table = "locations" | "logins";

export interface LoadOptions {
  url: string;
  /** Events per second over both streams. */
  rate: number;
  durationMs: number;
  /** Events per request: 1 sends a JSON object, more send NDJSON. */
  batch: number;
  /** Share of events that are logins (they take the logins.raw -> persist path and feed the aggregate). */
  loginShare: number;
  /** Unique per run and step: prefixes event_ids and user ids, so rows can be found and told apart. */
  tag: string;
  seed: string;
  timeoutMs: number;
}

/** What one step sent and when each accepted event's 202 was read. */
export interface LoadResult {
  tallies: Record<Table, Tally>;
  /** Per table: event_id -> epoch milliseconds (fractional) at which the client had read its 202. */
  acked: Record<Table, Map<string, number>>;
  /** Epoch ms of the first request and of the last answer. */
  startedAt: number;
  endedAt: number;
}

/** Sub-millisecond wall-clock time: persisted_at has microseconds, Date.now() only milliseconds. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/** Requests in flight per stream: enough for the rate at ~40 ms per request, so pacing, not waiting, sets it. */
export function concurrencyFor(rate: number, batch: number): number {
  return Math.min(512, Math.max(8, Math.ceil(((rate / batch) * 40) / 1000)));
}

/** Runs the step's two streams side by side until `durationMs` has passed. */
export async function offerLoad(options: LoadOptions): Promise<LoadResult> {
  const acked: Record<Table, Map<string, number>> = { locations: new Map(), logins: new Map() };
  const tallies: Record<Table, Tally> = { locations: emptyTally(), logins: emptyTally() };
  const streams = [
    { table: "locations" as const, rate: options.rate * (1 - options.loginShare), id: "l" },
    { table: "logins" as const, rate: options.rate * options.loginShare, id: "g" },
  ].filter((stream) => stream.rate > 0);
  const startedAt = epochMs();
  await Promise.all(
    streams.map(({ table, rate, id }) => {
      const generator = createGenerator(table, {
        seed: seedOf(`${options.seed}/${options.tag}/${table}`),
        userPrefix: `${options.tag}-`,
        eventIdPrefix: `${options.tag}-${id}`,
        population: 5_000,
        intervalSeconds: 1,
      });
      const onResult = (result: RequestResult) => {
        if (result.outcome !== "ok") return;
        const at = epochMs();
        for (const eventId of result.eventIds) acked[table].set(eventId, at);
      };
      return drive(
        {
          url: options.url,
          generator,
          rate,
          durationMs: options.durationMs,
          concurrency: concurrencyFor(rate, options.batch),
          batch: options.batch,
          timeoutMs: options.timeoutMs,
          rng: mulberry32(seedOf(`${options.seed}/${options.tag}/${table}/requests`)),
          onResult,
        },
        tallies[table],
      );
    }),
  );
  return { tallies, acked, startedAt, endedAt: epochMs() };
}
