/**
 * Drives a generator against the HTTP API: paced to a rate, `concurrency` requests in flight, `batch` events
 * per request (NDJSON when more than one), each request's outcome reported with its event_ids:
 * - ok: 2xx, the broker has every event;
 * - failed: 4xx or 5xx (a 503 may still have reached the broker: the API says retry with the same event_ids);
 * - indeterminate: no answer (timeout, connection refused or reset): any event of it may or may not exist.
 * Nothing is retried here, so every event_id belongs to exactly one request.
 */
import { fetchText } from "../shared/deadline.ts";
import { corrupt, type EventBody, type EventGenerator, type Rng, ROUTES } from "./generators.ts";

export type Outcome = "ok" | "failed" | "indeterminate";

/** What became of one request. */
export interface RequestResult {
  /** Client event_ids, or the ones the API assigned (only known for ok requests without client ids). */
  eventIds: string[];
  events: number;
  outcome: Outcome;
  /** HTTP status, when there was an answer. */
  status?: number;
  /** Why there was no answer, or the body of a failed one (shortened). */
  error?: string;
  /** The request held a deliberately invalid event (see `invalidShare`). */
  invalid: boolean;
  /** Milliseconds from sending to the outcome. */
  ms: number;
}

export interface DriveOptions {
  /** Base URL of ingest, e.g. http://127.0.0.1:3000. */
  url: string;
  generator: EventGenerator;
  /**
   * Event time (ms since the epoch) of the next request's events, given how many events came before them.
   * By default the wall clock at the moment the request is scheduled to go out.
   */
  clock?: (eventsBefore: number) => number;
  /** Events per second over all workers; 0 sends as fast as answers come back. */
  rate: number;
  /** Stop after this many events... */
  count?: number;
  /** ...or after this many milliseconds, or when `signal` aborts, whichever comes first. */
  durationMs?: number;
  signal?: AbortSignal;
  /** Requests in flight at once. */
  concurrency: number;
  /** Events per request: a fixed size or an inclusive [min, max] range drawn per request. */
  batch: number | [number, number];
  apiKey?: string;
  /** A request without an answer after this long counts as indeterminate. */
  timeoutMs: number;
  /** Share of requests, 0 to 1, that carry one invalid event (the API must reject them whole). */
  invalidShare?: number;
  /** Draws batch sizes and invalid requests; seeded by the caller for reproducible runs. */
  rng: Rng;
  onResult?: (result: RequestResult) => void;
}

/** Running totals of a drive. */
export interface Tally {
  requests: number;
  /** Events sent (in requests that were sent). */
  sent: number;
  accepted: number;
  /** Events of failed requests. */
  rejected: number;
  /** Events of requests without an answer. */
  indeterminate: number;
  /** Requests per status code, or per error name when there was no answer. */
  statuses: Map<string, number>;
  /** Requests that carried a deliberately invalid event. */
  invalidRequests: number;
  startedAt: number;
  elapsedMs: number;
}

export const emptyTally = (): Tally => ({
  requests: 0,
  sent: 0,
  accepted: 0,
  rejected: 0,
  indeterminate: 0,
  statuses: new Map(),
  invalidRequests: 0,
  startedAt: performance.now(),
  elapsedMs: 0,
});

/** Adds `result` to `tally`. */
export function count(tally: Tally, result: RequestResult): void {
  tally.requests++;
  tally.sent += result.events;
  if (result.outcome === "ok") tally.accepted += result.events;
  else if (result.outcome === "failed") tally.rejected += result.events;
  else tally.indeterminate += result.events;
  if (result.invalid) tally.invalidRequests++;
  const key = result.status === undefined ? (result.error ?? "error") : String(result.status);
  tally.statuses.set(key, (tally.statuses.get(key) ?? 0) + 1);
}

/** How far ahead of schedule a worker may fall before the pacer stops trying to catch up (no bursts after a stall). */
const MAX_CATCH_UP_MS = 1_000;

/** The name of a fetch failure without an answer: timeout, refused, reset... */
function failureName(error: unknown): string {
  if (error instanceof DOMException && error.name === "TimeoutError") return "timeout";
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") return code;
  return error instanceof Error ? error.name : "error";
}

/** Posts one request and classifies its outcome. */
export async function post(
  url: string,
  route: string,
  events: (EventBody | Record<string, unknown>)[],
  options: { apiKey?: string; timeoutMs: number },
): Promise<Omit<RequestResult, "invalid">> {
  const single = events.length === 1;
  const body = single ? JSON.stringify(events[0]) : events.map((event) => JSON.stringify(event)).join("\n");
  const headers: Record<string, string> = { "content-type": single ? "application/json" : "application/x-ndjson" };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const clientIds = events.flatMap((event) => (typeof event.event_id === "string" ? [event.event_id] : []));
  const started = performance.now();
  try {
    const { response, text } = await fetchText(`${url}${route}`, { method: "POST", body, headers }, options.timeoutMs);
    const ms = performance.now() - started;
    if (response.ok) {
      const assigned = (JSON.parse(text) as { event_ids?: string[] }).event_ids;
      const eventIds = clientIds.length > 0 ? clientIds : (assigned ?? []);
      return { eventIds, events: events.length, outcome: "ok", status: response.status, ms };
    }
    const error = text.slice(0, 200);
    return { eventIds: clientIds, events: events.length, outcome: "failed", status: response.status, error, ms };
  } catch (error) {
    const ms = performance.now() - started;
    return { eventIds: clientIds, events: events.length, outcome: "indeterminate", error: failureName(error), ms };
  }
}

/**
 * Runs the traffic until the count, the duration or the signal ends it; resolves with the totals, which are
 * kept in `tally` as they change (pass one in to watch progress).
 */
export async function drive(options: DriveOptions, tally: Tally = emptyTally()): Promise<Tally> {
  tally.startedAt = performance.now();
  const clock = options.clock;
  const route = ROUTES[options.generator.kind];
  const endAt = options.durationMs === undefined ? Number.POSITIVE_INFINITY : performance.now() + options.durationMs;
  const [minBatch, maxBatch] = typeof options.batch === "number" ? [options.batch, options.batch] : options.batch;
  let issued = 0;
  let nextAt = performance.now();

  const finished = () =>
    options.signal?.aborted === true ||
    performance.now() >= endAt ||
    (options.count !== undefined && issued >= options.count);

  /**
   * The next request: its events and its slot in the pacing schedule, drawn in one synchronous step so the
   * sequence of events and requests never depends on how the workers interleave. Events are stamped with the
   * time they will be sent at.
   */
  function take(): { events: (EventBody | Record<string, unknown>)[]; invalid: boolean; slot: number } {
    let size = minBatch + Math.floor(options.rng() * (maxBatch - minBatch + 1));
    if (options.count !== undefined) size = Math.min(size, options.count - issued);
    const now = performance.now();
    let slot = now;
    if (options.rate > 0 && size > 0) {
      slot = Math.max(nextAt, now - MAX_CATCH_UP_MS);
      // A slot past the end of the run is not taken: a timed run sends what its duration allows, no more.
      if (slot >= endAt) return { events: [], invalid: false, slot };
      nextAt = slot + (size * 1000) / options.rate;
    }
    const eventTime = clock ? clock(issued) : Date.now() + Math.max(0, slot - now);
    const events: (EventBody | Record<string, unknown>)[] = [];
    for (let i = 0; i < size; i++) events.push(options.generator.next(eventTime));
    issued += size;
    const invalid = size > 0 && options.rng() < (options.invalidShare ?? 0);
    if (invalid) {
      const at = Math.floor(options.rng() * events.length);
      events[at] = corrupt(events[at] as EventBody, options.rng);
    }
    return { events, invalid, slot };
  }

  async function worker() {
    while (!finished()) {
      const { events, invalid, slot } = take();
      if (events.length === 0) return;
      // Pacing is load shaping, not synchronisation: each request waits for its slot in the schedule.
      const wait = slot - performance.now();
      if (wait > 0) await Bun.sleep(wait);
      const result = { ...(await post(options.url, route, events, options)), invalid };
      count(tally, result);
      tally.elapsedMs = performance.now() - tally.startedAt;
      options.onResult?.(result);
    }
  }

  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, worker));
  tally.elapsedMs = performance.now() - tally.startedAt;
  return tally;
}
