/**
 * `bun run bench:capture`: change data capture's three hops, each beside a ceiling measured in the same run on the
 * same rows (absolute numbers drift; the ratio is the figure):
 * 1. capture.ts streaming N inserts from its slot onto the topic, against a raw read of the same changes from a
 *    second slot (`pg_logical_slot_get_binary_changes`, pgoutput: decoding only, nothing published);
 * 2. persist with the mysql sink mirroring those N changes, against a multi-row INSERT of the same rows;
 * 3. persist with the s3 sink writing them as objects, against uploading objects of the same size and count.
 * Works on a table, slots, mirror and Kafka namespace (topics and groups `bench-capture-<run>.*`) of its own,
 * dropped at the end. Needs the local stack.
 * Options, as flags or environment: --events / BENCH_EVENTS (50000), --timeout / BENCH_TIMEOUT_S (300).
 */
import mysql from "mysql2/promise";
import pg from "pg";
import { bucketClient } from "../persist/s3.ts";
import { parseConfig } from "../shared/config.ts";
import { groupLag, kafkaConnection, onBroker } from "../shared/kafka.ts";
import { cdcTopicOf } from "../shared/topics.ts";
import { inNamespace, startStage } from "../tools/harness.ts";
import { pollEvery } from "../tools/poll.ts";
import { backlogOptions, printFigures, runBench } from "./cli.ts";

async function main(): Promise<number> {
  const { count, timeoutMs } = backlogOptions(50_000);
  const env = parseConfig(process.env);
  const run = crypto.randomUUID().slice(0, 8);
  const table = `bench_cdc_${run}`;
  const stageEnv = {
    CAPTURE_TABLES: `public.${table}`,
    CAPTURE_SLOT: `bench_${run}`,
    CAPTURE_PUBLICATION: `bench_${run}`,
    S3_ROTATE_RECORDS: "10000",
    // Partitions' last objects close after a second, not the default minute.
    S3_ROTATE_SECONDS: "1",
    LOG_LEVEL: "warn",
  };
  const source = new pg.Client({ connectionString: env.CAPTURE_DATABASE_URL });
  await source.connect();
  const mirror = mysql.createPool({ uri: env.MYSQL_URL, connectionLimit: 1 });
  const s3 = bucketClient(env);
  const rawSlot = `bench_raw_${run}`;
  const topic = cdcTopicOf(`public.${table}`);
  const namespace = `bench-capture-${run}`;
  /** Where the s3 sink writes the topic's objects: under its name on the broker. */
  const objects = `${onBroker({ ...kafkaConnection(env), namespace }, topic)}/`;
  const timed = async (work: () => Promise<unknown>) => {
    const start = performance.now();
    await work();
    return (performance.now() - start) / 1000;
  };
  try {
    return await inNamespace(namespace, async (kafka) => {
      await source.query(`create table ${table} (id bigint primary key, email text not null, name text)`);
      // capture's slot first (an empty snapshot), then the raw slot: both see exactly the inserts below.
      const first = await startStage("capture", { mode: "process", env: stageEnv, waitReady: true });
      await first.stop();
      await source.query(`create publication raw_${run} for table ${table}`);
      await source.query("select pg_create_logical_replication_slot($1, 'pgoutput')", [rawSlot]);
      for (let i = 0; i < count; i += 5_000)
        await source.query(
          `insert into ${table} select i, 'user' || i || '@example.com', 'user ' || i
           from generate_series(${i}, ${Math.min(count, i + 5_000) - 1}) as i`,
        );

      const raw = await timed(() =>
        source.query(
          `select count(*) from pg_logical_slot_get_binary_changes($1, null, null, 'proto_version', '1', 'publication_names', $2)`,
          [rawSlot, `raw_${run}`],
        ),
      );
      const capture = await startStage("capture", { mode: "process", env: stageEnv });
      const captured = await timed(() =>
        pollEvery(
          "capture to publish every change",
          async () => ((await capture.metric("capture_changes_total")) >= count ? true : undefined),
          timeoutMs,
          50,
        ),
      ).finally(() => capture.stop());

      // A sink is done once its group committed the whole topic: both commit only what their store holds.
      const sinkRun = async (sink: string) => {
        const persist = await startStage("persist", { mode: "process", env: { ...stageEnv, PERSIST_SINK: sink } });
        return timed(() =>
          pollEvery(
            `persist ${sink} to store every change`,
            async () => ((await groupLag(kafka, `persist-${sink}`, [topic])) === 0 ? true : undefined),
            timeoutMs,
            50,
          ),
        ).finally(() => persist.stop());
      };
      const mysqlTook = await sinkRun("mysql");
      const s3Took = await sinkRun("s3");

      // Ceilings on the same rows.
      await mirror.query(`create table bench_bulk_${run} (id bigint primary key, email longtext, name longtext)`);
      const rows = Array.from({ length: count }, (_, i) => [i, `user${i}@example.com`, `user ${i}`]);
      const bulk = await timed(async () => {
        for (let i = 0; i < count; i += 5_000)
          await mirror.query(`insert into bench_bulk_${run} values ?`, [rows.slice(i, i + 5_000)]);
      });
      // The sink's objects, uploaded again under other names: the same count and sizes, one PUT each.
      const written = (await s3.list({ prefix: objects })).contents ?? [];
      const bytes = written.reduce((sum, o) => sum + (o.size ?? 0), 0);
      const upload = await timed(async () => {
        for (const [i, object] of written.entries())
          await s3.write(`bench-raw-${run}/${i}.ndjson`, "x".repeat(object.size ?? 0));
      });
      printFigures("changes", "changes/s", [
        { name: "raw slot read (pgoutput, no publish)", rate: count / raw },
        { name: "capture.ts onto the topic", rate: count / captured },
      ]);
      printFigures("rows", "rows/s", [
        { name: "multi-row INSERT, 5,000 a statement", rate: count / bulk },
        { name: "persist, mysql sink", rate: count / mysqlTook },
      ]);
      printFigures("records", "records/s", [
        { name: `raw upload, ${written.length} objects, ${bytes} bytes`, rate: count / upload },
        { name: "persist, s3 sink", rate: count / s3Took },
      ]);
      return 0;
    });
  } finally {
    await source.query(
      "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = any($1)",
      [[rawSlot, stageEnv.CAPTURE_SLOT]],
    );
    await source.query(`drop publication if exists raw_${run}`);
    await source.query(`drop publication if exists bench_${run}`);
    await source.query(`drop table if exists ${table}`);
    await source.query("delete from event_pipeline_capture where slot_name = $1", [stageEnv.CAPTURE_SLOT]);
    await mirror.query(`drop table if exists bench_bulk_${run}, public_${table}`);
    for (const prefix of [objects, `bench-raw-${run}/`])
      for (const { key } of (await s3.list({ prefix })).contents ?? []) await s3.delete(key);
    await source.end();
    await mirror.end();
  }
}

if (import.meta.main) await runBench(main);
