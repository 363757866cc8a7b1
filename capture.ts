/**
 * capture: a PostgreSQL database's row changes onto topics. The tables of CAPTURE_TABLES are published over
 * logical replication (pgoutput) through a durable slot; on first start the rows already there are published as
 * a snapshot consistent with the slot's start (capture/setup.ts), then every committed change follows, in
 * commit order, to `cdc.<schema>.<table>`, keyed by the primary key, as a Debezium change event
 * (capture/envelope.ts). The slot's confirmed position moves only past changes the broker acknowledged
 * (capture/stream.ts), so a crash at any point loses nothing: a restart streams again from that position.
 */

import pg from "pg";
import { changeRecords } from "./capture/envelope.ts";
import {
  capturedTables,
  createSlotWithSnapshot,
  ensurePublication,
  readBigintsAsNumbers,
  slotState,
} from "./capture/setup.ts";
import { startStream } from "./capture/stream.ts";
import { redactUrl } from "./shared/config.ts";
import { ensureTopics } from "./shared/kafka.ts";
import { main, type Stage } from "./shared/runner.ts";
import { createPublisher } from "./shared/source.ts";
import { cdcTopicOf } from "./shared/topics.ts";

/** How long one publish may wait for the broker before it counts as failed and is retried. */
const PUBLISH_TIMEOUT_MS = 30_000;
const RETRY_MS = 1_000;

/** The capture stage: CAPTURE_DATABASE_URL's tables in CAPTURE_TABLES onto their cdc topics. */
export const capture: Stage = {
  name: "capture",
  port: "CAPTURE_PORT",
  ackTimeoutMs: () => PUBLISH_TIMEOUT_MS,
  async start({ env, kafka, log, registry, producer }) {
    readBigintsAsNumbers();
    const connection = { connectionString: env.CAPTURE_DATABASE_URL, connectionTimeoutMillis: 5_000 };
    const slot = env.CAPTURE_SLOT;
    const db = new pg.Client(connection);
    await db.connect().catch((error: Error) => {
      throw new Error(`cannot reach the source database at ${redactUrl(env.CAPTURE_DATABASE_URL)}: ${error.message}`);
    });
    const [tables, state] = await (async () => {
      try {
        const tables = await capturedTables(db, env.CAPTURE_TABLES);
        await ensurePublication(db, env.CAPTURE_PUBLICATION, tables);
        return [tables, await slotState(db, slot)] as const;
      } finally {
        await db.end();
      }
    })();
    // A table beyond the default has no topic from `bun run stack` or compose: capture makes it, with its DLQ.
    const topics = env.CAPTURE_TABLES.map(cdcTopicOf);
    const names = topics.flatMap((topic) => [topic, `${topic}.dlq`]);
    await ensureTopics(
      kafka,
      names.map((name) => ({ name, partitions: env.TOPIC_PARTITIONS })),
    );

    const publish = createPublisher(producer, PUBLISH_TIMEOUT_MS);
    const origin = { name: slot, db: new URL(env.CAPTURE_DATABASE_URL).pathname.slice(1) };
    if (state !== "ready") {
      log.info({ slot, state }, "taking a snapshot of the captured tables with a new replication slot");
      await createSlotWithSnapshot({
        connection,
        slot,
        tables,
        log,
        // A snapshot chunk is retried until the broker has it: the slot is only marked done once all are.
        async publish(changes) {
          const records = changes.flatMap((change) => changeRecords(change, origin));
          for (let published = await publish(records); !published.ok; published = await publish(records)) {
            log.warn({ reason: published.reason }, "snapshot publish failed, retrying");
            await Bun.sleep(RETRY_MS);
          }
        },
      });
    }

    const stream = await startStream({
      connection,
      slot,
      publication: env.CAPTURE_PUBLICATION,
      tables,
      origin,
      heartbeatMs: env.CAPTURE_HEARTBEAT_MS,
      log,
      registry,
      publish,
    });
    log.info({ slot, topics }, "capturing changes");
    return { ready: () => stream.healthy(), drain: () => stream.stop() };
  },
};

if (import.meta.main) await main(capture);
