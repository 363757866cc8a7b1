/**
 * Login statistics end to end on the real broker and PostgreSQL: ingest -> aggregate -> intervals -> persist ->
 * `login_intervals` and the `login_stats` view, checked against the statistics recomputed from the events
 * themselves and from the audit table, and across a SIGKILL of aggregate and of intervals while windows are open.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { recompute, type TimedLogin } from "../aggregate/stats.ts";
import { createDb } from "../persist/postgres/db.ts";
import { createProducer, type InRecord, partitionFor, readRange } from "../shared/kafka.ts";
import { DECODERS } from "../shared/records.ts";
import { type LoginInterval, OPTIONAL_LOGIN_FIELDS } from "../shared/schemas.ts";
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
let intervals: Stage;
let persist: Stage;

/** The interval records of logins.intervals from `from` to its end now whose window starts in [start, end). */
async function intervalRecords(from: Awaited<ReturnType<typeof snapshot>>, start: number, end: number) {
  const records = await readRange({
    kafka,
    topic: TOPICS.loginsIntervals,
    from,
    until: "end",
    timeoutMs: 30_000,
  });
  return records
    .map((record): [InRecord, LoginInterval] => [record, DECODERS[TOPICS.loginsIntervals](record)])
    .filter(([, interval]) => interval.timestamp_start * 1000 >= start && interval.timestamp_start * 1000 < end);
}

async function post(events: Login[]) {
  const body = events.map((event) => JSON.stringify(event)).join("\n");
  const response = await ingest.post("/v1/logins", body, { "content-type": "application/x-ndjson" });
  expect(response.status).toBe(202);
}

/**
 * A window boundary ahead of now and of every window this file used before: a partition's watermark reaches the
 * later of its latest event and the clock, and an event behind it is late.
 */
let used = 0;
const nextStart = (windows: number) => {
  const start = Math.max(Math.ceil(Date.now() / WINDOW_MS) * WINDOW_MS + 10 * WINDOW_MS, used + 2 * WINDOW_MS);
  used = start + windows * WINDOW_MS;
  return start;
};

beforeAll(async () => {
  ingest = await startIngest();
  [aggregate, intervals, persist] = await Promise.all([
    spawnStage("aggregate", stageEnv),
    spawnStage("intervals", stageEnv),
    spawnStage("persist", stageEnv),
  ]);
});

afterAll(async () => {
  await Promise.all([aggregate?.stop(), intervals?.stop(), persist?.stop(), ingest?.stop()]);
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
  }, 150_000);

  test("logins over several partitions in one window are ONE logins.intervals record holding their sum", async () => {
    const start = nextStart(1);
    const before = await snapshot(TOPICS.loginsIntervals);
    // Users on three partitions; the other partitions stay quiet and must not hold the window back.
    const spread: string[] = [];
    for (let i = 0; spread.length < 3; i++) {
      const user = `${run}-spread-${i}`;
      const taken = spread.map((u) => partitionFor(u, env.TOPIC_PARTITIONS));
      if (!taken.includes(partitionFor(user, env.TOPIC_PARTITIONS))) spread.push(user);
    }
    const events = logins("spread", start, 1, 90).map((event, i) => ({ ...event, user_id: spread[i % 3] as string }));
    await post(events);
    const end = start + WINDOW_MS;
    const [[record, interval]] = (await pollUntil(
      "the window's interval record",
      async () => {
        const found = await intervalRecords(before, start, end);
        return found.length > 0 ? found : undefined;
      },
      60_000,
    )) as [[InRecord, LoginInterval]];
    const [want] = [...expected(events).values()];
    if (!want) throw new Error("the events fill no window");
    expect({
      messages: interval.interval_messages_consumed,
      devices: interval.interval_device_type_count,
      missing: interval.interval_missing_field_count,
      late: interval.late_messages,
      end: interval.timestamp_end * 1000,
    }).toEqual({ messages: 90, devices: want.devices, missing: want.missing, late: 0, end });
    // Quiet partitions report their progress: the record comes within window + grace + one idle tick of the
    // window's end (plus an allowance for the broker and three stages), not when they next see an event.
    const bound = WINDOW_MS + 1_000 + Number(stageEnv.WINDOW_IDLE_TICK_MS) + 5_000;
    expect(Number(record.timestamp) - end).toBeLessThanOrEqual(bound);
    const [row] = await pollUntil("the login_intervals row", async () => {
      const rows = await sql<{ timestamp_end: Date; interval_messages_consumed: number; total: string }[]>`
        select timestamp_end, interval_messages_consumed, total_messages_consumed as total from login_intervals
        where timestamp_start = ${new Date(start)}`;
      return rows.length > 0 ? rows : undefined;
    });
    expect({ end: row?.timestamp_end.getTime(), messages: row?.interval_messages_consumed }).toEqual({
      end,
      messages: 90,
    });
    expect(Number(row?.total)).toBe(interval.total_messages_consumed);
    // Once: nothing else on the topic for this window.
    expect((await intervalRecords(before, start, end)).length).toBe(1);
  }, 150_000);

  test("a late event is counted in the next window and written to logins.late", async () => {
    const start = nextStart(4);
    const before = await snapshot(TOPICS.loginsLate);
    const [first] = logins("late-a", start, 1, 1) as [Login];
    await post([first]);
    await waitForWindows([first], start, start + WINDOW_MS);
    // The first window has closed; an event for it now is late, and the next window emitted counts it.
    const late = { ...first, event_id: `${run}-late-b-0` };
    // A window after the wait, which the clock has carried the partition's progress to.
    const nextWindow = nextStart(1);
    const next = { ...first, event_id: `${run}-late-c-0`, timestamp: new Date(nextWindow).toISOString() };
    await post([late]);
    await post([next]);
    // Quiet partitions follow the wall clock, which reaches these future windows only after a while.
    const row = await pollUntil(
      "the window after the late event",
      async () => {
        const [found] = await viewRows(nextWindow, nextWindow + WINDOW_MS);
        return found;
      },
      60_000,
    );
    expect(Number(row.late_messages)).toBe(1);
    expect(Number(row.interval_messages_consumed)).toBe(1);
    const letters = await readTopic(TOPICS.loginsLate, before, (all) =>
      all.some((r) => r.value.toString().includes(late.event_id)),
    );
    const letter = letters.find((r) => r.value.toString().includes(late.event_id));
    expect(letter?.headers).toMatchObject({ "dlq.error.class": "LateEvent", "dlq.source.topic": TOPICS.loginsRaw });
  }, 150_000);

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

  test("SIGKILL of aggregate and of intervals while windows are open changes and duplicates no statistic", async () => {
    const start = nextStart(3);
    const before = await snapshot(TOPICS.loginsIntervals);
    const early = logins("crash", start, 3, 300);
    await post(early);
    // Kill once the first window is out and later ones are still open.
    await pollUntil(
      "the first window",
      async () => ((await viewRows(start, start + WINDOW_MS)).length ? true : undefined),
      60_000,
    );
    expect(await aggregate.stop("SIGKILL")).not.toBe(0);
    // Posted while aggregate is down, past where the first half's partitions have got to meanwhile.
    const later = nextStart(3);
    const events = [...early, ...logins("crash-later", later, 3, 300)];
    await post(events.slice(300));
    aggregate = await spawnStage("aggregate", stageEnv);
    await pollUntil(
      "a later window",
      async () => ((await viewRows(later, later + 3 * WINDOW_MS)).length ? true : undefined),
      60_000,
    );
    expect(await intervals.stop("SIGKILL")).not.toBe(0);
    intervals = await spawnStage("intervals", stageEnv);
    const { want, rows } = await waitForWindows(events, start, later + 3 * WINDOW_MS);
    const records = await intervalRecords(before, start, later + 3 * WINDOW_MS);
    expect(records.map(([, interval]) => interval.timestamp_start * 1000)).toEqual(
      [...want.keys()].map((key) => Date.parse(key)),
    );
    expectWindowsMatch(want, rows);
    expect(await recomputed("crash")).toEqual(want);
    const first = rows[0] as ViewRow;
    const last = rows[rows.length - 1] as ViewRow;
    expect(Number(last.total_messages_consumed) - Number(first.total_messages_consumed)).toBe(
      events.length - Number(first.interval_messages_consumed),
    );
  }, 180_000);
});
