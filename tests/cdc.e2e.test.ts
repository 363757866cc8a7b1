/**
 * Change data capture end to end on the real servers: a table of the source database -> capture.ts -> its cdc
 * topic -> persist's mysql and s3 sinks. Each run captures a table, slot and publication of its own, dropped
 * afterwards (a slot left behind would hold WAL back).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import mysql from "mysql2/promise";
import pg from "pg";
import { mirrorOf } from "../persist/mysql.ts";
import { bucketClient } from "../persist/s3.ts";
import { type ChangeEvent, compareLsns, POSITION_HEADER, parsePosition, positionOf } from "../shared/change.ts";
import { createProducer, deleteTopics, groupLag, type InRecord, readRange } from "../shared/kafka.ts";
import { cdcTopicOf, dlqOf } from "../shared/topics.ts";
import { groupOf } from "../tools/harness.ts";
import { ownCapture } from "./capture.ts";
import { pollUntil, readTopic, type Stage, spawnStage, testConfig, testKafka } from "./support.ts";

const run = crypto.randomUUID().slice(0, 8);
const table = `cdc_${run}`;
const topic = cdcTopicOf(`public.${table}`);
const env = testConfig();
const own = ownCapture(run);
const captureEnv = { ...own.env, CAPTURE_TABLES: `public.${table}`, CAPTURE_HEARTBEAT_MS: "500" };
const source = new pg.Pool({ connectionString: env.CAPTURE_DATABASE_URL, max: 4 });
const mirror = mysql.createPool({ uri: env.MYSQL_URL, connectionLimit: 2 });
const bucket = bucketClient(env);
const start = Array.from({ length: env.TOPIC_PARTITIONS }, (_, partition) => ({ topic, partition, offset: 0n }));

let capture: Stage;

/** Every record of the run's topic once `done` holds for them. */
const records = (done: (all: InRecord[]) => boolean, timeoutMs = 60_000) => readTopic(topic, start, done, timeoutMs);
/** Every record of the topic up to where it ends now, of every partition (a first batch may hold only some). */
const everything = () => readRange({ kafka: testKafka(), topic, from: start, until: "end", timeoutMs: 60_000 });
const events = (all: InRecord[]) =>
  all.filter((r) => r.value.length > 0).map((r) => JSON.parse(r.value.toString()) as ChangeEvent);
const idOf = (event: ChangeEvent) => Number((event.after ?? event.before)?.id);

beforeAll(async () => {
  await source.query(`create table ${table} (id bigint primary key, email text not null, name text)`);
  await source.query(
    `insert into ${table} select i, 'u' || i || '@example.com', 'user ' || i from generate_series(1, 100) as i`,
  );
  capture = await spawnStage("capture", captureEnv);
});

afterAll(async () => {
  await capture?.stop();
  await own.drop();
  await source.query(`drop table if exists ${table}`);
  await mirror.query(`drop table if exists ${mirrorOf(topic)}`);
  try {
    for (const { key } of (await bucket.list({ prefix: `${topic}/` })).contents ?? []) await bucket.delete(key);
    // The run's table has a topic of its own, and its dead letters one more: neither is used again.
    await deleteTopics(testKafka(), [topic, dlqOf(topic)]);
  } finally {
    await Promise.all([source.end(), mirror.end()]);
  }
});

describe("capture", () => {
  test("creates its slot, publishes a snapshot of the rows there, then streams inserts, updates and deletes", async () => {
    const slots = await source.query("select plugin from pg_replication_slots where slot_name = $1", [
      captureEnv.CAPTURE_SLOT,
    ]);
    expect(slots.rows).toEqual([{ plugin: "pgoutput" }]);
    const snapshot = events(await records((all) => all.length >= 100));
    expect(snapshot.map((e) => e.op)).toEqual(Array(100).fill("r"));
    expect(snapshot.map(idOf).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));

    await source.query(`insert into ${table} values (101, 'new@example.com', 'new')`);
    await source.query(`update ${table} set name = 'renamed' where id = 1`);
    await source.query(`delete from ${table} where id = 2`);
    const all = await records((found) => found.length >= 104);
    // Records come back partition by partition: each change is found by its op and row.
    const streamed = events(all).filter((e) => e.op !== "r");
    expect(streamed.map((e) => `${e.op}${idOf(e)}`).sort()).toEqual(["c101", "d2", "u1"]);
    const created = streamed.find((e) => e.op === "c");
    const updated = streamed.find((e) => e.op === "u");
    const deleted = streamed.find((e) => e.op === "d");
    expect(created).toMatchObject({ op: "c", before: null, after: { id: 101, email: "new@example.com" } });
    expect(updated).toMatchObject({ op: "u", before: { id: 1, name: "user 1" }, after: { id: 1, name: "renamed" } });
    expect(deleted).toMatchObject({ op: "d", before: { id: 2, email: "u2@example.com" }, after: null });
    expect(deleted?.source).toMatchObject({ connector: "postgresql", db: "source", schema: "public", table });
    // The delete's tombstone follows it in its partition: same key, null value.
    const ofRow2 = all.filter((r) => r.key?.toString() === '{"id":2}');
    expect(ofRow2.map((r) => (r.value.length > 0 ? (JSON.parse(r.value.toString()) as ChangeEvent).op : null))).toEqual(
      ["r", "d", null],
    );
    // The same row's changes compare in the order they happened.
    const [snapshotCommit] = positionOf(snapshot.find((e) => idOf(e) === 1) as ChangeEvent);
    const [updateCommit] = positionOf(updated as ChangeEvent);
    expect(updateCommit > snapshotCommit).toBe(true);
    // Every record, the tombstone too, carries its source position, and within a partition they grow.
    const at = all.map((r) => parsePosition(r.headers[POSITION_HEADER]));
    expect(at.every((p) => p?.source === captureEnv.CAPTURE_SLOT)).toBe(true);
    for (let partition = 0; partition < env.TOPIC_PARTITIONS; partition++) {
      const inPartition = all.flatMap((r, i) => (r.partition === partition ? [at[i]?.at ?? []] : []));
      for (let i = 1; i < inPartition.length; i++)
        expect(compareLsns(inPartition[i - 1] ?? [], inPartition[i] ?? [])).toBe(-1);
    }
  }, 90_000);

  test("a new column flows through without a restart", async () => {
    await source.query(`alter table ${table} add column nickname text`);
    await source.query(`insert into ${table} values (102, 'nick@example.com', 'nick', 'nicky')`);
    const found = events(await records((all) => events(all).some((e) => idOf(e) === 102)));
    expect(found.find((e) => idOf(e) === 102)?.after).toEqual({
      id: 102,
      email: "nick@example.com",
      name: "nick",
      nickname: "nicky",
    });
  }, 60_000);

  test("SIGKILL in the middle of a stream, then a restart: every committed change reaches the topic", async () => {
    const writes = (async () => {
      for (let i = 0; i < 50; i++)
        await source.query(
          `insert into ${table} select i, 'k' || i, null from generate_series(${1000 + i * 20}, ${1019 + i * 20}) as i`,
        );
    })();
    await pollUntil("changes of the stream to arrive", async () =>
      (await capture.metric("capture_changes_total", { op: "c" })) > 20 ? true : undefined,
    );
    expect(await capture.stop("SIGKILL")).not.toBe("0");
    await writes;
    capture = await spawnStage("capture", captureEnv);
    const wanted = Array.from({ length: 1000 }, (_, i) => 1000 + i);
    const found = events(
      await records((all) => {
        const ids = new Set(events(all).map(idOf));
        return wanted.every((id) => ids.has(id));
      }, 90_000),
    );
    // Not snapshotted again: the slot was there and its snapshot done.
    expect(found.filter((e) => e.op === "r")).toHaveLength(100);
  }, 120_000);

  test("a truncate of a captured table is logged and counted, and writes no record", async () => {
    const before = await capture.metric("capture_truncates_total");
    await source.query(`truncate ${table}`);
    await pollUntil("the truncate to be counted", async () =>
      (await capture.metric("capture_truncates_total")) > before ? true : undefined,
    );
    // Restore the rows for the sinks' tests below.
    await source.query(
      `insert into ${table} select i, 'u' || i || '@example.com', 'user ' || i, null from generate_series(1, 100) as i`,
    );
  }, 60_000);
});

describe("capture into the mysql and s3 sinks", () => {
  const sinkEnv = { ...captureEnv, S3_ROTATE_RECORDS: "200", S3_ROTATE_SECONDS: "1" };
  let persistMysql: Stage;
  let persistS3: Stage;
  beforeAll(async () => {
    [persistMysql, persistS3] = await Promise.all([
      spawnStage("persist", { ...sinkEnv, PERSIST_SINK: "mysql" }),
      spawnStage("persist", { ...sinkEnv, PERSIST_SINK: "s3" }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([persistMysql?.stop(), persistS3?.stop()]);
  });

  // The rows the truncate above removed stay in the mirror (a truncate writes no change): compared are the rows
  // written after it, ids 1 to 100.
  const sourceRows = async () =>
    (await source.query(`select id, email, name, nickname from ${table} where id <= 100 order by id`)).rows.map(
      (r) => ({
        ...r,
        id: Number(r.id),
      }),
    );
  const mirroredRows = async () =>
    (
      await mirror
        .query<mysql.RowDataPacket[]>(
          `select id, email, name, nickname from ${mirrorOf(topic)} where id <= 100 order by id`,
        )
        .catch(() => [[]])
    )[0].map((r) => ({ ...r, id: Number(r.id) }));

  test("the mirror table equals the source table through updates, deletes and a new column", async () => {
    await source.query(`update ${table} set name = 'changed' where id <= 10`);
    await source.query(`delete from ${table} where id between 11 and 20`);
    await source.query(`alter table ${table} add column score int`);
    await source.query(`update ${table} set score = 7 where id = 30`);
    const expected = await sourceRows();
    await pollUntil(
      "the mirror to equal the source",
      async () => (Bun.deepEquals(await mirroredRows(), expected) ? true : undefined),
      90_000,
    );
    const [[scored]] = (await mirror.query(`select score from ${mirrorOf(topic)} where id = 30`)) as unknown as [
      { score: number }[],
    ];
    expect(Number(scored?.score)).toBe(7);
  }, 120_000);

  test("an older change never overwrites a newer one", async () => {
    const all = await everything();
    const snapshotOf30 = all.find((r) => r.key?.toString() === '{"id":30}' && r.value.length > 0) as InRecord;
    // The snapshot's change of row 30, published again after its update with its headers (as a capture replay
    // would).
    const turnedAway = () => persistMysql.metric("rows_conflicting_total", { table: mirrorOf(topic) });
    const before = await turnedAway();
    const producer = createProducer({ kafka: testKafka(), clientId: "test-stale" });
    await producer.send([{ topic, key: '{"id":30}', value: snapshotOf30.value, headers: snapshotOf30.headers }]);
    await producer.close();
    // The mysql sink commits only what its transaction wrote: once it caught up, the stale change was applied.
    const group = groupOf("persist", { ...process.env, ...sinkEnv, PERSIST_SINK: "mysql" }) as string;
    await pollUntil("the mysql sink to read the stale change", async () =>
      (await groupLag(testKafka(), group, [topic])) === 0 ? true : undefined,
    );
    const [rows] = await mirror.query<mysql.RowDataPacket[]>(
      `select score, name from ${mirrorOf(topic)} where id = 30`,
    );
    expect(Number(rows[0]?.score)).toBe(7);
    expect(await turnedAway()).toBe(before + 1);
  }, 60_000);

  test("the bucket holds every change of the topic exactly once, in objects named by their offsets", async () => {
    const all = await everything();
    // A change is its key and source position: the stale one above (and any capture published again after
    // its SIGKILL) is in the topic twice, and in the bucket once, at its first offset.
    const first = new Map<string, string>();
    for (const r of all.filter((r) => r.value.length > 0)) {
      const change = `${r.key}@${r.headers[POSITION_HEADER]}`;
      if (!first.has(change)) first.set(change, `${r.partition}:${r.offset}`);
    }
    expect(all.filter((r) => r.value.length > 0).length).toBeGreaterThan(first.size);
    const lines = async () => {
      const stored: { change: string; at: string }[] = [];
      const page = await bucket.list({ prefix: `${topic}/` });
      for (const { key } of page.contents ?? []) {
        expect(key).toMatch(/\/partition=\d\/\d{20}-\d{20}\.ndjson$/);
        for (const text of (await bucket.file(key).text()).split("\n").filter(Boolean)) {
          const line = JSON.parse(text) as { partition: number; offset: number; key: string; position: string };
          stored.push({ change: `${line.key}@${line.position}`, at: `${line.partition}:${line.offset}` });
        }
      }
      return stored;
    };
    const stored = await pollUntil(
      `${first.size} lines in the bucket`,
      async () => {
        const found = await lines();
        return found.length >= first.size ? found : undefined;
      },
      60_000,
    );
    expect(new Set(stored.map((s) => s.change)).size).toBe(stored.length);
    expect(new Map(stored.map((s) => [s.change, s.at]))).toEqual(first);
  }, 90_000);

  test("after a restart of the s3 sink, changes published again are not stored again, and new ones are", async () => {
    const linesOf = async (id: number) => {
      let count = 0;
      for (const { key } of (await bucket.list({ prefix: `${topic}/` })).contents ?? [])
        for (const line of (await bucket.file(key).text()).split("\n").filter(Boolean))
          if ((JSON.parse(line) as { key: string }).key === `{"id":${id}}`) count++;
      return count;
    };
    const all = await everything();
    const changesOf = (id: number) => all.filter((r) => r.key?.toString() === `{"id":${id}}` && r.value.length > 0);
    const before = await linesOf(40);
    expect(before).toBe(new Set(changesOf(40).map((r) => r.headers[POSITION_HEADER])).size);
    await persistS3.stop("SIGKILL");
    // Row 40's changes again, as capture after a crash, then a change of its own after them.
    const producer = createProducer({ kafka: testKafka(), clientId: "test-republish" });
    await producer.send(changesOf(40).map((r) => ({ topic, key: r.key, value: r.value, headers: r.headers })));
    await producer.close();
    await source.query(`update ${table} set name = 'after the restart' where id = 40`);
    persistS3 = await spawnStage("persist", { ...sinkEnv, PERSIST_SINK: "s3" });
    await pollUntil("the new change of row 40 in the bucket", async () =>
      (await linesOf(40)) > before ? true : undefined,
    );
    expect(await linesOf(40)).toBe(before + 1);
  }, 90_000);
});

describe("capture's slot", () => {
  test("moves while the captured table is idle (heartbeats), and its lag is a metric", async () => {
    // WAL written elsewhere (the pipeline database): nothing for the slot to publish, only to pass.
    const pipeline = new pg.Client({ connectionString: env.DATABASE_URL });
    await pipeline.connect();
    await pipeline.query("select pg_logical_emit_message(false, 'test', 'elsewhere')");
    const [{ lsn }] = (await pipeline.query<{ lsn: string }>("select pg_current_wal_lsn()::text as lsn")).rows as [
      { lsn: string },
    ];
    await pipeline.end();
    await pollUntil("the slot to pass a position written while the table was idle", async () => {
      const { rows } = await source.query(
        "select confirmed_flush_lsn >= $2::pg_lsn as passed from pg_replication_slots where slot_name = $1",
        [captureEnv.CAPTURE_SLOT, lsn],
      );
      return rows[0]?.passed ? true : undefined;
    });
    expect((await capture.metrics()) ?? "").toContain("capture_slot_lag_bytes");
  }, 60_000);

  test("a slot dropped under capture shows on /readyz", async () => {
    expect(await capture.ready()).toBe(200);
    await pollUntil("the slot to be dropped", async () => {
      await source.query("select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1", [
        captureEnv.CAPTURE_SLOT,
      ]);
      return source.query("select pg_drop_replication_slot($1)", [captureEnv.CAPTURE_SLOT]).then(
        () => true,
        () => undefined,
      );
    });
    await pollUntil("capture to report not ready", async () => ((await capture.ready()) === 503 ? true : undefined));
  }, 60_000);
});
