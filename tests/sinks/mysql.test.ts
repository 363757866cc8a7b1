/** The MySQL sink against the sink conformance suite, on the real broker and the stack's MariaDB. */
import { afterAll } from "bun:test";
import mysql from "mysql2/promise";
import { mariaDbDown, mariaDbUp, runningMariaDbPid } from "../../scripts/stack/mariadb.ts";
import { MARIADB } from "../../scripts/stack.ts";
import { TOPICS } from "../../shared/topics.ts";
import { groupOf } from "../../tools/harness.ts";
import { testConfig } from "../support.ts";
import { identity, invalidChange, userCreated } from "./changes.ts";
import { describeSinkConformance } from "./conformance.ts";

const { MYSQL_URL } = testConfig();
const pool = mysql.createPool({ uri: MYSQL_URL, connectionLimit: 2 });
afterAll(() => pool.end());

/** Ids of a series start at a base of its own: the first id found tells which. */
const idsOf = new Map<string, number>();

describeSinkConformance({
  sink: "mysql",
  topic: TOPICS.cdcUsers,
  record: (series, i) => {
    const record = userCreated(series, i);
    if (i === 0) idsOf.set(series, (JSON.parse(record.key) as { id: number }).id);
    return record;
  },
  // The mirrored primary keys of the series, one per row, as the identities the records were made with.
  stored: async (series) => {
    const base = idsOf.get(series);
    if (base === undefined) return [];
    const [rows] = await pool
      .query<mysql.RowDataPacket[]>("select id from public_users where id between ? and ?", [base, base + 999_999])
      .catch(() => [[] as mysql.RowDataPacket[]]);
    return rows.map((row) => identity(series, Number(row.id) - base));
  },
  violation: invalidChange,
  republished: true,
  forgetPositions: async () => {
    await pool.query("delete from cdc_consumer_offsets where group_id = ?", [
      groupOf("persist", { PERSIST_SINK: "mysql" }),
    ]);
  },
  // Only a MariaDB the stack started is ours to stop.
  ...(runningMariaDbPid(MARIADB) && {
    outage: { stop: () => mariaDbDown(MARIADB), start: () => mariaDbUp(MYSQL_URL, MARIADB) },
  }),
});
