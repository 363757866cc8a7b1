/**
 * The verdict of a fault run: the client's ledger against PostgreSQL and against the topics themselves.
 *
 * What is asserted, and why it can be:
 * - lost: every event of a 2xx is stored (ingest's contract: 202 only after the broker acked all of them);
 * - stranded: every run event that reached a raw topic is stored, whatever its HTTP outcome: once in Kafka,
 *   delivery is the pipeline's job;
 * - duplicates: no event_id has two rows (PostgreSQL's keys make this a formality; it is counted anyway);
 * - unexpected: no event of a 4xx is stored (validation is all or nothing), and no row exists that the client
 *   never sent;
 * - 5xx and unanswered requests may go either way (the API documents a 503 as "maybe written"): counted only;
 * - ingest duplicates: no event appears twice in a raw topic (idempotent producer, and the client never
 *   retries), so any unique-key conflict persist meets must come from a replay upstream of it;
 * - conflicts: persist's rows_conflicting_total, summed over its lifetimes, is at most the copies beyond the
 *   first that the topics it reads hold (enrich's replays into locations.enriched and vehicles.enriched,
 *   re-emitted windows). More
 *   would mean persist tried to insert a record twice past its offset store. The sum is a lower bound (a
 *   SIGKILL loses what happened since the last scrape), so only this direction is asserted;
 * - aggregates: each window of the run in `login_stats` (the merged windows of `login_intervals`) equals the
 *   statistics recomputed from the stored `logins` rows, late events (those copied to logins.late) counted in
 *   `late_messages` instead; totals grow by exactly the run's logins, overall and per partition (running totals
 *   survive SIGKILL of aggregate);
 * - intervals: each window of the run is on logins.intervals and equals the recomputation there too, and no
 *   window was emitted twice with different content (SIGKILL of intervals and of aggregate included).
 *
 * Topics, consumer groups and tables are shared with whatever else runs against the same stack. Other traffic
 * cannot change the per-event checks (they count only the run's event_ids), but it can add late events to the
 * run's windows or conflicts to persist's counters; checks that assume the pipeline to themselves are then
 * reported INCONCLUSIVE instead of failing, and the run says how much other traffic it saw.
 */

import type { Db } from "mongodb";
import { type LoginStats, recompute, type TimedLogin } from "../../aggregate/stats.ts";
import type { Sql } from "../../persist/postgres/db.ts";
import { type KafkaConnection, type Position, scanRange } from "../../shared/kafka.ts";
import { DECODERS } from "../../shared/records.ts";
import type { LoginInterval } from "../../shared/schemas.ts";
import { OPTIONAL_LOGIN_FIELDS } from "../../shared/schemas.ts";
import { TOPICS } from "../../shared/topics.ts";
import { FATES, type Fate, type Ledger, type Table } from "./ledger.ts";
import { eventCopies, extraCopies, keyCopies } from "./topics.ts";

/** One line of the verdict. `ok` undefined: reported, not asserted. */
export interface Check {
  name: string;
  value: number | string;
  expected: string;
  ok: boolean | undefined;
  /** What the check assumes nobody else uses: other logins, or any other traffic through the pipeline. */
  assumes?: "logins" | "pipeline";
}

export type Result = "ok" | "FAIL" | "INCONCLUSIVE" | "";

/** Traffic the run did not send, seen in the shared topics and groups while it ran. */
export interface Contamination {
  otherLocations: number;
  otherVehicles: number;
  otherLogins: number;
  /** Sightings of consumer-group members that were not the run's. */
  otherMembers: number;
}

/** A check's result: a failure is inconclusive when other traffic could explain it. */
export function resultOf(check: Check, contamination: Contamination): Result {
  if (check.ok === undefined) return "";
  if (check.ok) return "ok";
  const others =
    contamination.otherMembers +
    contamination.otherLogins +
    (check.assumes === "pipeline" ? contamination.otherLocations + contamination.otherVehicles : 0);
  return check.assumes && others > 0 ? "INCONCLUSIVE" : "FAIL";
}

export interface RunFacts {
  sql: Sql;
  /** The MongoDB sink's database, when the run had persist write there too. */
  mongo: Db | undefined;
  kafka: KafkaConnection;
  /** Every event_id and user_id of the run starts with `${run}-`. */
  run: string;
  ledger: Ledger;
  /** End offsets of each topic before the run produced anything. */
  startOffsets: Map<string, Position[]>;
  /** The aggregate's window length and the event-time range of the run's windows. */
  windowMs: number;
  range: { from: number; to: number };
  /** persist's counters, each summed over its lifetimes (last scrape of each). */
  persist: { conflicts: number; written: number; replayed: number };
  topicTimeoutMs: number;
  /** Events the client sent more than once (retries with the same event_id): their extra copies are expected. */
  retriedIds: Set<string>;
  /** Sightings of members of the stages' groups that were not the run's. */
  otherMembers: string[];
}

/** Each table of the run's events, and the raw topic its events arrive on. */
const TOPIC_OF: Record<Table, string> = {
  locations: TOPICS.locationsRaw,
  vehicle_positions: TOPICS.vehiclesRaw,
  logins: TOPICS.loginsRaw,
};

/** Where the run's events are stored: PostgreSQL's tables, or the MongoDB sink's collections of the same names. */
type Store = { kind: "postgres"; sql: Sql } | { kind: "mongodb"; db: Db };

/** Stored event_ids of the run in `table` (a scan: `like` cannot use the key's index under this collation). */
async function storedIds(store: Store, table: Table, run: string): Promise<string[]> {
  if (store.kind === "mongodb") {
    const filter = { _id: { $regex: `^${run}-` } } as never;
    const documents = await store.db
      .collection(table)
      .find(filter, { projection: { _id: 1 } })
      .toArray();
    return documents.map((document) => String(document._id));
  }
  const { sql } = store;
  const rows = await sql<{ event_id: string }[]>`
    select event_id from ${sql(table)} where event_id like ${`${run}-%`}`;
  return rows.map((row) => row.event_id);
}

/** The ledger against the rows of one table and the copies of the run's events in its raw topic. */
async function accountTable(facts: RunFacts, store: Store, table: Table, raw: Map<string, number>, checks: Check[]) {
  const { run, ledger } = facts;
  const ids = await storedIds(store, table, run);
  // PostgreSQL's checks keep their names; the MongoDB sink's say whose they are.
  const where = store.kind === "postgres" ? table : `mongodb ${table}`;
  const stored = new Set(ids);
  const fates = ledger.fates[table];
  const present = new Map<Fate, number>(FATES.map((f) => [f, 0]));
  const absent = new Map<Fate, number>(FATES.map((f) => [f, 0]));
  for (const [id, fate] of fates) {
    const counts = stored.has(id) ? present : absent;
    counts.set(fate, (counts.get(fate) ?? 0) + 1);
  }
  const unknown = ids.filter((id) => !fates.has(id)).length;
  const stranded = [...raw.keys()].filter((id) => !stored.has(id));
  const written = new Map([...raw].filter(([id]) => !facts.retriedIds.has(id)));
  const n = (map: Map<Fate, number>, fate: Fate) => map.get(fate) ?? 0;

  checks.push(
    { name: `${where}: acked events`, value: n(present, "ok") + n(absent, "ok"), expected: "", ok: undefined },
    { name: `${where}: lost (acked, no row)`, value: n(absent, "ok"), expected: "0", ok: n(absent, "ok") === 0 },
    {
      name: `${where}: stranded (in ${TOPIC_OF[table]}, no row)`,
      value: stranded.length,
      expected: "0",
      ok: stranded.length === 0,
    },
    {
      name: `${where}: duplicates (event_ids with >1 row)`,
      value: ids.length - stored.size,
      expected: "0",
      ok: ids.length === stored.size,
    },
    {
      name: `${where}: unexpected (4xx or never sent, yet stored)`,
      value: n(present, "rejected") + unknown,
      expected: "0",
      ok: n(present, "rejected") + unknown === 0,
    },
    {
      name: `${where}: 5xx events present / absent`,
      value: `${n(present, "unacknowledged")} / ${n(absent, "unacknowledged")}`,
      expected: "either",
      ok: undefined,
    },
    {
      name: `${where}: unanswered events present / absent`,
      value: `${n(present, "indeterminate")} / ${n(absent, "indeterminate")}`,
      expected: "either",
      ok: undefined,
    },
    {
      // Reported, not asserted: when the broker restarts and has lost the producer's state, the Kafka client
      // sends an unacknowledged batch again under a new producer id, so the broker cannot tell it is a copy. Each
      // copy carries its event_id, and the stores and the window fold count an event_id once: the checks above
      // and below hold the pipeline to that.
      name: `${where}: the client wrote a batch twice (extra copies in ${TOPIC_OF[table]})`,
      value: extraCopies(written),
      expected: "",
      ok: undefined,
    },
  );
  return {
    stranded: stranded.slice(0, 10),
    lost: [...fates].filter(([id, f]) => f === "ok" && !stored.has(id)).slice(0, 10),
  };
}

type Counts = Record<string, number>;

/** Equal histograms, ignoring key order and zero entries. */
function sameCounts(a: Counts, b: Counts): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((key) => Number(a[key] ?? 0) === Number(b[key] ?? 0));
}

/** A window's interval statistics differ from the recomputation's (undefined: the window is missing). */
function unlike(got: { messages: number; devices: Counts; missing: Counts } | undefined, want: LoginStats): boolean {
  return (
    got === undefined ||
    got.messages !== want.messages ||
    !sameCounts(got.devices, want.devices) ||
    !sameCounts(got.missing, want.missing)
  );
}

/** The check that `mismatched` windows of what `where` holds differ from the recomputation. */
const unlikeCheck = (where: string, mismatched: number): Check => ({
  name: `${where}: windows unlike the recomputation`,
  value: mismatched,
  expected: "0",
  ok: mismatched === 0,
  assumes: "logins",
});

/**
 * `login_stats` of the run's windows against a recomputation from the stored `logins` rows; returns how many
 * late events of others logins.late held (they are counted in whichever window of their partition is next),
 * and the recomputation.
 */
async function accountAggregates(
  facts: RunFacts,
  checks: Check[],
  details: string[],
): Promise<{ otherLate: number; recomputed: Map<string, LoginStats> }> {
  const { sql, run, windowMs, range } = facts;
  const from = new Date(range.from);
  const to = new Date(range.to);
  const like = `${run}-%`;

  const late = await eventCopies(
    facts.kafka,
    TOPICS.loginsLate,
    facts.startOffsets.get(TOPICS.loginsLate) ?? [],
    `${run}-`,
    facts.topicTimeoutMs,
  );
  const lateIds = [...late.copies.keys()];
  const [foreign] = await sql<{ n: number }[]>`
    select count(*)::int as n from logins
    where event_time >= ${from} and event_time < ${to} and event_id not like ${like}`;
  const foreignCount = foreign?.n ?? 0;
  checks.push({
    name: "aggregates: other logins in the run's windows",
    value: foreignCount,
    expected: "0 (else not comparable)",
    ok: foreignCount === 0,
    assumes: "logins",
  });

  const view = await sql<
    {
      start: Date;
      messages: string;
      late: string;
      devices: Counts;
      missing: Counts;
      total: string;
    }[]
  >`
    select timestamp_start as start, interval_messages_consumed as messages, late_messages as late,
      interval_device_type_count as devices, interval_missing_field_count as missing, total_messages_consumed as total
    from login_stats where timestamp_start >= ${from} and timestamp_start < ${to} order by timestamp_start`;
  const [before] = await sql<{ total: string | null }[]>`
    select max(total_messages_consumed) as total from login_stats where timestamp_start < ${from}`;

  // The recomputation: the run's stored logins by window, late ones left out of the window counts.
  const recomputed = recompute(
    await sql<TimedLogin[]>`
      select event_time as timestamp, ${sql(OPTIONAL_LOGIN_FIELDS)} from logins
      where event_id like ${like} and event_id <> all(${lateIds}::text[])`,
    windowMs,
  );
  const [stored] = await sql<{ n: number; late: number }[]>`
    select count(*)::int as n, count(*) filter (where event_id = any(${lateIds}::text[]))::int as late
    from logins where event_id like ${like}`;
  const runLogins = stored?.n ?? 0;

  const byStart = new Map(view.map((row) => [row.start.toISOString(), row]));
  let mismatched = 0;
  for (const [key, want] of recomputed) {
    const got = byStart.get(key);
    byStart.delete(key);
    if (unlike(got && { ...got, messages: Number(got.messages) }, want)) {
      mismatched++;
      if (mismatched <= 5)
        details.push(
          `window ${key}: login_stats ${got ? JSON.stringify({ messages: Number(got.messages), devices: got.devices, missing: got.missing }) : "missing"}` +
            ` vs recomputed ${JSON.stringify({ messages: want.messages, devices: want.devices, missing: want.missing })}`,
        );
    }
  }
  // Windows in the view that the recomputation has no events for: fine only if they hold nothing but late counts.
  for (const [key, row] of byStart) {
    if (Number(row.messages) !== 0) {
      mismatched++;
      details.push(`window ${key}: login_stats counts ${row.messages} messages, recomputation has none`);
    }
  }
  const viewLate = view.reduce((sum, row) => sum + Number(row.late), 0);
  const viewCounted = view.reduce((sum, row) => sum + Number(row.messages) + Number(row.late), 0);
  const totalGrowth = view.length > 0 ? Number(view[view.length - 1]?.total) - Number(before?.total ?? 0) : 0;

  checks.push(
    { name: "aggregates: windows of the run", value: recomputed.size, expected: "", ok: undefined },
    unlikeCheck("aggregates", mismatched),
    {
      name: "aggregates: late events (in logins.late, stored)",
      value: `${viewLate} counted / ${stored?.late ?? 0} stored`,
      expected: "equal",
      ok: viewLate === (stored?.late ?? 0),
      assumes: "logins",
    },
    {
      name: "aggregates: interval + late over the run",
      value: `${viewCounted} / ${runLogins} logins`,
      expected: "equal",
      ok: viewCounted === runLogins,
      assumes: "logins",
    },
    {
      name: "aggregates: growth of login_stats totals",
      value: `${totalGrowth} / ${runLogins} logins`,
      expected: "equal",
      ok: totalGrowth === runLogins,
      assumes: "logins",
    },
  );

  // Per partition: the aggregate's own running totals, which a restarted member rebuilds from logins.stats.
  const partitions = await sql<
    { partition: number; windows: number; growth: number; counted: number; broken: number }[]
  >`
    with w as (
      select partition, window_start, total_messages, messages + late_messages as counted,
        total_messages - lag(total_messages) over (partition by partition order by window_start) as step
      from login_window_stats where window_start >= ${from} and window_start < ${to}
    )
    select partition, count(*)::int as windows, sum(counted)::int as counted,
      ((array_agg(total_messages order by window_start desc))[1]
        - (array_agg(total_messages - counted order by window_start))[1])::int as growth,
      count(*) filter (where step is not null and step <> counted)::int as broken
    from w group by partition order by partition`;
  const perPartition = await sql<{ partition: number; n: number }[]>`
    select source_partition as partition, count(*)::int as n from logins where event_id like ${like} group by 1`;
  const want = new Map(perPartition.map((row) => [row.partition, row.n]));
  let badPartitions = 0;
  for (const p of partitions) {
    const expected = want.get(p.partition) ?? 0;
    want.delete(p.partition);
    if (p.broken > 0 || p.counted !== expected || p.growth !== expected) {
      badPartitions++;
      details.push(
        `partition ${p.partition}: ${p.windows} windows count ${p.counted}, totals grow by ${p.growth}, ` +
          `${p.broken} steps unlike their window; ${expected} stored logins`,
      );
    }
  }
  for (const [partition, n] of want) {
    badPartitions++;
    details.push(`partition ${partition}: ${n} stored logins but no window`);
  }
  checks.push({
    name: "aggregates: partitions whose running totals are off",
    value: badPartitions,
    expected: "0",
    ok: badPartitions === 0,
    assumes: "logins",
  });
  return { otherLate: late.others, recomputed };
}

/**
 * The run's windows on logins.intervals: every copy of each, which must all be alike, and the last against the
 * recomputation (the same one login_stats was checked against).
 */
async function accountIntervals(
  facts: RunFacts,
  recomputed: Map<string, LoginStats>,
  checks: Check[],
  details: string[],
): Promise<void> {
  const copies = new Map<number, LoginInterval[]>();
  await scanRange({
    kafka: facts.kafka,
    topic: TOPICS.loginsIntervals,
    from: facts.startOffsets.get(TOPICS.loginsIntervals) ?? [],
    until: "end",
    timeoutMs: facts.topicTimeoutMs,
    visit: (record) => {
      const interval = DECODERS[TOPICS.loginsIntervals](record);
      const start = interval.timestamp_start * 1000;
      if (start < facts.range.from || start >= facts.range.to) return;
      copies.set(start, [...(copies.get(start) ?? []), interval]);
    },
  });
  let changed = 0;
  let repeated = 0;
  for (const [start, emitted] of copies) {
    repeated += emitted.length - 1;
    if (emitted.some((interval) => !Bun.deepEquals(interval, emitted[0], true))) {
      changed++;
      details.push(`interval ${new Date(start).toISOString()}: emitted differently: ${JSON.stringify(emitted)}`);
    }
  }
  let mismatched = 0;
  for (const [key, want] of recomputed) {
    const got = copies.get(Date.parse(key))?.at(-1);
    const stats = got && {
      messages: got.interval_messages_consumed,
      devices: got.interval_device_type_count,
      missing: got.interval_missing_field_count,
    };
    if (unlike(stats, want)) {
      mismatched++;
      if (mismatched <= 5)
        details.push(
          `interval ${key}: logins.intervals ${JSON.stringify(stats ?? "missing")} vs ${JSON.stringify(want)}`,
        );
    }
  }
  checks.push(
    { name: "intervals: windows of the run on logins.intervals", value: copies.size, expected: "", ok: undefined },
    unlikeCheck("intervals", mismatched),
    { name: "intervals: windows emitted twice, differently", value: changed, expected: "0", ok: changed === 0 },
    { name: "intervals: windows emitted twice, alike", value: repeated, expected: "", ok: undefined },
  );
}

/** The whole verdict: checks in report order, what other traffic was seen, and details of failed checks. */
export async function account(
  facts: RunFacts,
): Promise<{ checks: Check[]; contamination: Contamination; details: string[] }> {
  const checks: Check[] = [];
  const details: string[] = [];
  const raw = new Map<Table, Awaited<ReturnType<typeof eventCopies>>>();
  for (const [table, topic] of Object.entries(TOPIC_OF) as [Table, string][]) {
    const copies = await eventCopies(
      facts.kafka,
      topic,
      facts.startOffsets.get(topic) ?? [],
      `${facts.run}-`,
      facts.topicTimeoutMs,
    );
    raw.set(table, copies);
    const stores: Store[] = [{ kind: "postgres", sql: facts.sql }];
    // The MongoDB sink stores the enriched topics only, under the same collection names.
    if (facts.mongo && table !== "logins") stores.push({ kind: "mongodb", db: facts.mongo });
    for (const store of stores) {
      const { stranded, lost } = await accountTable(facts, store, table, copies.copies, checks);
      const where = store.kind === "postgres" ? table : `mongodb ${table}`;
      if (lost.length > 0) details.push(`${where}: lost event_ids (first 10): ${lost.map(([id]) => id).join(", ")}`);
      if (stranded.length > 0) details.push(`${where}: stranded event_ids (first 10): ${stranded.join(", ")}`);
    }
  }
  const { otherLate, recomputed } = await accountAggregates(facts, checks, details);
  await accountIntervals(facts, recomputed, checks, details);

  // Copies beyond the first in what persist reads: the most conflicts that replays upstream can explain.
  const replays = new Map<string, number>();
  for (const topic of [TOPICS.locationsEnriched, TOPICS.vehiclesEnriched]) {
    const { copies } = await eventCopies(
      facts.kafka,
      topic,
      facts.startOffsets.get(topic) ?? [],
      `${facts.run}-`,
      facts.topicTimeoutMs,
    );
    replays.set(topic, extraCopies(copies));
  }
  const { from, to } = facts.range;
  const windows = await keyCopies(
    facts.kafka,
    TOPICS.loginsStats,
    facts.startOffsets.get(TOPICS.loginsStats) ?? [],
    (key) => {
      const start = Date.parse(key.split("/")[0] ?? "");
      return start >= from && start < to;
    },
    facts.topicTimeoutMs,
  );
  const explained =
    [...replays.values()].reduce((sum, n) => sum + n, 0) +
    extraCopies(windows) +
    extraCopies(raw.get("logins")?.copies ?? new Map());
  checks.push(
    ...[...replays].map(([topic, n]) => ({
      name: `replays: extra copies in ${topic}`,
      value: n,
      expected: "",
      ok: undefined,
    })),
    { name: "replays: re-emitted windows in logins.stats", value: extraCopies(windows), expected: "", ok: undefined },
    { name: "persist: records_replayed_total (run)", value: facts.persist.replayed, expected: "", ok: undefined },
    {
      name: "persist: rows_conflicting_total (run)",
      value: facts.persist.conflicts,
      expected: `<= ${explained} (extra copies)`,
      ok: facts.persist.conflicts <= explained,
      assumes: "pipeline",
    },
  );
  const contamination: Contamination = {
    otherLocations: raw.get("locations")?.others ?? 0,
    otherVehicles: raw.get("vehicle_positions")?.others ?? 0,
    otherLogins: (raw.get("logins")?.others ?? 0) + otherLate,
    otherMembers: facts.otherMembers.length,
  };
  return { checks, contamination, details };
}
