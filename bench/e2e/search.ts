/**
 * What "sustainable" means for the max-rate search, and the search itself: step the offered rate up by half
 * until a probe fails, then bisect between the last rate that held and the first that did not.
 */
import type { StepResult } from "./step.ts";

/** The client must get out this share of the offered events: below it, ingest (or the client) is the limit. */
const MIN_SENT_SHARE = 0.95;
/** A bound on latency, not the goal: four times the 250 ms p99 goal means "still keeps up, slowly". */
const MAX_P99_MS = 1_000;
/** Events still in flight when sending stops: more than this many seconds of traffic is a growing backlog. */
const MAX_BACKLOG_SECONDS = 1;
/** The last third's p99 may exceed the first third's by this factor (and 100 ms) before it counts as growing. */
const GROWTH_FACTOR = 2;
/** Bisection stops when the bracket is this narrow, relative to its lower end. */
const PRECISION = 0.1;
const ROUND_TO = 250;

/** Whether `step` kept up, and if not, each reason why. */
export function verdict(step: StepResult): { ok: boolean; reasons: string[] } {
  const reasons: string[] = [];
  const { rate } = step.options;
  const offered = (rate * step.options.durationMs) / 1000;
  const sent = step.load.tallies.locations.sent + step.load.tallies.logins.sent;
  const failed = ["locations", "logins"] as const;
  const notOk = failed.reduce((n, t) => n + step.load.tallies[t].rejected + step.load.tallies[t].indeterminate, 0);
  const latency = step.latency.locations;
  if (sent < MIN_SENT_SHARE * offered)
    reasons.push(`sent ${Math.round((100 * sent) / offered)}% of the offered events (client or ingest saturated)`);
  if (notOk > 0) reasons.push(`${notOk} events not accepted (non-2xx or no answer)`);
  if (latency.endToEnd.p99 > MAX_P99_MS) reasons.push(`p99 ${Math.round(latency.endToEnd.p99)} ms > ${MAX_P99_MS} ms`);
  if (latency.backlogAtEnd > rate * MAX_BACKLOG_SECONDS)
    reasons.push(`${latency.backlogAtEnd} events still in flight at the end (> ${MAX_BACKLOG_SECONDS} s of traffic)`);
  if (latency.p99LastThird > Math.max(GROWTH_FACTOR * latency.p99FirstThird, latency.p99FirstThird + 100))
    reasons.push(
      `p99 grew from ${Math.round(latency.p99FirstThird)} ms to ${Math.round(latency.p99LastThird)} ms within the step`,
    );
  return { ok: reasons.length === 0, reasons };
}

/** The criteria above in words, for the report. */
export const CRITERIA =
  `a rate is sustainable when, over the probe, the client got out at least ${MIN_SENT_SHARE * 100}% of the offered ` +
  `events, every request was answered 202, the end-to-end p99 stayed at most ${MAX_P99_MS} ms, at most ` +
  `${MAX_BACKLOG_SECONDS} s of traffic was still in flight when sending stopped, and the p99 of the last third of ` +
  `the probe was at most ${GROWTH_FACTOR}x (and 100 ms above) that of the first third (latency not growing)`;

const round = (rate: number) => Math.max(ROUND_TO, Math.round(rate / ROUND_TO) * ROUND_TO);

/**
 * Finds the highest sustainable rate starting from `start` (a rate known to hold, or a guess): `probe` runs one
 * step and says whether it held. Returns the best rate that held (undefined if none did) and every probe.
 */
export async function searchMaxRate(
  start: number,
  cap: number,
  probe: (rate: number) => Promise<boolean>,
): Promise<number | undefined> {
  let good: number | undefined;
  let bad: number | undefined;
  let rate = round(start);
  // Up by half until something fails (or down by a third while nothing holds).
  for (;;) {
    if (await probe(rate)) {
      good = rate;
      if (bad !== undefined || rate >= cap) break;
      rate = Math.min(cap, round(rate * 1.5));
    } else {
      bad = rate;
      if (good !== undefined) break;
      rate = round(rate / 1.5);
      if (rate === bad) return undefined;
    }
  }
  // Bisect the bracket.
  while (good !== undefined && bad !== undefined && (bad - good) / good > PRECISION) {
    const middle = round((good + bad) / 2);
    if (middle === good || middle === bad) break;
    if (await probe(middle)) good = middle;
    else bad = middle;
  }
  return good;
}
