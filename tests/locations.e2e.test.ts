/**
 * Locations end to end on the real broker and PostgreSQL: ingest -> enrich -> persist, with a crash of enrich
 * and poison records. Every count is of this run's own events (their user_ids carry a run id).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createDb } from "../persist/postgres/db.ts";
import { createProducer } from "../shared/kafka.ts";
import { TOPICS } from "../shared/topics.ts";
import {
  expectDeadLettered,
  type Ingest,
  KNOWN_PLACES as KNOWN,
  pollUntil,
  postInBatches,
  type Stage,
  spawnStage,
  startIngest,
  storedSeries,
  testConfig,
  testKafka,
} from "./support.ts";

const run = crypto.randomUUID().slice(0, 8);
const env = testConfig();
const kafka = testKafka();
const sql = createDb(env, 2);
const stageEnv = {};

/** `count` events of the series `series`, spread over 50 users, with the known points among them. */
function events(series: string, count: number) {
  return Array.from({ length: count }, (_, i) => {
    const known = i < KNOWN.length ? KNOWN[i] : undefined;
    return {
      event_id: `${run}-${series}-${i}`,
      user_id: known ? `${run}-${known.name}` : `${run}-user-${i % 50}`,
      timestamp: 1_700_000_000 + i,
      lat: known?.lat ?? ((i * 7) % 170) - 85,
      long: known?.long ?? ((i * 13) % 350) - 175,
    };
  });
}

const { count: countSeries, expectRows } = storedSeries(sql, "locations", run);

let ingest: Ingest;
let enrich: Stage;
let persist: Stage;

const post = (list: ReturnType<typeof events>) => postInBatches(ingest, "/v1/locations", list);

beforeAll(async () => {
  ingest = await startIngest();
  [enrich, persist] = await Promise.all([spawnStage("enrich", stageEnv), spawnStage("persist", stageEnv)]);
});

afterAll(async () => {
  await Promise.all([enrich?.stop(), persist?.stop(), ingest?.stop()]);
  await sql.end();
});

describe("locations end to end", () => {
  test("10,000 posted events become exactly 10,000 rows with the right timezones", async () => {
    await post(events("main", 10_000));
    await expectRows("main", 10_000);
    const known = await sql<{ user_id: string; timezone: string }[]>`
      select user_id, timezone from locations where user_id = any(${KNOWN.map((k) => `${run}-${k.name}`)})`;
    expect(Object.fromEntries(known.map((r) => [r.user_id, r.timezone]))).toEqual(
      Object.fromEntries(KNOWN.map((k) => [`${run}-${k.name}`, k.timezone])),
    );
    const [cordoba] = await sql`select utc_offset_minutes, to_char(local_time, 'YYYY-MM-DD"T"HH24:MI:SS') as local
      from locations where user_id = ${`${run}-cordoba`}`;
    expect(cordoba).toEqual({ utc_offset_minutes: -180, local: "2023-11-14T19:13:20" });
  }, 120_000);

  test("a location a plain producer writes to locations.raw (no event_id, no ingested_at) is stored; twice is two", async () => {
    const user = `${run}-plain`;
    // A Python producer's naive datetime, taken as UTC; the same event written twice, at two offsets.
    const body = JSON.stringify({ user_id: user, timestamp: "2023-09-17T00:32:50.156000", lat: -31.4, long: -64.18 });
    const producer = createProducer({ kafka, clientId: "test-plain-producer" });
    const deliveries = await producer.send([0, 1].map(() => ({ topic: TOPICS.locationsRaw, key: user, value: body })));
    await producer.close();
    const ids = deliveries.map((d) => `${TOPICS.locationsRaw}:${d.partition}:${d.offset}`);
    const rows = await pollUntil("both copies as rows", async () => {
      const found = await sql<{ event_id: string; event_time: Date; timezone: string; ingested_at: Date }[]>`
        select event_id, event_time, timezone, ingested_at from locations where user_id = ${user} order by event_id`;
      return found.length === 2 ? found : undefined;
    });
    expect(rows.map((row) => row.event_id)).toEqual([...ids].sort());
    for (const row of rows) {
      expect(row.event_time.toISOString()).toBe("2023-09-17T00:32:50.156Z");
      expect(row.timezone).toBe("America/Argentina/Cordoba");
      expect(row.ingested_at.getTime()).toBeGreaterThan(Date.parse("2023-09-17T00:32:50Z"));
    }
  }, 60_000);

  // persist's own crash, replay and outage cases are the sink conformance suite's (tests/sinks).
  test("SIGKILL of enrich in the middle of a stream loses nothing", async () => {
    const series = "crash-enrich";
    const list = events(series, 10_000);
    await post(list.slice(0, 5_000));
    // Kill as soon as rows arrive, while the first half is still flowing; the second half comes after.
    await pollUntil("rows to start arriving", async () => ((await countSeries(series)) > 0 ? true : undefined), 60_000);
    expect(await enrich.stop("SIGKILL")).not.toBe(0);
    await post(list.slice(5_000));
    enrich = await spawnStage("enrich", stageEnv);
    await expectRows(series, 10_000);
  }, 180_000);

  test("poison records go to the DLQ with their context, and the records after them still arrive", async () => {
    const key = `${run}-poison`;
    const schemaViolation = JSON.stringify({
      ...events("poison", 1)[0],
      lat: 123,
      event_id: `${run}-bad`,
      ingested_at: "x",
    });
    const [notJson, invalid] = await expectDeadLettered(
      TOPICS.locationsRaw,
      key,
      schemaViolation,
      "enrich",
      async () => {
        await post(events("poison", 1).map((e) => ({ ...e, user_id: key })));
        await expectRows("poison", 1);
      },
    );
    expect(notJson).toContain("not JSON");
    expect(invalid).toContain("lat");
  }, 120_000);
});
