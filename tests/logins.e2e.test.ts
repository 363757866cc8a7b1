/**
 * Login statistics end to end on the real broker and PostgreSQL: ingest -> aggregate -> persist -> the
 * `login_stats` view, checked against the statistics recomputed from the events themselves and from the audit
 * table, and across a SIGKILL of aggregate while a window is open.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { recompute, type TimedLogin } from "../aggregate/stats.ts";
import { createDb } from "../persist/postgres/db.ts";
import { createProducer, partitionFor, readRange } from "../shared/kafka.ts";
import { OPTIONAL_LOGIN_FIELDS } from "../shared/schemas.ts";
import { dlqOf, TOPICS } from "../shared/topics.ts";
import {
  pollUntil,
  readTopic,
  type Stage,
  snapshot,
  spawnStage,
  startIngest,
  testConfig,
  testKafka,
} from "./support.ts";

const WINDOW_MS = 2_000;
const run = crypto.randomUUID().slice(0, 8);
const env = testConfig();
const kafka = testKafka();
const sql = createDb(env, 2);
const stageEnv = {
  WINDOW_SECONDS: String(WINDOW_MS / 1000),
  WINDOW_GRACE_SECONDS: "1",
  WINDOW_IDLE_TICK_MS: "100",
};

/** Two users whose keys land on different partitions, so windows come from at least two partitions. */
const users = (() => {
  const first = `${run}-u0`;
  for (let i = 1; ; i++) {
    const other = `${run}-u${i}`;
    if (partitionFor(other, env.TOPIC_PARTITIONS) !== partitionFor(first, env.TOPIC_PARTITIONS)) return [first, other];
  }
})();

interface Login {
  event_id: string;
  user_id: string;
  timestamp: string;
  device_type?: string | null;
  app_version?: string;
  locale?: string;
  ip?: string;
  device_id?: string;
}

const DEVICES = ["android", "iOS", "Android", "web", "", null, undefined];

/** `count` logins spread evenly over `windows` windows from `start`, with missing fields and odd device names. */
function logins(series: string, start: number, windows: number, count: number): Login[] {
  return Array.from({ length: count }, (_, i) => {
    const device = DEVICES[i % DEVICES.length];
    return {
      event_id: `${run}-${series}-${i}`,
      user_id: users[i % 2] as string,
      timestamp: new Date(start + Math.floor((i * windows * WINDOW_MS) / count)).toISOString(),
      ...(device !== undefined && { device_type: device }),
      ...(i % 3 !== 0 && { app_version: "2.3.0" }),
      ...(i % 4 !== 0 && { locale: "RU" }),
      ...(i % 5 !== 0 && { ip: "199.172.111.135" }),
      device_id: i % 6 === 0 ? "" : `device-${i}`,
    };
  });
}

/** What the windows of `events` must hold, computed here from the events themselves. */
const expected = (events: Login[]) => recompute(events, WINDOW_MS);

type ViewRow = {
  timestamp_start: Date;
  interval_messages_consumed: string;
  late_messages: string;
  interval_device_type_count: Record<string, number>;
  interval_missing_field_count: Record<string, number>;
  total_messages_consumed: string;
};

const viewRows = (from: number, to: number) =>
  sql<ViewRow[]>`select * from login_stats
    where timestamp_start >= ${new Date(from)} and timestamp_start < ${new Date(to)} order by timestamp_start`;

/** Polls the view until it holds exactly the windows of `events`, then returns them by start time. */
async function waitForWindows(events: Login[], from: number, to: number) {
  const want = expected(events);
  const total = events.length;
  const rows = await pollUntil(
    `${want.size} windows holding ${total} logins`,
    async () => {
      const found = await viewRows(from, to);
      const counted = found.reduce((sum, row) => sum + Number(row.interval_messages_consumed), 0);
      return found.length === want.size && counted === total ? found : undefined;
    },
    60_000,
  );
  return { want, rows };
}

function expectWindowsMatch(want: ReturnType<typeof expected>, rows: ViewRow[]) {
  const got = Object.fromEntries(
    rows.map((row) => [
      row.timestamp_start.toISOString(),
      {
        messages: Number(row.interval_messages_consumed),
        devices: row.interval_device_type_count,
        missing: row.interval_missing_field_count,
      },
    ]),
  );
  expect(got).toEqual(Object.fromEntries(want));
}

/** The same statistics recomputed from the rows persist stored in the audit table. */
async function recomputed(series: string) {
  const rows = await sql<TimedLogin[]>`
    select event_time as timestamp, ${sql(OPTIONAL_LOGIN_FIELDS)} from logins
    where event_id like ${`${run}-${series}-%`}`;
  return recompute(rows, WINDOW_MS);
}

let ingest: Awaited<ReturnType<typeof startIngest>>;
let aggregate: Stage;
let persist: Stage;

async function post(events: Login[]) {
  const body = events.map((event) => JSON.stringify(event)).join("\n");
  const response = await ingest.post("/v1/logins", body, { "content-type": "application/x-ndjson" });
  expect(response.status).toBe(202);
}

/**
 * A window boundary ahead of now and of every window this file used before: event time only moves forward per
 * partition, so an earlier start would make a test's events late.
 */
let used = 0;
const nextStart = (windows: number) => {
  const start = Math.max(Math.ceil(Date.now() / WINDOW_MS) * WINDOW_MS + 10 * WINDOW_MS, used + 2 * WINDOW_MS);
  used = start + windows * WINDOW_MS;
  return start;
};

beforeAll(async () => {
  ingest = await startIngest();
  [aggregate, persist] = await Promise.all([spawnStage("aggregate", stageEnv), spawnStage("persist", stageEnv)]);
});

afterAll(async () => {
  await Promise.all([aggregate?.stop(), persist?.stop(), ingest?.stop()]);
  await sql.end();
});

describe("login statistics end to end", () => {
  test("windows across 3+ windows and 2 partitions hold exact counts, totals and histograms", async () => {
    const start = nextStart(4);
    const events = logins("main", start, 4, 400);
    await post(events);
    const { want, rows } = await waitForWindows(events, start, start + 4 * WINDOW_MS);
    expect(rows.length).toBe(4);
    expectWindowsMatch(want, rows);
    expect(await recomputed("main")).toEqual(want);
    // Running totals grow by exactly each window's count (and nothing is late here).
    for (let i = 1; i < rows.length; i++) {
      const row = rows[i] as ViewRow;
      const before = rows[i - 1] as ViewRow;
      expect(Number(row.total_messages_consumed) - Number(before.total_messages_consumed)).toBe(
        Number(row.interval_messages_consumed),
      );
      expect(Number(row.late_messages)).toBe(0);
    }
    const partitions = await sql`select distinct partition from login_window_stats
      where window_start >= ${new Date(start)} and window_start < ${new Date(start + 4 * WINDOW_MS)}`;
    expect(partitions.length).toBe(2);
  }, 90_000);

  test("a late event is counted in the next window and written to logins.late", async () => {
    const start = nextStart(4);
    const before = await snapshot(TOPICS.loginsLate);
    const [first] = logins("late-a", start, 1, 1) as [Login];
    await post([first]);
    await waitForWindows([first], start, start + WINDOW_MS);
    // The first window has closed; an event for it now is late, and the next window of its partition counts it.
    const late = { ...first, event_id: `${run}-late-b-0` };
    const next = { ...first, event_id: `${run}-late-c-0`, timestamp: new Date(start + 3 * WINDOW_MS).toISOString() };
    await post([late]);
    await post([next]);
    const row = await pollUntil("the window after the late event", async () => {
      const [found] = await viewRows(start + 3 * WINDOW_MS, start + 4 * WINDOW_MS);
      return found;
    });
    expect(Number(row.late_messages)).toBe(1);
    expect(Number(row.interval_messages_consumed)).toBe(1);
    const letters = await readTopic(TOPICS.loginsLate, before, (all) =>
      all.some((r) => r.value.toString().includes(late.event_id)),
    );
    const letter = letters.find((r) => r.value.toString().includes(late.event_id));
    expect(letter?.headers).toMatchObject({ "dlq.error.class": "LateEvent", "dlq.source.topic": TOPICS.loginsRaw });
  }, 90_000);

  test("a login a plain producer writes to logins.raw (no event_id, no ingested_at, naive time) counts and is stored", async () => {
    const start = nextStart(1);
    const user = users[0] as string;
    const partition = partitionFor(user, env.TOPIC_PARTITIONS);
    const letters = await snapshot(dlqOf(TOPICS.loginsRaw));
    // Written as a Python producer would: a naive datetime, taken as UTC, and nothing ingest would add.
    const naive = (ms: number) => `${new Date(ms).toISOString().slice(0, 23).replace("T", " ")}000`;
    const bodies = [0, 1, 2].map((i) => ({ user_id: user, timestamp: naive(start + i * 100), device_type: "web" }));
    const producer = createProducer({ kafka, clientId: "test-plain-producer" });
    const deliveries = await producer.send(
      bodies.map((body) => ({ topic: TOPICS.loginsRaw, key: user, value: JSON.stringify(body) })),
    );
    await producer.close();
    const ids = deliveries.map((d) => `${TOPICS.loginsRaw}:${d.partition}:${d.offset}`);

    const stored = await pollUntil("the three logins in the audit table", async () => {
      const rows = await sql<{ event_id: string; event_time: Date; ingested_at: Date | null }[]>`
        select event_id, event_time, ingested_at from logins where event_id = any(${ids}) order by event_id`;
      return rows.length === 3 ? rows : undefined;
    });
    expect(stored.map((row) => row.event_time.getTime()).sort()).toEqual([start, start + 100, start + 200]);
    for (const row of stored) expect(row.ingested_at?.getTime()).toBeGreaterThan(0);

    const [window] = await pollUntil("the window of the three logins", async () => {
      const rows = await sql<{ messages: number; device_type_count: Record<string, number> }[]>`
        select messages, device_type_count from login_window_stats
        where window_start = ${new Date(start)} and partition = ${partition}`;
      return rows.length > 0 ? rows : undefined;
    });
    expect(window).toEqual({ messages: 3, device_type_count: { web: 3 } });
    const dead = await readRange({
      kafka,
      topic: dlqOf(TOPICS.loginsRaw),
      from: letters,
      until: "end",
      timeoutMs: 10_000,
    });
    expect(dead.filter((record) => record.key?.toString() === user)).toEqual([]);
  }, 60_000);

  test("SIGKILL of aggregate while a window is open changes no final statistic", async () => {
    const start = nextStart(6);
    const events = logins("crash", start, 6, 600);
    await post(events.slice(0, 300));
    // Kill once the first window is out and later ones are still open.
    await pollUntil("the first window", async () =>
      (await viewRows(start, start + WINDOW_MS)).length ? true : undefined,
    );
    expect(await aggregate.stop("SIGKILL")).not.toBe(0);
    await post(events.slice(300));
    aggregate = await spawnStage("aggregate", stageEnv);
    const { want, rows } = await waitForWindows(events, start, start + 6 * WINDOW_MS);
    expectWindowsMatch(want, rows);
    expect(await recomputed("crash")).toEqual(want);
    const first = rows[0] as ViewRow;
    const last = rows[rows.length - 1] as ViewRow;
    expect(Number(last.total_messages_consumed) - Number(first.total_messages_consumed)).toBe(
      events.length - Number(first.interval_messages_consumed),
    );
  }, 120_000);
});
