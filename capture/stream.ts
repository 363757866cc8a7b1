/**
 * The replication stream of a slot, onto topics. Changes are gathered per transaction and queued at its commit;
 * a publisher takes whole transactions from the queue, publishes them, and only once the broker acknowledged
 * every record reports the last commit's end as the slot's confirmed position. A crash at any point restarts
 * from that position, so every committed change reaches its topic at least once (sinks drop the repeats by
 * source position). The queue is bounded: a slow or absent broker pauses the stream, and the WAL waits in
 * PostgreSQL, not in memory.
 *
 * When the captured tables are idle the slot still moves: every CAPTURE_HEARTBEAT_MS a non-transactional
 * logical message is written to the WAL, and when it arrives with nothing in flight (as a transaction with no
 * captured change does) the confirmed position moves up to it. A truncate of a captured table is logged and counted, and
 * writes no record (as Debezium's default, `skipped.operations=t`): sinks keep their rows.
 */

import pg from "pg";
import { LogicalReplicationService, type Pgoutput, PgoutputPlugin } from "pg-logical-replication";
import type { OutRecord } from "../shared/kafka.ts";
import type { Logger } from "../shared/log.ts";
import { counter, gauge, type Registry } from "../shared/metrics.ts";
import type { Published } from "../shared/source.ts";
import { changeRecords, type Origin, type RowChange } from "./envelope.ts";
import { lsnText, lsnValue } from "./lsn.ts";
import type { CapturedTable } from "./setup.ts";

/** Records queued before the stream waits for the broker. */
const MAX_QUEUED_RECORDS = 20_000;
/** Records per publish call. */
const PUBLISH_RECORDS = 5_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
const LAG_EVERY_MS = 2_000;
export const HEARTBEAT_PREFIX = "event-pipeline.heartbeat";

/** What {@link startStream} is built from. */
export interface StreamOptions {
  connection: pg.ClientConfig;
  slot: string;
  publication: string;
  tables: CapturedTable[];
  origin: Origin;
  heartbeatMs: number;
  log: Logger;
  registry: Registry;
  publish: (records: OutRecord[]) => Promise<Published>;
}

/** A committed transaction's records, and the position that confirms it. */
interface Committed {
  records: OutRecord[];
  end: bigint;
}

/**
 * Streams the slot onto topics until `stop`.
 *
 * @example
 * const stream = await startStream({ connection, slot, publication, tables, origin, heartbeatMs, log, registry, publish });
 * stream.healthy(); // false while the broker or the database is failing, or the slot is gone
 * await stream.stop(); // publishes what is queued, confirms it, then closes
 */
export async function startStream(options: StreamOptions) {
  const { connection, slot, publication, origin, log, registry, publish } = options;
  const metrics = {
    changes: counter(registry, "capture_changes_total", "Row changes published", ["table", "op"]),
    truncates: counter(registry, "capture_truncates_total", "Truncates of captured tables (no record written)", [
      "table",
    ]),
    lag: gauge(registry, "capture_slot_lag_bytes", "WAL bytes between the server's position and the slot's"),
    confirmed: gauge(registry, "capture_confirmed_lsn", "The slot's confirmed position reported by capture"),
    failures: counter(registry, "capture_failures_total", "Publish or stream attempts that failed and were retried"),
  };
  const keys = new Map(options.tables.map((t) => [`${t.schema}.${t.table}`, t.key]));
  const db = new pg.Client(connection);
  db.on("error", (error) => log.warn({ err: error }, "the capture's query connection failed"));
  await db.connect();
  const slotRow = async () =>
    (
      await db.query<{ confirmed: string; lag: string }>(
        `select confirmed_flush_lsn::text as confirmed,
                pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::text as lag
           from pg_replication_slots where slot_name = $1`,
        [slot],
      )
    ).rows[0];
  const start = await slotRow();
  if (!start) throw new Error(`the replication slot ${slot} is missing`);

  let confirmed = lsnValue(start.confirmed);
  let queue: Committed[] = [];
  let queued = 0;
  let publishing = false;
  let transaction: { xid: number; commitLsn: bigint; committedAt: number; changes: RowChange[] } | undefined;
  let service: LogicalReplicationService | undefined;
  let stopping = false;
  let failing = false;
  let slotLost = false;
  let wake: () => void = () => {};
  let roomMade: () => void = () => {};

  /** Reports `position` as flushed; the library adds one to what it is given. */
  const report = (position: bigint) => service?.acknowledge(lsnText(position > 0n ? position - 1n : 0n));
  const confirm = (position: bigint) => {
    if (position <= confirmed) return;
    confirmed = position;
    metrics.confirmed.set(Number(position));
    void report(position);
  };
  /** With nothing in flight, everything before `position` is accounted for. */
  const idleAt = (position: bigint) => {
    if (!transaction && queue.length === 0 && !publishing) confirm(position);
  };

  async function handle(message: Pgoutput.Message, lsn: bigint): Promise<void> {
    // Once stopping, nothing more is taken in: it is not confirmed, so the next start streams it again.
    if (stopping) return;
    switch (message.tag) {
      case "begin":
        transaction = {
          xid: message.xid,
          commitLsn: lsnValue(message.commitLsn ?? "0/0"),
          committedAt: Number(BigInt(message.commitTime as bigint) / 1000n),
          changes: [],
        };
        return;
      case "insert":
      case "update":
      case "delete": {
        const { schema, name } = message.relation;
        const key = keys.get(`${schema}.${name}`);
        if (!key || !transaction) return;
        const op = message.tag === "insert" ? "c" : message.tag === "update" ? "u" : "d";
        transaction.changes.push({
          op,
          schema,
          table: name,
          key,
          before: message.tag === "insert" ? null : (message.old ?? message.key),
          after: message.tag === "delete" ? null : message.new,
          commitLsn: transaction.commitLsn,
          lsn,
          ordinal: 0,
          txId: transaction.xid,
          committedAt: transaction.committedAt,
        });
        return;
      }
      case "truncate":
        for (const relation of message.relations) {
          const table = `${relation.schema}.${relation.name}`;
          metrics.truncates.inc({ table });
          log.warn({ table, lsn: lsnText(lsn) }, "captured table truncated; no change records are written for it");
        }
        return;
      case "message":
        if (message.prefix === HEARTBEAT_PREFIX) idleAt(lsn);
        return;
      case "commit": {
        const done = transaction;
        transaction = undefined;
        const end = lsnValue(message.commitEndLsn ?? "0/0");
        if (!done || done.changes.length === 0) return idleAt(end);
        const records = done.changes.flatMap((change) => changeRecords(change, origin));
        for (const change of done.changes)
          metrics.changes.inc({ table: `${change.schema}.${change.table}`, op: change.op });
        queue.push({ records, end });
        queued += records.length;
        wake();
        // Backpressure: the library waits for this handler before it reads on.
        while (queued > MAX_QUEUED_RECORDS && !stopping) await new Promise<void>((resolve) => (roomMade = resolve));
        return;
      }
    }
  }

  const publisher = (async () => {
    for (let attempt = 0; ; ) {
      if (queue.length === 0) {
        if (stopping) return;
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const taken: Committed[] = [];
      let count = 0;
      for (const entry of queue) {
        if (taken.length > 0 && count + entry.records.length > PUBLISH_RECORDS) break;
        taken.push(entry);
        count += entry.records.length;
      }
      publishing = true;
      const published = await publish(taken.flatMap((entry) => entry.records));
      publishing = false;
      if (published.ok) {
        attempt = 0;
        if (failing && !slotLost) log.info("publishing again");
        failing = slotLost;
        const set = new Set(taken);
        queue = queue.filter((entry) => !set.has(entry));
        queued -= count;
        roomMade();
        confirm(taken.at(-1)?.end ?? confirmed);
        continue;
      }
      if (stopping) return; // not confirmed: the next start publishes them again
      failing = true;
      metrics.failures.inc();
      const wait = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt++);
      log.warn({ reason: published.reason, records: count, retryInMs: wait }, "publish failed, retrying");
      await Bun.sleep(wait);
    }
  })();

  /** Subscribes to the slot; a failure drops what was not confirmed and subscribes again with backoff. */
  async function subscribe(attempt = 0): Promise<void> {
    if (stopping) return;
    const current = new LogicalReplicationService(connection, {
      acknowledge: { auto: false, timeoutSeconds: 0 },
      flowControl: { enabled: true },
    });
    service = current;
    current.on("data", (lsn: string, message: Pgoutput.Message) => handle(message, lsnValue(lsn)));
    // A keepalive only gets an answer: its position may lie past messages still queued for the handler, so it
    // moves nothing. Heartbeat messages come in WAL order, behind those, and move the slot instead.
    current.on("heartbeat", (_lsn: string, _time: number, shouldRespond: boolean) => {
      if (shouldRespond) void report(confirmed);
    });
    current.on("start", () => {
      if (attempt > 0) log.info({ confirmed: lsnText(confirmed) }, "replication stream resumed");
      failing = slotLost;
      attempt = 0;
    });
    let restarted = false;
    const restart = async (error: unknown) => {
      if (stopping || restarted || service !== current) return;
      restarted = true;
      failing = true;
      metrics.failures.inc();
      // Whatever was received and not confirmed comes again from the slot's confirmed position.
      transaction = undefined;
      const wait = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
      log.warn({ err: error, retryInMs: wait }, "replication stream failed, subscribing again");
      await current.stop().catch(() => {});
      await Bun.sleep(wait);
      await subscribe(attempt + 1);
    };
    current.on("error", restart);
    const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [publication], messages: true });
    current.subscribe(plugin, slot).then(() => restart(new Error("the replication stream ended")), restart);
  }

  const heartbeat = setInterval(() => {
    db.query("select pg_logical_emit_message(false, $1, '')", [HEARTBEAT_PREFIX]).catch((error: unknown) =>
      log.warn({ err: error }, "heartbeat failed"),
    );
    void report(confirmed); // also the standby status the server's wal_sender_timeout waits for
  }, options.heartbeatMs);
  const lagTimer = setInterval(async () => {
    let row: Awaited<ReturnType<typeof slotRow>>;
    try {
      row = await slotRow();
    } catch {
      return; // the server is down: the stream reports that itself
    }
    if (row) return metrics.lag.set(Number(row.lag));
    if (slotLost) return;
    slotLost = true;
    failing = true;
    log.error(
      { slot },
      "the replication slot is gone: changes since it was dropped cannot be streamed; restart capture to snapshot again",
    );
  }, LAG_EVERY_MS);

  await subscribe();
  return {
    /** False while publishing or streaming fails, or once the slot is gone. */
    healthy: () => !failing && !slotLost,
    /** Stops reading, publishes and confirms what was queued, then closes the connections. */
    async stop(): Promise<void> {
      stopping = true;
      clearInterval(heartbeat);
      clearInterval(lagTimer);
      roomMade();
      wake();
      await publisher;
      await service?.stop().catch(() => {});
      await db.end().catch(() => {});
    },
  };
}
