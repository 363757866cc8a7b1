/**
 * The edges of a fault run: where its event time may start, the logins that make every partition close its
 * windows, and waiting until the pipeline has consumed everything (polling with a deadline, never sleeping a
 * fixed time).
 */
import type { Sql } from "../../persist/postgres/db.ts";
import { endOffsets, type KafkaConnection, lastRecords, type Position, partitionFor } from "../../shared/kafka.ts";
import { TOPICS } from "../../shared/topics.ts";
import type { LoginBody } from "../generators.ts";
import { groupOf } from "../harness.ts";
import { pollEvery } from "../poll.ts";
import { post, type RequestResult } from "../traffic.ts";
import { committedOffsets, slot } from "./groups.ts";

/** The group of persist's MongoDB sink. */
export const MONGODB_GROUP = groupOf("persist", { ...process.env, PERSIST_SINK: "mongodb" }) as string;

/** The topics some stage of the run consumes: the pipeline has drained once each is consumed to its end. */
const CONSUMED = [
  TOPICS.locationsRaw,
  TOPICS.vehiclesRaw,
  TOPICS.loginsRaw,
  TOPICS.locationsEnriched,
  TOPICS.vehiclesEnriched,
  TOPICS.loginsStats,
  TOPICS.loginsIntervals,
];

/** Every topic the checks read, with its end offsets now. */
export async function snapshot(kafka: KafkaConnection): Promise<Map<string, Position[]>> {
  const topics = [...CONSUMED, TOPICS.loginsLate];
  return new Map(await Promise.all(topics.map(async (t) => [t, await endOffsets(kafka, t)] as const)));
}

/**
 * A window boundary after now, after every window already emitted and after every stored login: event time
 * only moves forward per partition, so anything earlier would be late. Others' leftovers must have been
 * consumed (and stored) before this is asked.
 */
export async function nextFreeWindow(kafka: KafkaConnection, sql: Sql, windowMs: number): Promise<number> {
  const emitted = await lastRecords(kafka, TOPICS.loginsStats);
  let latest = Date.now();
  for (const record of emitted.values()) {
    const end = Date.parse((JSON.parse(record.value.toString()) as { timestamp_end?: string }).timestamp_end ?? "");
    if (end > latest) latest = end;
  }
  const [row] = await sql<{ end: Date | null; last: Date | null }[]>`
    select (select max(window_end) from login_window_stats) as end, (select max(event_time) from logins) as last`;
  for (const time of [row?.end, row?.last]) if (time && time.getTime() > latest) latest = time.getTime();
  return Math.ceil(latest / windowMs) * windowMs + windowMs;
}

/**
 * Posts one login per partition in the window starting at `start`, so that every partition closes its windows
 * and emits the late counts it holds. Retried with the same event_ids (what the API asks after a 503) until
 * accepted; returns the accepted request and, when it took retries, the ids whose extra copies are expected.
 */
export async function sendClosers(
  kafka: KafkaConnection,
  ingestUrl: string,
  idPrefix: string,
  start: number,
): Promise<{ result: RequestResult; retried: string[] }> {
  const partitions = (await endOffsets(kafka, TOPICS.loginsRaw)).length;
  const events: LoginBody[] = [];
  for (let i = 0, p = 0; p < partitions; i++) {
    const user = `${idPrefix}-closer-${i}`;
    if (partitionFor(user, partitions) !== p) continue;
    events.push({ event_id: `${idPrefix}-s-${p}`, user_id: user, timestamp: new Date(start + 100).toISOString() });
    p++;
  }
  let attempts = 0;
  const result = await pollEvery(
    "the closing logins to be accepted",
    async () => {
      attempts++;
      const answer = await post(ingestUrl, "/v1/logins", events, { timeoutMs: 15_000 });
      return answer.outcome === "ok" ? answer : undefined;
    },
    60_000,
    1_000,
  );
  return {
    result: { ...result, invalid: false },
    retried: attempts > 1 ? events.map((e) => e.event_id as string) : [],
  };
}

export interface DrainOptions {
  kafka: KafkaConnection;
  sql: Sql;
  what: string;
  timeoutMs: number;
  /** Also wait for the aggregate, which commits only up to its oldest open window. */
  withAggregate: boolean;
  /** Also wait for persist's MongoDB sink, whose group commits to Kafka right after each acknowledged write. */
  withMongodb: boolean;
  say: (line: string) => void;
}

/**
 * Moves the positions persist's PostgreSQL sink keeps in `consumer_offsets` for `group` up to `ends` (never
 * down), so that records before them count as persisted.
 */
export async function raiseStoredPositions(sql: Sql, group: string, ends: Position[]): Promise<void> {
  if (ends.length === 0) return;
  await sql`
    insert into consumer_offsets (group_id, topic, partition, next_offset)
    select ${group}, t, p, n
    from unnest(${ends.map((e) => e.topic)}::text[], ${ends.map((e) => e.partition)}::int[],
      ${ends.map((e) => e.offset.toString())}::bigint[]) as u(t, p, n)
    on conflict (group_id, topic, partition) do update
      set next_offset = greatest(consumer_offsets.next_offset, excluded.next_offset), updated_at = now()`;
}

/**
 * Waits until every stage has committed everything in its input and nothing new appears for a second: enrich
 * and aggregate by their committed offsets in Kafka, persist by its offsets in PostgreSQL (its source of truth).
 */
export async function drain(options: DrainOptions): Promise<void> {
  const { kafka, sql, say } = options;
  let previous = "";
  let behind: string[] = [];
  let lastReport = Date.now();
  const probe = async () => {
    const ends = new Map<string, Position[]>(
      await Promise.all(CONSUMED.map(async (t) => [t, await endOffsets(kafka, t)] as const)),
    );
    const [enrich, aggregate, mongodb] = await Promise.all([
      committedOffsets(kafka, groupOf("enrich") as string),
      committedOffsets(kafka, groupOf("aggregate") as string),
      committedOffsets(kafka, MONGODB_GROUP),
    ]);
    // persist's source of truth is the offsets PostgreSQL keeps with its rows, not the group's Kafka commits.
    const stored = await sql<{ topic: string; partition: number; next_offset: string }[]>`
      select topic, partition, next_offset from consumer_offsets where group_id = ${groupOf("persist") as string}`;
    const persist = new Map(stored.map((r) => [slot(r.topic, r.partition), BigInt(r.next_offset)]));
    const readers: [string, string, Map<string, bigint>][] = [
      ["enrich", TOPICS.locationsRaw, enrich],
      ["enrich", TOPICS.vehiclesRaw, enrich],
      ["persist", TOPICS.locationsEnriched, persist],
      ["persist", TOPICS.vehiclesEnriched, persist],
      ["persist", TOPICS.loginsRaw, persist],
      ["persist", TOPICS.loginsStats, persist],
      // intervals commits only up to its last record, so it is waited for through what persist stored of it.
      ["persist", TOPICS.loginsIntervals, persist],
    ];
    if (options.withAggregate) readers.push(["aggregate", TOPICS.loginsRaw, aggregate]);
    if (options.withMongodb)
      for (const topic of [TOPICS.locationsEnriched, TOPICS.vehiclesEnriched])
        readers.push([MONGODB_GROUP, topic, mongodb]);
    behind = [];
    for (const [group, topic, committed] of readers) {
      let lag = 0n;
      for (const end of ends.get(topic) ?? []) {
        const done = committed.get(slot(topic, end.partition)) ?? 0n;
        if (done < end.offset) lag += end.offset - done;
      }
      if (lag > 0n) behind.push(`${group} ${lag} behind on ${topic}`);
    }
    const fingerprint = JSON.stringify([...ends].map(([t, ps]) => [t, ps.map((p) => String(p.offset))]));
    const stable = fingerprint === previous;
    previous = fingerprint;
    if (behind.length === 0 && stable) return true;
    if (Date.now() - lastReport > 5_000) {
      lastReport = Date.now();
      say(`draining: ${behind.length ? behind.join(", ") : "caught up, checking nothing new arrives"}`);
    }
    return undefined;
  };
  try {
    await pollEvery(options.what, probe, options.timeoutMs, 1_000);
  } catch (error) {
    throw new Error(`${(error as Error).message}; still behind: ${behind.join(", ") || "(none)"}`);
  }
}
