/**
 * The COPY persist writes straight into a table: when the server rejects it (a unique violation, i.e. a replay
 * in the batch) the COPY must fail, not hang, so that its transaction rolls back and the batch runs again on the
 * conflict path.
 * postgres.js as published never settles such a COPY; patches/ carries the one-line fix this test guards.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createDb } from "../persist/postgres/db.ts";
import { testConfig } from "./support.ts";

const sql = createDb(testConfig(), 1);
const TABLE = `copy_test_${Date.now().toString(36)}`;

beforeAll(async () => {
  await sql.unsafe(`create table ${TABLE} (id text primary key)`);
});
afterAll(async () => {
  await sql.unsafe(`drop table if exists ${TABLE}`);
  await sql.end({ timeout: 1 });
});

async function copyLines(tx: typeof sql, text: string) {
  const copy = await tx.unsafe(`copy ${TABLE} (id) from stdin`).writable();
  await new Promise<void>((resolve, reject) => {
    copy.on("error", reject);
    copy.end(text, (error?: Error | null) => (error ? reject(error) : resolve()));
  });
}

test("a COPY the server rejects fails its transaction with the server's error, and the connection stays usable", async () => {
  await sql.unsafe(`insert into ${TABLE} values ('a')`);
  const failure = await sql
    .begin(async (tx) => {
      await tx.unsafe(`insert into ${TABLE} values ('b')`);
      await copyLines(tx as unknown as typeof sql, "c\na\n");
    })
    .then(
      () => undefined,
      (error: { code?: string }) => error.code,
    );
  expect(failure).toBe("23505");
  await sql.begin((tx) => copyLines(tx as unknown as typeof sql, "d\n"));
  const rows = await sql.unsafe(`select id from ${TABLE} order by id`);
  expect(rows.map((row) => row.id)).toEqual(["a", "d"]);
}, 10_000);
