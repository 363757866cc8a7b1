/**
 * The traffic of a fault run: logins, location pings and a vehicle fleet's reports, each its own seeded stream
 * through ingest with client event_ids under the run's prefix, every request's outcome written to the ledger
 * under the table its events end up in.
 */
import { createGenerator, type Kind, mulberry32, seedOf } from "../generators.ts";
import { drive, emptyTally, type Tally } from "../traffic.ts";
import type { Ledger, Table } from "./ledger.ts";
import type { Profile } from "./profiles.ts";

/** One stream and its running totals. */
export interface Stream {
  kind: Kind;
  table: Table;
  tally: Tally;
}

export interface LoadOptions {
  ingestUrl: string;
  run: string;
  seed: number;
  profile: Profile;
  ledger: Ledger;
  /** Event time of logins (the run's window range); locations and vehicle reports use the wall clock. */
  loginClock: () => number;
  signal: AbortSignal;
}

/** Event_id letter of each stream: `<run>-<letter>-<n>`. */
const ID_LETTER: Record<Kind, string> = { logins: "g", locations: "l", fleet: "v" };

/** The table each stream's events end up in. */
const TABLE_OF: Record<Kind, Table> = { logins: "logins", locations: "locations", fleet: "vehicle_positions" };

/** Starts the three streams; `done` resolves once `signal` has stopped them and their requests have ended. */
export function startLoad(options: LoadOptions): { streams: Stream[]; done: Promise<unknown> } {
  const { profile, run, seed } = options;
  const streams: Stream[] = [];
  const runs = (["logins", "locations", "fleet"] as const).map((kind) => {
    const stream: Stream = { kind, table: TABLE_OF[kind], tally: emptyTally() };
    streams.push(stream);
    const generator = createGenerator(kind, {
      seed: seedOf(`${seed}/${kind}`),
      userPrefix: `${run}-`,
      eventIdPrefix: `${run}-${ID_LETTER[kind]}`,
      population: kind === "fleet" ? profile.vehicles : 2_000,
      missingShare: profile.missingShare,
      intervalSeconds: 1,
    });
    const rate = kind === "fleet" ? profile.vehicles : profile.rates[kind];
    return drive(
      {
        url: options.ingestUrl,
        generator,
        ...(kind === "logins" && { clock: () => options.loginClock() }),
        rate,
        signal: options.signal,
        concurrency: profile.concurrency,
        batch: profile.batch,
        // Longer than ingest's 5 s acknowledgement deadline: a 503 is an answer, silence is indeterminate.
        timeoutMs: 15_000,
        invalidShare: profile.invalidShare,
        rng: mulberry32(seedOf(`${seed}/${kind}/requests`)),
        onResult: (result) => options.ledger.record(stream.table, result),
      },
      stream.tally,
    );
  });
  return { streams, done: Promise.all(runs) };
}

/** Requests by status over all streams. */
export function statuses(streams: Stream[]): Map<string, number> {
  const all = new Map<string, number>();
  for (const s of streams) for (const [k, n] of s.tally.statuses) all.set(k, (all.get(k) ?? 0) + n);
  return all;
}

/** One progress line of the load. */
export function loadLine(streams: Stream[]): string {
  const sum = (of: (t: Tally) => number) => streams.reduce((n, s) => n + of(s.tally), 0);
  const codes = [...statuses(streams)].map(([k, n]) => `${k}:${n}`).join(" ");
  return (
    `load: ${sum((t) => t.sent)} events sent, ${sum((t) => t.accepted)} accepted, ` +
    `${sum((t) => t.rejected)} rejected, ${sum((t) => t.indeterminate)} unanswered (requests ${codes})`
  );
}
