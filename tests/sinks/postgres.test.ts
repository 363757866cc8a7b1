/** The PostgreSQL sink against the sink conformance suite, on the real broker and the local cluster. */
import { afterAll } from "bun:test";
import { createDb } from "../../persist/postgres/db.ts";
import { TOPICS } from "../../shared/topics.ts";
import { groupOf } from "../../tools/harness.ts";
import { localCluster, testConfig } from "../support.ts";
import { describeSinkConformance } from "./conformance.ts";

const sql = createDb(testConfig(), 2);
afterAll(() => sql.end());
const cluster = await localCluster();

/** The `i`-th enriched location of `series`, as enrich writes it. */
const location = (series: string, i: number) => ({
  event_id: `${series}-${i}`,
  user_id: `${series}-user-${i % 20}`,
  timestamp: new Date(Date.UTC(2023, 10, 14, 22) + i * 1000).toISOString(),
  ingested_at: new Date().toISOString(),
  lat: 51.5074,
  long: -0.1278,
  timezone: "Europe/London",
  utc_offset_minutes: 0,
  local_time: new Date(Date.UTC(2023, 10, 14, 22) + i * 1000).toISOString(),
});

describeSinkConformance({
  sink: "postgres",
  topic: TOPICS.locationsEnriched,
  record: (series, i) => {
    const value = location(series, i);
    return { key: value.user_id, value: JSON.stringify(value), id: value.event_id };
  },
  stored: async (series) =>
    (await sql<{ event_id: string }[]>`select event_id from locations where event_id like ${`${series}-%`}`).map(
      (row) => row.event_id,
    ),
  violation: (series) => JSON.stringify({ ...location(series, 0), lat: 123 }),
  forgetPositions: async () => {
    await sql`delete from consumer_offsets where group_id = ${groupOf("persist") as string}`;
  },
  ...(cluster && { outage: { stop: () => cluster("stop"), start: () => cluster("start") } }),
});
