/**
 * persist: enriched locations, login window statistics and the raw logins (the audit table) into PostgreSQL,
 * exactly once in effect. Each batch's rows and the group's offsets
 * commit in one transaction (persist/store.ts), so PostgreSQL is the source of truth for what was persisted and
 * a replay writes nothing twice. Kafka's offsets are committed afterwards, only to keep lag visible.
 */
import { createDb, databaseAnswers, ignoreWriteAfterClose, migrate } from "./persist/db.ts";
import { type PendingRow, writeBatch } from "./persist/store.ts";
import { LOCATIONS, LOGIN_WINDOW_STATS, LOGINS, locationRow, loginRow, loginWindowRow } from "./persist/tables.ts";
import { within } from "./shared/deadline.ts";
import { createProducer, type InRecord, nextPositions } from "./shared/kafka.ts";
import { counter, histogram } from "./shared/metrics.ts";
import { decode, mapRecords } from "./shared/records.ts";
import { createStage } from "./shared/runner.ts";
import { EnrichedLocation, LoginWindowStats, RawLogin } from "./shared/schemas.ts";
import { TOPICS } from "./shared/topics.ts";

const GROUP = "persist";
const WRITE_DEADLINE_MS = 60_000;

/** How a record of each consumed topic becomes a row. */
const rowOf: Record<string, (record: InRecord) => Omit<PendingRow, "record">> = {
  [TOPICS.locationsEnriched]: (record) => ({
    table: LOCATIONS,
    values: locationRow(decode(EnrichedLocation, record), record),
  }),
  [TOPICS.loginsStats]: (record) => ({
    table: LOGIN_WINDOW_STATS,
    values: loginWindowRow(decode(LoginWindowStats, record)),
  }),
  [TOPICS.loginsRaw]: (record) => ({ table: LOGINS, values: loginRow(decode(RawLogin, record), record) }),
};

const stage = createStage("persist", (env) => env.PERSIST_PORT);
const { env, log, lifecycle, metrics, registry } = stage;
const rowsWritten = counter(registry, "rows_written_total", "Rows inserted or updated");
const conflicts = counter(registry, "rows_conflicting_total", "Rows turned away by a unique key (replays)");
const replayed = counter(registry, "records_replayed_total", "Records below the stored offsets, skipped");
const writeSeconds = histogram(registry, "write_seconds", "Time of one batch transaction");

const sql = createDb(env.DATABASE_URL);
process.on("uncaughtException", ignoreWriteAfterClose);
const producer = createProducer({ brokers: env.KAFKA_BROKERS, clientId: "persist" });
const applied = await migrate(sql).catch((error: unknown) => {
  log.fatal({ err: error }, "cannot apply migrations: is PostgreSQL up at DATABASE_URL?");
  process.exit(1);
});
log.info({ applied }, "migrations up to date");
stage.serveHealth(() => databaseAnswers(sql));

stage.consume({
  groupId: GROUP,
  topics: Object.keys(rowOf),
  async handle(batch) {
    const { results, deadLetters } = mapRecords(batch, "persist", (record) => rowOf[record.topic]?.(record));
    await producer.send(deadLetters);
    const rows = results.flatMap(({ record, value }) => (value ? [{ ...value, record }] : []));
    const timer = writeSeconds.startTimer();
    const result = await within(writeBatch(sql, GROUP, rows, nextPositions(batch)), WRITE_DEADLINE_MS, undefined);
    if (!result) {
      // postgres.js never settles a COPY the server rejects (porsager/postgres#1173), and the open transaction
      // holds the offset locks, so retrying would wait forever; exiting closes the connection and PostgreSQL
      // rolls the batch back. The supervisor restarts the stage, which replays the batch.
      log.fatal({ records: batch.length, deadlineMs: WRITE_DEADLINE_MS }, "a batch write hung, exiting");
      process.exit(1);
    }
    timer();
    rowsWritten.inc(result.written);
    conflicts.inc(result.conflicts);
    replayed.inc(result.replayed);
    metrics.recordsOut.inc(result.written);
    for (const letter of deadLetters) metrics.deadLettered.inc({ topic: letter.topic });
  },
});
lifecycle.onShutdown("flush dead letters", () => producer.close());
// Every batch has committed by now; a connection left hanging by an outage must not hold the exit up.
lifecycle.onShutdown("close the database pool", () => sql.end({ timeout: 1 }));
