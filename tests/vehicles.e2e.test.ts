/**
 * Vehicle positions end to end on the real broker and PostgreSQL: ingest -> vehicles.raw -> enrich ->
 * vehicles.enriched -> persist -> vehicle_positions, with a client's retry, a crash of enrich and poison records.
 * Every count is of this run's own events (their event_ids and vehicle_ids carry a run id).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createDb } from "../persist/postgres/db.ts";
import { TOPICS } from "../shared/topics.ts";
import {
  KNOWN_PLACES as DEPOTS,
  expectDeadLettered,
  type Ingest,
  pollUntil,
  postInBatches,
  type Stage,
  spawnStage,
  startIngest,
  storedSeries,
  testConfig,
} from "./support.ts";

const run = crypto.randomUUID().slice(0, 8);
const env = testConfig();
const sql = createDb(env, 2);

/**
 * `count` reports of the series `series` from 25 vehicles, vehicle i driving out of depot i % 5 (a place whose
 * timezone is known); every third report has no heading, every other no metadata.
 */
function reports(series: string, count: number) {
  return Array.from({ length: count }, (_, i) => {
    const vehicle = i % 25;
    const depot = DEPOTS[vehicle % DEPOTS.length] as (typeof DEPOTS)[number];
    return {
      event_id: `${run}-${series}-${i}`,
      vehicle_id: `${run}-${depot.name}-${vehicle}`,
      timestamp: 1_700_000_000 + i,
      // A few metres further along each report: the depot's timezone holds for the whole track.
      lat: depot.lat + i * 1e-6,
      long: depot.long,
      speed: (i % 90) + 0.5,
      ...(i % 3 !== 0 && { heading: (i * 11) % 360 }),
      ...(i % 2 === 0 && { metadata: { driver: `d-${vehicle}`, odometer_km: 1_000 + i / 10 } }),
    };
  });
}

const { count: countSeries, expectRows } = storedSeries(sql, "vehicle_positions", run);

let ingest: Ingest;
let enrich: Stage;
let persist: Stage;

const post = (list: ReturnType<typeof reports>) => postInBatches(ingest, "/v1/vehicles", list);

beforeAll(async () => {
  ingest = await startIngest();
  [enrich, persist] = await Promise.all([spawnStage("enrich"), spawnStage("persist")]);
});

afterAll(async () => {
  await Promise.all([enrich?.stop(), persist?.stop(), ingest?.stop()]);
  await sql.end();
});

describe("vehicle positions end to end", () => {
  test("5,000 posted reports become exactly 5,000 rows, as sent, with their depot's timezone", async () => {
    const posted = reports("main", 5_000);
    await post(posted);
    await expectRows("main", 5_000);

    const rows = await sql<
      {
        event_id: string;
        vehicle_id: string;
        event_time: Date;
        lat: number;
        long: number;
        speed: number;
        heading: number | null;
        metadata: Record<string, string | number> | null;
        timezone: string;
      }[]
    >`select event_id, vehicle_id, event_time, lat, long, speed, heading, metadata, timezone
      from vehicle_positions where event_id like ${`${run}-main-%`}`;
    const byId = new Map(rows.map((row) => [row.event_id, row]));
    for (const sent of posted) {
      const row = byId.get(sent.event_id);
      const depot = DEPOTS.find((d) => sent.vehicle_id.startsWith(`${run}-${d.name}-`));
      expect(row).toEqual({
        event_id: sent.event_id,
        vehicle_id: sent.vehicle_id,
        event_time: new Date(sent.timestamp * 1000),
        lat: sent.lat,
        long: sent.long,
        speed: sent.speed,
        heading: sent.heading ?? null,
        metadata: sent.metadata ?? null,
        timezone: depot?.timezone as string,
      });
    }

    // 1_700_000_000 is 2023-11-14T22:13:20Z; Córdoba is at -03:00 all year, Sydney at +11:00 in its summer.
    const local = await sql<{ vehicle_id: string; utc_offset_minutes: number; local: string }[]>`
      select vehicle_id, utc_offset_minutes, to_char(local_time, 'YYYY-MM-DD"T"HH24:MI:SS') as local
      from vehicle_positions where event_id in (${`${run}-main-0`}, ${`${run}-main-4`})`;
    expect(Object.fromEntries(local.map((r) => [r.vehicle_id, [r.utc_offset_minutes, r.local]]))).toEqual({
      [`${run}-cordoba-0`]: [-180, "2023-11-14T19:13:20"],
      [`${run}-sydney-4`]: [660, "2023-11-15T09:13:24"],
    });
  }, 120_000);

  test("a vehicle's track comes back by time, through the (vehicle_id, event_time) index", async () => {
    const [index] = await sql<{ indexdef: string }[]>`
      select indexdef from pg_indexes
      where tablename = 'vehicle_positions' and indexname = 'vehicle_positions_vehicle_time'`;
    expect(index?.indexdef).toContain("(vehicle_id, event_time)");
    const track = await sql<{ event_id: string }[]>`
      select event_id from vehicle_positions where vehicle_id = ${`${run}-tokyo-3`} order by event_time`;
    expect(track.map((row) => row.event_id)).toEqual(
      Array.from({ length: 200 }, (_, n) => `${run}-main-${3 + 25 * n}`),
    );
  });

  test("a client's retry with the same event_ids is stored once", async () => {
    const list = reports("retry", 2_000);
    await post(list);
    await expectRows("retry", 2_000);
    const conflictsBefore = await persist.metric("rows_conflicting_total", { table: "vehicle_positions" });
    await post(list);
    // The second copies travel the whole pipeline and are turned away by the key; none adds a row.
    await pollUntil(
      "persist to turn the retried copies away",
      async () =>
        (await persist.metric("rows_conflicting_total", { table: "vehicle_positions" })) - conflictsBefore >= 2_000
          ? true
          : undefined,
      90_000,
    );
    await expectRows("retry", 2_000);
  }, 180_000);

  test("SIGKILL of enrich in the middle of a stream loses nothing", async () => {
    const list = reports("crash", 6_000);
    await post(list.slice(0, 3_000));
    await pollUntil(
      "rows to start arriving",
      async () => ((await countSeries("crash")) > 0 ? true : undefined),
      60_000,
    );
    expect(await enrich.stop("SIGKILL")).not.toBe("0");
    await post(list.slice(3_000));
    enrich = await spawnStage("enrich");
    await expectRows("crash", 6_000);
  }, 180_000);

  test("poison records go to vehicles.raw.dlq with their context, and the reports after them still arrive", async () => {
    const key = `${run}-poison`;
    const report = reports("poison", 1)[0] as ReturnType<typeof reports>[number];
    const schemaViolation = JSON.stringify({ ...report, vehicle_id: key, event_id: `${run}-bad`, speed: 9_000 });
    const [notJson, invalid] = await expectDeadLettered(
      TOPICS.vehiclesRaw,
      key,
      schemaViolation,
      "enrich",
      async () => {
        await post([{ ...report, vehicle_id: key }]);
        await expectRows("poison", 1);
      },
    );
    expect(notJson).toContain("not JSON");
    expect(invalid).toContain("speed");
  }, 120_000);
});
