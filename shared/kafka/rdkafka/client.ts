/**
 * One librdkafka client handle and the loop that serves its queue from JavaScript's own thread. Everything
 * librdkafka reports (deliveries, fetched records, rebalances, commit results, logs, errors) arrives as an event
 * on a queue that this loop polls with a timeout of 0, so no call ever blocks the event loop and librdkafka never
 * calls into JavaScript (no callback is registered at all): it writes to a pipe that the loop reads instead.
 * Every event is destroyed once handled.
 */
import { CString, type Pointer, ptr, read } from "bun:ffi";
import { closeSync } from "node:fs";
import { config } from "../../config.ts";
import { createLogger, type Logger } from "../../log.ts";
import { CLIENT_TYPE, cstr, EVENT, libc, O_CLOEXEC, O_NONBLOCK, pointer, rdkafka } from "./ffi.ts";

/** Events served per turn of the loop, so a busy queue never holds the event loop for long. */
const EVENTS_PER_TURN = 5_000;
/** How often queues are looked at without a wake-up from librdkafka: a safety net, not the way events arrive. */
const IDLE_POLL_MS = 100;

export interface ClientHandle {
  rk: Pointer;
  /** The queue every event of the client arrives on (the consumer's queue, or the main queue of a producer). */
  queue: Pointer;
}

let logger: Logger | undefined;
/** librdkafka's own log lines, at debug level: its errors also arrive as error events, which the client reports. */
const rdkafkaLog = () => {
  logger ??= createLogger("librdkafka", config().LOG_LEVEL);
  return logger;
};

/** Text of a NUL-terminated buffer librdkafka wrote an error into. */
const errorText = (buffer: Buffer) => buffer.toString("utf8", 0, Math.max(0, buffer.indexOf(0)));

/**
 * A started client of `type` with `settings` (librdkafka property names), its logs routed to its event queue.
 * Throws on a property librdkafka rejects, naming the property but not its value (it may be a password).
 *
 * @example
 * const { rk, queue } = openClient("producer", { "bootstrap.servers": "127.0.0.1:19092" }, EVENT.DR);
 */
export function openClient(
  type: keyof typeof CLIENT_TYPE,
  settings: Record<string, string>,
  events: number,
): ClientHandle {
  const lib = rdkafka();
  const conf = lib.rd_kafka_conf_new();
  const error = Buffer.alloc(512);
  // The queue, not librdkafka's threads, carries the log lines: then they are served by the loop below.
  for (const [name, value] of Object.entries({ ...settings, "log.queue": "true" })) {
    if (lib.rd_kafka_conf_set(conf, cstr(name), cstr(value), error, error.length) !== 0) {
      lib.rd_kafka_conf_destroy(conf);
      throw new Error(`librdkafka refused the setting ${name}: ${errorText(error)}`);
    }
  }
  lib.rd_kafka_conf_set_events(conf, events | EVENT.LOG | EVENT.ERROR);
  const rk = pointer(lib.rd_kafka_new(CLIENT_TYPE[type], conf, error, error.length));
  if (!rk) {
    lib.rd_kafka_conf_destroy(conf);
    throw new Error(`librdkafka could not start a ${type}: ${errorText(error)}`);
  }
  // A consumer's main queue (logs and errors included) is forwarded to its consumer queue: one queue to poll.
  if (type === "consumer") lib.rd_kafka_poll_set_consumer(rk);
  lib.rd_kafka_set_log_queue(rk, null);
  const queue = pointer(type === "consumer" ? lib.rd_kafka_queue_get_consumer(rk) : lib.rd_kafka_queue_get_main(rk));
  if (!queue) throw new Error(`librdkafka gave no queue for the ${type}`);
  return { rk, queue };
}

/** The three out-parameters of rd_kafka_event_log: facility, text, level. */
const logSlots = new BigUint64Array(3);
const SYSLOG_LEVELS = ["fatal", "fatal", "fatal", "error", "warn", "info", "info", "debug"] as const;

/** Writes a log event to the log at debug level (trace for librdkafka's own debug lines); returns its text. */
export function serveLog(event: Pointer, clientId: string): string | undefined {
  const base = ptr(logSlots);
  const at = (offset: number) => (base + offset) as Pointer;
  if (rdkafka().rd_kafka_event_log(event, base, at(8), at(16)) !== 0) return undefined;
  const text = new CString(read.ptr(base, 8) as Pointer).toString();
  const facility = new CString(read.ptr(base, 0) as Pointer).toString();
  const severity = SYSLOG_LEVELS[read.i32(base, 16)] ?? "debug";
  rdkafkaLog()[severity === "debug" ? "trace" : "debug"]({ clientId, facility, severity }, text);
  return text;
}

export interface EventLoop {
  /** Serves the queues now and keeps serving them; the loop stops once `stop` is called. */
  wake(): void;
  stop(): void;
}

/** Records or events taken off a queue by their own call (a consumer's fetched records, a batch per call). */
export interface Drain {
  queue: Pointer;
  /**
   * Takes at most `most` and says how many it took. Fewer means the queue is empty, or the taker has no room
   * and wakes the loop once it has.
   */
  serve(most: number): number;
}

/**
 * A pipe librdkafka writes a byte into whenever one of `queues` gets something after it was last polled, read
 * here without blocking: each byte calls `wake`. The pipe is what keeps a process with an open client running.
 * Returns what stops it.
 */
function wakeOnEnqueue(queues: Pointer[], wake: () => void): () => void {
  const lib = rdkafka();
  const fds = new Int32Array(2);
  if (libc().pipe2(ptr(fds), O_NONBLOCK | O_CLOEXEC) !== 0) throw new Error("no pipe for librdkafka's wake-ups");
  const [readFd, writeFd] = [fds[0] as number, fds[1] as number];
  const payload = Buffer.from("!");
  for (const queue of queues) lib.rd_kafka_queue_io_event_enable(queue, writeFd, payload, payload.length);
  const reader = Bun.file(readFd).stream().getReader();
  let open = true;
  const reading = (async () => {
    while (open) {
      const { done } = await reader.read();
      if (done) return;
      wake();
    }
  })().catch(() => {}); // a cancelled read
  return () => {
    open = false;
    for (const queue of queues) lib.rd_kafka_queue_io_event_enable(queue, -1, null, 0);
    void reader.cancel().then(() =>
      reading.finally(() => {
        closeSync(readFd);
        closeSync(writeFd);
      }),
    );
  };
}

/**
 * Polls `queues` with timeout 0 and hands each event to `handle` (which must not destroy it), then destroys it;
 * `drain`, when given, is served on every turn too. A turn comes when librdkafka signals that a queue got
 * something (so a delivery reaches its caller at once, and waiting costs no CPU), again at once when a queue
 * still held more than a turn's share, and every {@link IDLE_POLL_MS} otherwise. A turn that empties a queue
 * re-arms its signal (librdkafka writes to the pipe once per queue until it is polled again), so a busy client
 * polls as often as events arrive, not on every turn of the event loop: polling an empty queue took a sixth of
 * single-event ingest. An exception from `handle` goes to `fail` and the loop carries on: a loop that died would
 * hang its client.
 *
 * @example
 * const loop = pollEvents([queue], (event, type) => { if (type === EVENT.DR) deliver(event); }, {
 *   fail: (error) => log.error(error),
 * });
 */
export function pollEvents(
  queues: Pointer[],
  handle: (event: Pointer, type: number) => void,
  { fail, drain }: { fail: (error: unknown) => void; drain?: Drain },
): EventLoop {
  const lib = rdkafka();
  let timer: Timer | undefined;
  let immediate: ReturnType<typeof setImmediate> | undefined;
  let stopped = false;

  function turn() {
    timer = undefined;
    immediate = undefined;
    if (stopped) return;
    // Each queue and the drain get their own share of the turn, so a busy one never starves the others. `more`:
    // a queue still holds events after its share, and the pipe signals only a queue that was emptied.
    let more = false;
    if (drain) {
      try {
        more = drain.serve(EVENTS_PER_TURN) >= EVENTS_PER_TURN;
      } catch (error) {
        fail(error);
      }
    }
    for (const queue of queues) {
      for (let n = 0; ; n++) {
        if (n === EVENTS_PER_TURN) {
          more = true;
          break;
        }
        // A handler may stop the loop (its client retired): nothing more is taken off its queues then.
        if (stopped) break;
        const event = pointer(lib.rd_kafka_queue_poll(queue, 0));
        if (!event) break;
        try {
          handle(event, lib.rd_kafka_event_type(event));
        } catch (error) {
          fail(error);
        } finally {
          lib.rd_kafka_event_destroy(event);
        }
      }
    }
    // Stopped, or woken while serving (a handler made room): the next turn is settled already.
    if (stopped || immediate) return;
    // More is waiting: come back after whatever else the event loop has to do. Otherwise the pipe says when.
    if (more) immediate = setImmediate(turn);
    else timer = setTimeout(turn, IDLE_POLL_MS);
  }

  const wake = () => {
    if (stopped || immediate) return; // the next turn is already due
    if (timer) clearTimeout(timer);
    immediate = setImmediate(turn);
  };
  const unwatch = wakeOnEnqueue(drain ? [...queues, drain.queue] : queues, wake);
  // A first turn: librdkafka signals a queue that gets something after it was polled, and what came before the
  // signal was enabled (a new handle's first logs and errors) would otherwise wait for the next event.
  wake();
  return {
    wake,
    stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      if (immediate) clearImmediate(immediate);
      unwatch();
    },
  };
}

/** The text of an rd_kafka_error_t, which it destroys; undefined for NULL (success). */
export function takeError(result: Pointer | bigint | null): { code: number; message: string } | undefined {
  const error = pointer(result);
  if (!error) return undefined;
  const lib = rdkafka();
  const taken = { code: lib.rd_kafka_error_code(error), message: String(lib.rd_kafka_error_string(error)) };
  lib.rd_kafka_error_destroy(error);
  return taken;
}
