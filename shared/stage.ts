/**
 * The loop every consumer stage shares: read a batch, handle it until its output is durable, commit, repeat.
 * A batch that fails (broker or database down) is retried with capped backoff while the stage reports
 * not-ready; nothing is committed until it succeeds, so an outage delays records and never drops them.
 */
import { type Config, config } from "./config.ts";
import { healthRoutes, serve } from "./http.ts";
import { createConsumer, type InRecord } from "./kafka.ts";
import { createLifecycle } from "./lifecycle.ts";
import { createLogger } from "./log.ts";
import { counter, createRegistry, gauge, histogram } from "./metrics.ts";

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;

export interface ConsumeOptions {
  groupId: string;
  topics: string[];
  /** Makes the batch's output durable; throwing means "try the same batch again". */
  handle: (batch: InRecord[]) => Promise<void>;
}

/** Config, logger, metrics, health server and shutdown for the consumer stage `service` on `port`. */
export function createStage(service: string, port: (env: Config) => number) {
  const env = config();
  const log = createLogger(service, env.LOG_LEVEL);
  const registry = createRegistry(service);
  const lifecycle = createLifecycle(log, env.SHUTDOWN_TIMEOUT_MS);
  const metrics = {
    recordsIn: counter(registry, "records_in_total", "Records consumed", ["topic"]),
    recordsOut: counter(registry, "records_out_total", "Records produced or written", ["topic"]),
    deadLettered: counter(registry, "records_dead_lettered_total", "Records sent to a DLQ", ["topic"]),
    batchSeconds: histogram(registry, "batch_seconds", "Time from reading a batch to committing it"),
    batchFailures: counter(registry, "batch_failures_total", "Batch attempts that failed and were retried"),
    lag: gauge(registry, "consumer_lag", "Records not yet committed, per partition", ["topic", "partition"]),
  };
  let failing = false;

  /** Joins the group and runs `handle` on each batch until shutdown. */
  function consume({ groupId, topics, handle }: ConsumeOptions) {
    const consumer = createConsumer({
      brokers: env.KAFKA_BROKERS,
      groupId,
      clientId: service,
      topics,
      onLag: (lags) => {
        for (const { topic, partition, lag } of lags) metrics.lag.set({ topic, partition }, lag);
      },
    });

    async function handleUntilDone(batch: InRecord[]) {
      for (let attempt = 0; ; attempt++) {
        try {
          await handle(batch);
          if (failing) {
            failing = false;
            consumer.resume();
            log.info({ attempts: attempt + 1 }, "batch succeeded after retrying");
          }
          return;
        } catch (error) {
          if (lifecycle.stopping) throw error;
          if (!failing) {
            failing = true;
            consumer.pause();
          }
          metrics.batchFailures.inc();
          const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
          log.warn({ err: error, attempt, retryInMs: delay, records: batch.length }, "batch failed, retrying");
          await Promise.race([Bun.sleep(delay), lifecycle.stopRequested]);
        }
      }
    }

    async function processBatch(batch: InRecord[]) {
      const timer = metrics.batchSeconds.startTimer();
      for (const record of batch) metrics.recordsIn.inc({ topic: record.topic });
      await handleUntilDone(batch);
      await consumer.commit(batch);
      timer();
    }

    let current: Promise<void> = Promise.resolve();
    const loop = (async () => {
      for await (const batch of consumer.batches(env.BATCH_MAX_RECORDS)) {
        current = processBatch(batch);
        await current;
        if (lifecycle.stopping) break;
      }
    })().catch((error: unknown) => {
      if (lifecycle.stopping) return;
      log.fatal({ err: error }, "consumer loop failed");
      process.exit(1);
    });

    lifecycle.onShutdown("finish and commit the current batch, then leave the group", async () => {
      await current.catch(() => {});
      await consumer.close();
      await loop;
    });
    return consumer;
  }

  /** Serves /healthz, /readyz and /metrics; ready while no batch is failing and `ready` says so. */
  function serveHealth(ready: () => boolean | Promise<boolean> = () => true) {
    const app = healthRoutes({ registry, ready: async () => !lifecycle.stopping && !failing && (await ready()) });
    const server = serve(app, port(env));
    lifecycle.onShutdown("stop the health server", () => server.stop(true));
    log.info({ port: server.port }, `${service} serving health and metrics`);
  }

  return { env, log, registry, lifecycle, metrics, consume, serveHealth };
}
