/**
 * The loop every consumer stage shares: read a batch, handle it until its output is durable, commit, repeat.
 * A batch that fails (broker or database down) is retried with capped backoff while the stage reports
 * not-ready; nothing is committed until it succeeds, so an outage delays records and never drops them.
 */
import type { Config } from "./config.ts";
import { createConsumer, type InRecord, type KafkaConnection, nextPositions, type Position } from "./kafka.ts";
import type { Lifecycle } from "./lifecycle.ts";
import type { Logger } from "./log.ts";
import { countByTopic, counter, gauge, histogram, type Registry } from "./metrics.ts";

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;
const backoff = (attempt: number) => Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);

/** What a consumer stage reads and what it does with each batch. */
export interface ConsumeSpec {
  topics: string[];
  /**
   * Makes the batch's output durable; throwing means "try the same batch again". Returns the positions to
   * commit, or nothing to commit past the whole batch.
   */
  handle: (batch: InRecord[]) => Promise<Position[] | undefined>;
  /**
   * CPU work on a batch as soon as it is read, while the batch before it is still being handled (its transaction
   * or its acknowledgements in flight); `handle` gets the same batch next and finds the result where `prepare`
   * left it. Must have no effect outside the stage: a prepared batch may never be handled (shutdown, rebalance).
   */
  prepare?: (batch: InRecord[]) => void;
  /** Work that runs every `everyMs` between batches (closing idle windows), retried and committed the same way. */
  tick?: { everyMs: number; run: () => Promise<Position[]> };
  /** Called with this member's partitions after every rebalance. */
  onAssign?: (partitions: { topic: string; partition: number }[]) => void;
  /** Every partition to one member of the group, the others standing by (a stage whose state spans them all). */
  exclusive?: boolean;
}

/**
 * A batch's CPU work done once: in `prepare`, when the loop reads the batch while the one before it is still
 * being handled, or else in `take`, which `handle` calls. `take` drops the result, so no handled batch is kept
 * alive, and a retry of the batch does the work again.
 *
 * @example
 * const decoded = preparing((batch) => mapRecords(batch, "persist", rowOf));
 * const consume = { topics, prepare: decoded.prepare, handle: async (batch) => write(decoded.take(batch)) };
 */
export function preparing<T>(work: (batch: InRecord[]) => T) {
  let prepared: { batch: InRecord[]; value: T } | undefined;
  return {
    prepare(batch: InRecord[]): void {
      prepared = { batch, value: work(batch) };
    },
    take(batch: InRecord[]): T {
      const value = prepared?.batch === batch ? prepared.value : work(batch);
      prepared = undefined;
      return value;
    },
  };
}

interface LoopDeps {
  group: string;
  env: Config;
  kafka: KafkaConnection;
  clientId: string;
  log: Logger;
  registry: Registry;
  lifecycle: Lifecycle;
}

/**
 * Joins `group` and runs `spec.handle` on each batch until shutdown. Returns whether the loop is healthy
 * (no batch failing), for the stage's readiness.
 *
 * @example
 * const loop = startConsuming({ topics: ["locations.raw"], handle }, { group: "enrich", ...deps });
 * loop.healthy(); // false while a batch is being retried
 */
export function startConsuming(spec: ConsumeSpec, deps: LoopDeps) {
  const { group, env, kafka, clientId, log, registry, lifecycle } = deps;
  const metrics = {
    recordsIn: counter(registry, "records_in_total", "Records consumed", ["topic"]),
    batchSeconds: histogram(registry, "batch_seconds", "Time from reading a batch to committing it"),
    batchFailures: counter(registry, "batch_failures_total", "Batch attempts that failed and were retried"),
    lag: gauge(registry, "consumer_lag", "Records not yet committed, per partition", ["topic", "partition"]),
  };
  let failing = false;
  const join = () =>
    createConsumer({
      kafka,
      groupId: group,
      clientId,
      topics: spec.topics,
      ...(spec.onAssign && { onAssign: spec.onAssign }),
      ...(spec.exclusive && { exclusive: true }),
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
      // One batch is handled at a time; the next one is read and prepared meanwhile.
      let handling: Promise<void> = Promise.resolve();
      try {
        for await (const batch of consumer.batches(env.BATCH_MAX_RECORDS)) {
          attempt = 0;
          const timer = metrics.batchSeconds.startTimer();
          spec.prepare?.(batch);
          await handling;
          if (lifecycle.stopping) return;
          countByTopic(batch, () => metrics.recordsIn);
          // A batch fails for good only once shutdown has begun, which the next turn sees.
          handling = serially(async () => (await spec.handle(batch)) ?? nextPositions(batch)).then(
            () => {
              timer();
            },
            () => {},
          );
        }
        await handling;
        if (lifecycle.stopping) return;
        throw new Error("the consumer's stream ended");
      } catch (error) {
        await handling;
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
  const tick = spec.tick;
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

  lifecycle.onShutdown("stop intake", "stop the idle tick", () => clearInterval(ticker));
  lifecycle.onShutdown("finish and commit the current batch", "commit, then leave the group", async () => {
    await current.catch(() => {});
    await consumer.close();
    await loop;
  });

  return { healthy: () => !failing };
}
