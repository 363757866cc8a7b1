/**
 * The loop every consumer stage shares: read a batch, handle it until its output is durable, commit, repeat.
 * A batch that fails (broker or database down) is retried with capped backoff while the stage reports
 * not-ready; nothing is committed until it succeeds, so an outage delays records and never drops them.
 */
import { type Config, config } from "./config.ts";
import { healthRoutes, serve } from "./http.ts";
import { createConsumer, type InRecord, nextPositions, type Position } from "./kafka.ts";
import { createLifecycle } from "./lifecycle.ts";
import { createLogger } from "./log.ts";
import { counter, createRegistry, gauge, histogram } from "./metrics.ts";

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
const backoff = (attempt: number) => Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);

export interface ConsumeOptions {
  groupId: string;
  topics: string[];
  /**
   * Makes the batch's output durable; throwing means "try the same batch again". Returns the positions to
   * commit, or nothing to commit past the whole batch.
   */
  handle: (batch: InRecord[]) => Promise<Position[] | undefined>;
  /** Work that runs every `everyMs` between batches (closing idle windows), retried and committed the same way. */
  tick?: { everyMs: number; run: () => Promise<Position[]> };
  onAssign?: (partitions: { topic: string; partition: number }[]) => void;
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
  function consume({ groupId, topics, handle, tick, onAssign }: ConsumeOptions) {
    const join = () =>
      createConsumer({
        brokers: env.KAFKA_BROKERS,
        groupId,
        clientId: service,
        topics,
        ...(onAssign && { onAssign }),
        onLag: (lags) => {
          for (const { topic, partition, lag } of lags) metrics.lag.set({ topic, partition }, lag);
        },
      });
    let consumer = join();

    /** Runs `work` until it succeeds (or shutdown begins), pausing intake while it fails, then commits. */
    async function durably(work: () => Promise<Position[]>) {
      for (let attempt = 0; ; attempt++) {
        try {
          const positions = await work();
          if (failing) {
            failing = false;
            consumer.resume();
            log.info({ attempts: attempt + 1 }, "succeeded after retrying");
          }
          await consumer.commit(positions);
          return;
        } catch (error) {
          if (lifecycle.stopping) throw error;
          if (!failing) {
            failing = true;
            consumer.pause();
          }
          metrics.batchFailures.inc();
          log.warn({ err: error, attempt, retryInMs: backoff(attempt) }, "failed, retrying");
          await Promise.race([Bun.sleep(backoff(attempt)), lifecycle.stopRequested]);
        }
      }
    }

    // Batches and ticks share one queue: the stage's state and its commits never see two at once.
    let current: Promise<void> = Promise.resolve();
    const serially = (work: () => Promise<Position[]>) => {
      current = current.then(() => durably(work));
      return current;
    };

    // A broker outage ends the client's stream; the stage leaves the group and joins again, with backoff,
    // rather than exit. Nothing uncommitted is lost: the new member starts from the committed offsets.
    const loop = (async () => {
      for (let attempt = 0; !lifecycle.stopping; attempt++) {
        try {
          for await (const batch of consumer.batches(env.BATCH_MAX_RECORDS)) {
            attempt = 0;
            const timer = metrics.batchSeconds.startTimer();
            for (const record of batch) metrics.recordsIn.inc({ topic: record.topic });
            await serially(async () => (await handle(batch)) ?? nextPositions(batch));
            timer();
            if (lifecycle.stopping) return;
          }
          if (lifecycle.stopping) return;
          throw new Error("the consumer's stream ended");
        } catch (error) {
          if (lifecycle.stopping) return;
          failing = true;
          log.warn({ err: error, retryInMs: backoff(attempt) }, "consumer failed, joining the group again");
          await consumer.close().catch(() => {});
          await Promise.race([Bun.sleep(backoff(attempt)), lifecycle.stopRequested]);
          if (lifecycle.stopping) return;
          consumer = join();
          failing = false;
        }
      }
    })();

    let ticking = false;
    const ticker =
      tick &&
      setInterval(() => {
        if (ticking || lifecycle.stopping) return;
        ticking = true;
        serially(tick.run)
          .catch(() => {}) // only fails once shutdown has begun
          .finally(() => {
            ticking = false;
          });
      }, tick.everyMs);

    lifecycle.onShutdown("finish and commit the current work, then leave the group", async () => {
      clearInterval(ticker);
      await current.catch(() => {});
      await consumer.close();
      await loop;
    });
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
