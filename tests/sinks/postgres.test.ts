/** The PostgreSQL sink against the sink conformance suite, on the real broker and the local cluster. */
import { afterAll } from "bun:test";
import { createDb } from "../../persist/postgres/db.ts";
import { TOPICS } from "../../shared/topics.ts";
import { groupOf } from "../../tools/harness.ts";
import { enrichedLocation, localCluster, testConfig } from "../support.ts";
import { describeSinkConformance } from "./conformance.ts";

const sql = createDb(testConfig(), 2);
afterAll(() => sql.end());
const cluster = await localCluster();

describeSinkConformance({
  sink: "postgres",
  topic: TOPICS.locationsEnriched,
  record: (series, i) => {
    const value = enrichedLocation(series, i);
    return { key: value.user_id, value: JSON.stringify(value), id: value.event_id };
  },
  stored: async (series) =>
    (await sql<{ event_id: string }[]>`select event_id from locations where event_id like ${`${series}-%`}`).map(
      (row) => row.event_id,
    ),
  violation: (series) => JSON.stringify({ ...enrichedLocation(series, 0), lat: 123 }),
  forgetPositions: async () => {
    await sql`delete from consumer_offsets where group_id = ${groupOf("persist") as string}`;
  },
  ...(cluster && { outage: { stop: () => cluster("stop"), start: () => cluster("start") } }),
});
