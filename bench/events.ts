/**
 * The consumer benches' events: made by tools/generators.ts and normalised by the API's own schemas, as ingest
 * would put them on the raw topics, so a bench times the stage on the traffic the pipeline really sees.
 */
import * as v from "valibot";
import type { Sql } from "../persist/postgres/db.ts";
import type { InRecord, OutRecord } from "../shared/kafka.ts";
import { LocationEvent, LoginEvent, type RawLocation, type RawLogin } from "../shared/schemas.ts";
import { createGenerator, type GeneratorOptions, mulberry32 } from "../tools/generators.ts";

/** Every user id of a bench event starts with this, so the rows the benches leave behind can be found. */
const BENCH_USER_PREFIX = "bench-";

/** Users a run's locations belong to; each sends many events, as phones reporting their position do. */
const LOCATION_USERS = 20_000;
/**
 * A user's pings are hours apart (their times spread over two years), so each moves an hour's travel between
 * two: the busiest users wander across zones, and the points cover about as many distinct places as
 * independent ones would, which is what geo-tz's cache and so the enrich figures depend on.
 */
const LOCATION_INTERVAL_S = 3_600;
/** Location event times spread over two years, so both sides of every DST change occur. */
const TIME_FROM = Date.UTC(2024, 0, 1);
const TIME_SPAN_MS = 2 * 365 * 86_400_000;

/** Users a run's logins belong to. */
const LOGIN_USERS = 5_000;
/** Login event times span this much from now, some a little out of order. */
const LOGIN_SPAN_MS = 60_000;
const LOGIN_JITTER_MS = 2_000;

/** `event` as ingest passes it on: with an event_id (time-ordered, as ingest assigns one) and ingested_at. */
const ingested = <E extends { event_id?: string | undefined }>(event: E, ingestedAt: number) => ({
  ...event,
  event_id: event.event_id ?? Bun.randomUUIDv7(),
  ingested_at: new Date(ingestedAt).toISOString(),
});

/** Generator options of a run's events. User ids carry `runId`, so rows of different runs never share a user. */
const forRun = (runId: string, seed: number, population: number): GeneratorOptions => ({
  seed,
  userPrefix: `${BENCH_USER_PREFIX}${runId}-`,
  population,
});

/**
 * `count` RawLocation events as ingest would put them on `locations.raw`: users scattered around cities and over
 * the whole Earth (as many distinct places as a timezone lookup meets), event times over two years, and
 * ingested_at a few seconds after the event.
 */
export function benchLocations(count: number, runId: string): RawLocation[] {
  const generator = createGenerator("locations", {
    ...forRun(runId, 1970, LOCATION_USERS),
    intervalSeconds: LOCATION_INTERVAL_S,
    placement: "scattered",
  });
  const random = mulberry32(1971);
  return Array.from({ length: count }, () => {
    const time = TIME_FROM + Math.floor(random() * TIME_SPAN_MS);
    return ingested(v.parse(LocationEvent, generator.next(time)), time + Math.floor(random() * 5_000));
  });
}

/**
 * `count` RawLogin events over the next minute of event time, in order but for a little jitter. Event time only
 * moves forward per partition, so they stay close to now: events timed further ahead would make later real
 * events late.
 */
export function benchLogins(count: number, runId: string): RawLogin[] {
  const generator = createGenerator("logins", forRun(runId, 2001, LOGIN_USERS));
  const random = mulberry32(2002);
  const start = Date.now();
  return Array.from({ length: count }, (_, i) => {
    const time = start + Math.floor((i * LOGIN_SPAN_MS) / count + random() * LOGIN_JITTER_MS);
    return ingested(v.parse(LoginEvent, generator.next(time)), Date.now());
  });
}

/** `events` as records of `topic`, keyed by user as ingest and enrich produce them; `values` if already encoded. */
export const keyedByUser = (topic: string, events: { user_id: string }[], values?: Buffer[]): OutRecord[] =>
  events.map((event, i) => ({ topic, key: event.user_id, value: values?.[i] ?? JSON.stringify(event) }));

/** A record of `topic` around `value`, as a stage's decode sees it after consuming it. */
export const consumed = (topic: string, value: Buffer, partition = 0, offset = 0n): InRecord => ({
  topic,
  partition,
  offset,
  key: undefined,
  value,
  headers: {},
  timestamp: 0n,
});

/**
 * Deletes every bench row from `locations` (rows of other runs too, e.g. an enrich bench's events that a persist
 * drain wrote) and vacuums, so runs neither grow the table nor leave dead index entries behind for the next one.
 */
export async function deleteBenchRows(sql: Sql): Promise<number> {
  const { count } = await sql`delete from locations where user_id like ${`${BENCH_USER_PREFIX}%`}`;
  if (count > 0) await sql`vacuum (analyze) locations`;
  return count;
}
