/**
 * The runner every stage shares. A stage is a value: a name, the setting that holds its port, and a `start`
 * that builds its variable part from a context (configuration, logger, metrics, producer). The runner owns the
 * rest: it serves `/healthz`, `/readyz` and `/metrics` (and the stage's own routes) on the stage's port, runs
 * the consume loop, and shuts down in fixed phases. Importing a stage module connects to nothing; only
 * {@link runStage} (or {@link main}, under `import.meta.main`) does.
 */
import cluster from "node:cluster";
import { Hono } from "hono";
import { clusterExposition, superviseWorkers, workerNumber } from "./cluster.ts";
import { type Config, ConfigError, parseConfig } from "./config.ts";
import { type ConsumeSpec, startConsuming } from "./consume.ts";
import { healthRoutes, serve } from "./http.ts";
import {
  checkBroker,
  createProducer,
  KafkaAccessError,
  type KafkaConnection,
  type KafkaProducer,
  kafkaConnection,
  type OutRecord,
} from "./kafka.ts";
import { createLifecycle } from "./lifecycle.ts";
import { createLogger, type Logger } from "./log.ts";
import { countByTopic, counter, createRegistry, type Registry } from "./metrics.ts";

/** Settings that hold a port: each stage serves its health, metrics and routes on its own. */
export type PortSetting = { [K in keyof Config]-?: K extends `${string}_PORT` ? K : never }[keyof Config];

/** What a stage's `start` gets. */
export interface StageContext {
  env: Config;
  /** The cluster of `env`, with its credentials: what a stage passes to the Kafka helpers it calls itself. */
  kafka: KafkaConnection;
  log: Logger;
  /** The stage's Prometheus registry, for metrics of its own. */
  registry: Registry;
  /** The stage's one idempotent producer; `send` resolves once the broker has acknowledged every record. */
  producer: KafkaProducer;
  /** Sends `records` and counts them per topic (dead letters as such): the usual way a stage produces. */
  produce: (records: OutRecord[]) => Promise<void>;
}

/** The variable part of a stage, as its `start` builds it. */
export interface StageParts {
  /** Topics to consume in a group; the runner owns the loop, its retries and its commits. */
  consume?: ConsumeSpec;
  /** Routes served on the stage's port beside the health routes (the ingest API). */
  routes?: Hono;
  /** Whether the stage's own dependencies (a database) answer; the broker and the loop are checked anyway. */
  ready?: () => boolean | Promise<boolean>;
  /**
   * Stops a source's own intake and finishes its current batch (publish, then acknowledge upstream), before the
   * producer is flushed: the part of a shutdown a stage that does not consume runs itself.
   */
  drain?: () => Promise<void>;
  /** Closes what `start` opened (sinks, pools), after the last batch has committed and the producer flushed. */
  close?: () => Promise<void>;
}

/** A stage, as a value. */
export interface Stage {
  name: string;
  port: PortSetting;
  /** The consumer group of a stage that consumes: one name, for the stage and for whoever inspects it. */
  group?: (env: Config) => string;
  /** How long the producer waits for the broker's acknowledgement; 5 s unless the stage says otherwise. */
  ackTimeoutMs?: (env: Config) => number;
  /**
   * How many processes {@link main} runs, all serving the stage's port (Linux's SO_REUSEPORT spreads the
   * connections), each with its own producer; one unless the stage says otherwise.
   */
  processes?: (env: Config) => number;
  /** Builds the stage's parts; throwing stops the stage with that error as its one message. */
  start: (context: StageContext) => StageParts | Promise<StageParts>;
}

/** A stage started by {@link runStage}. */
export interface RunningStage {
  name: string;
  port: number;
  /** Where its health, metrics and routes answer, e.g. `http://127.0.0.1:3001`. */
  url: string;
  log: Logger;
  /** Shuts the stage down in its phases; resolves once every phase ran. */
  stop: (reason?: string) => Promise<void>;
}

export interface RunOptions {
  /** Settings over `process.env`. */
  env?: Record<string, string>;
  /** Overrides the port setting; 0 picks a free port (tests and benchmarks running stages in-process). */
  port?: number;
  /**
   * This process is worker `worker` of several serving one port ({@link main} with `processes` above one): it
   * listens with reusePort, labels its metrics `process`, and `/metrics` answers for all of them.
   */
  worker?: number;
}

const DEFAULT_ACK_TIMEOUT_MS = 5_000;
/** How long the start waits for the broker's first answer; a broker that is not up yet is retried later anyway. */
const ACCESS_CHECK_MS = 5_000;

/**
 * Starts `stage`: checks that the broker accepts its credentials and certificate, builds its parts, serves its
 * port, joins its group. Throws a {@link KafkaAccessError} when the broker refuses them: retrying would not help.
 *
 * @example
 * const running = await runStage(enrich, { port: 0, env: { LOG_LEVEL: "silent" } });
 * await fetch(`${running.url}/readyz`);
 * await running.stop();
 */
export async function runStage(stage: Stage, options: RunOptions = {}): Promise<RunningStage> {
  const env = parseConfig({ ...process.env, ...options.env });
  const log = createLogger(stage.name, env.LOG_LEVEL);
  const shared = options.worker !== undefined;
  const registry = createRegistry(stage.name, shared ? { process: String(options.worker) } : {});
  const kafka = kafkaConnection(env);
  // A broker that does not answer yet is the consume loop's to retry; one that refuses us stops the start here.
  if (!(await checkBroker(kafka, ACCESS_CHECK_MS)))
    log.warn({ brokers: kafka.brokers }, "the broker does not answer yet");
  const lifecycle = createLifecycle(log, env.SHUTDOWN_TIMEOUT_MS);
  const producer = createProducer({
    kafka,
    clientId: stage.name,
    timeoutMs: stage.ackTimeoutMs?.(env) ?? DEFAULT_ACK_TIMEOUT_MS,
  });
  const recordsOut = counter(registry, "records_out_total", "Records produced or written", ["topic"]);
  const deadLettered = counter(registry, "records_dead_lettered_total", "Records sent to a DLQ", ["topic"]);
  const produce = async (records: OutRecord[]) => {
    if (records.length === 0) return;
    await producer.send(records);
    countByTopic(records, (topic) => (topic.endsWith(".dlq") ? deadLettered : recordsOut));
  };

  let parts: StageParts;
  try {
    parts = await stage.start({ env, kafka, log, registry, producer, produce });
  } catch (error) {
    await producer.close().catch(() => {});
    throw error;
  }
  if (parts.drain)
    lifecycle.onShutdown("finish and commit the current batch", `finish ${stage.name}'s batch`, parts.drain);
  lifecycle.onShutdown("flush the producer", "flush the producer", () => producer.close());
  if (parts.close) lifecycle.onShutdown("close sinks and pools", `close what ${stage.name} opened`, parts.close);

  const group = stage.group?.(env);
  if (parts.consume && !group) throw new Error(`${stage.name} consumes but names no consumer group`);
  const loop =
    parts.consume &&
    startConsuming(parts.consume, {
      group: group as string,
      env,
      kafka,
      clientId: stage.name,
      log,
      registry,
      lifecycle,
    });
  const ready = async () =>
    !lifecycle.stopping && (loop?.healthy() ?? true) && (await producer.ping()) && ((await parts.ready?.()) ?? true);
  // Health routes join the stage's own app, so its middleware (request ids, status counts) covers them too.
  const exposition = shared ? clusterExposition(registry) : undefined;
  const app = (parts.routes ?? new Hono()).route("/", healthRoutes({ registry, ready, exposition }));
  const server = serve(app, options.port ?? env[stage.port], shared);
  // The routes are the intake of a stage that has them: in-flight requests finish before the producer flushes.
  if (parts.routes) lifecycle.onShutdown("stop intake", "stop accepting requests", () => server.stop());
  else lifecycle.onShutdown("stop the health server", "stop the health server", () => server.stop(true));
  log.info({ port: server.port }, `${stage.name} listening`);

  return {
    name: stage.name,
    port: server.port as number,
    url: `http://127.0.0.1:${server.port}`,
    log,
    stop: (reason = "stopped by its owner") => lifecycle.shutdown(reason),
  };
}

/**
 * Runs `stage` as the process: SIGTERM or SIGINT shut it down, and a bad setting, a broker that refuses the
 * credentials or the certificate, or a failed start ends the process with one clear message. A stage that asks
 * for several processes gets them: this one forks and supervises them (cluster.ts), and each runs the stage.
 *
 * @example
 * if (import.meta.main) await main(enrich);
 */
export async function main(stage: Stage): Promise<void> {
  let running: RunningStage;
  try {
    const env = parseConfig(process.env);
    const processes = stage.processes?.(env) ?? 1;
    if (processes > 1 && cluster.isPrimary) return superviseWorkers(processes, createLogger(stage.name, env.LOG_LEVEL));
    const worker = workerNumber();
    running = await runStage(stage, worker === undefined ? {} : { worker });
  } catch (error) {
    if (error instanceof ConfigError) console.error(error.message);
    else if (error instanceof KafkaAccessError)
      createLogger(stage.name, "info").fatal(`${stage.name} could not start: ${error.message}`);
    else createLogger(stage.name, "info").fatal({ err: error }, `${stage.name} could not start`);
    process.exit(1);
  }
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.once(signal, () =>
      running.stop(signal).then(
        () => process.exit(0),
        (error: unknown) => {
          running.log.error({ err: error }, "shutdown did not finish, exiting");
          process.exit(1);
        },
      ),
    );
  }
}
