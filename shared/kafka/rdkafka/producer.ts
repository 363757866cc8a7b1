/**
 * The port's {@link KafkaProducer} on librdkafka: idempotent, acks=all, Java's partitioner (murmur2_random).
 * librdkafka batches the records that gather while requests are in flight, so each `send` hands its records over
 * at once; their delivery reports come back as events, each carrying the sequence number it was produced with.
 */
import { type Pointer, ptr, read } from "bun:ffi";
import { brokerAnswers } from "../admin.ts";
import { KafkaAccessError } from "../connection.ts";
import { onBroker } from "../namespace.ts";
import type { Delivery, KafkaProducer, OutRecord, ProducerOptions } from "../types.ts";
import { openClient, pollEvents, serveLog, takeError } from "./client.ts";
import { accessRefusal, connectionSettings } from "./config.ts";
import {
  cstr,
  DESTROY_F_NO_CONSUMER_CLOSE,
  ERR,
  EVENT,
  MESSAGE,
  MSG_F_COPY,
  PARTITION_UA,
  PURGE_QUEUE_AND_INFLIGHT,
  pointer,
  rdkafka,
  VTYPE,
  VU_SIZE,
} from "./ffi.ts";

interface Pending {
  topic: string;
  /** The send it belongs to, and where in it. */
  send: SendState;
  index: number;
}

interface SendState {
  deliveries: Delivery[];
  remaining: number;
  settled: boolean;
  resolve: (deliveries: Delivery[]) => void;
  reject: (error: Error) => void;
}

/**
 * rd_kafka_produceva's argument array: `count` rd_kafka_vu_t of {@link VU_SIZE} bytes, each its type (an int)
 * and a union whose 64-bit words hold addresses, sizes and numbers (all below 2^53, as every address is),
 * written through typed views rather than Buffer calls: this runs once per record.
 */
class Fields {
  readonly buffer: Buffer;
  private readonly words: Uint32Array;
  private readonly ints: Int32Array;
  constructor(readonly count: number) {
    this.buffer = Buffer.alloc(VU_SIZE * count);
    this.words = new Uint32Array(this.buffer.buffer, this.buffer.byteOffset, this.buffer.length / 4);
    this.ints = new Int32Array(this.buffer.buffer, this.buffer.byteOffset, this.buffer.length / 4);
  }
  /** Field `i`: its type, and word `slot` of its union. */
  set(i: number, type: number, slot: number, n: number) {
    this.ints[(i * VU_SIZE) / 4] = type;
    this.setWord(i, slot, n);
  }
  setWord(i: number, slot: number, n: number) {
    const at = (i * VU_SIZE + 8 + slot * 8) / 4;
    this.words[at] = n >>> 0;
    this.words[at + 1] = Math.floor(n / 0x1_0000_0000);
  }
  /** The union of field `i` as one int (a partition, flags). */
  setInt(i: number, n: number) {
    this.ints[(i * VU_SIZE + 8) / 4] = n;
  }
}

const NO_HEADERS: [string, string][] = [];

/** Room for one record's fields: topic, partition, key, value, flags, opaque, end, and its headers. */
const FIXED_FIELDS = 7;

/** The bytes of a key or value. */
const byteLength = (data: string | Buffer | null | undefined) =>
  data == null ? 0 : typeof data === "string" ? Buffer.byteLength(data) : data.length;

/**
 * An idempotent producer (acks=all) on librdkafka. A record's key picks its partition with Kafka's murmur2 (as
 * the Java client and rpk do); `partition` overrides it; a keyless record goes to partition 0.
 *
 * @example
 * const producer = createRdProducer({ kafka, clientId: "ingest" });
 * const [delivery] = await producer.send([{ topic: "logins.raw", key: "user-1", value: "{}" }]);
 */
export function createRdProducer(options: ProducerOptions): KafkaProducer {
  const timeoutMs = options.timeoutMs ?? 5000;
  const lib = rdkafka();
  const { rk, queue } = openClient(
    "producer",
    {
      ...connectionSettings(options.kafka),
      "client.id": options.clientId,
      "enable.idempotence": "true",
      acks: "all",
      partitioner: "murmur2_random",
      // No wait for more records: while requests are in flight records gather anyway, so a loaded producer still
      // sends large batches and an idle one adds no latency (5 ms here cost two thirds of single-event ingest).
      "linger.ms": "0",
      // As the other client: a produce call may take timeoutMs and is retried twice.
      "message.timeout.ms": String(3 * timeoutMs),
      "socket.connection.setup.timeout.ms": String(Math.max(1000, timeoutMs)),
      "queue.buffering.max.messages": "500000",
      "compression.type": "none",
    },
    EVENT.DR,
  );
  const pending = new Map<number, Pending>();
  let sequence = 0;
  /** A refusal that retrying cannot fix (credentials, certificate): every later send fails with it at once. */
  let refused: KafkaAccessError | undefined;
  const topicNames = new Map<string, Buffer>();
  let fields = new Fields(FIXED_FIELDS + 8);
  let scratch = Buffer.alloc(64 * 1024);

  function fail(send: SendState, error: Error) {
    if (send.settled) return;
    send.settled = true;
    send.reject(error);
  }

  function delivered(event: Pointer) {
    for (;;) {
      const message = pointer(lib.rd_kafka_event_message_next(event));
      if (!message) return;
      const id = Number(read.ptr(message, MESSAGE.opaque));
      const entry = pending.get(id);
      if (!entry) continue;
      pending.delete(id);
      const { send } = entry;
      const err = read.i32(message, MESSAGE.err);
      if (err !== ERR.NO_ERROR) {
        fail(send, refused ?? new Error(`producing to ${entry.topic} failed: ${lib.rd_kafka_err2str(err)}`));
        continue;
      }
      send.deliveries[entry.index] = {
        topic: entry.topic,
        partition: read.i32(message, MESSAGE.partition),
        offset: read.i64(message, MESSAGE.offset),
      };
      if (--send.remaining === 0 && !send.settled) {
        send.settled = true;
        send.resolve(send.deliveries);
      }
    }
  }

  function errored(event: Pointer) {
    const code = lib.rd_kafka_event_error(event);
    const why = accessRefusal(code, String(lib.rd_kafka_event_error_string(event)), options.kafka);
    if (!why) return; // transient (a broker down): librdkafka reconnects, and records time out if it never comes
    refused = new KafkaAccessError(why);
    for (const { send } of pending.values()) fail(send, refused);
    pending.clear();
    lib.rd_kafka_purge(rk, PURGE_QUEUE_AND_INFLIGHT);
  }

  const loop = pollEvents(
    [queue],
    (event, type) => {
      if (type === EVENT.DR) delivered(event);
      else if (type === EVENT.ERROR) errored(event);
      else if (type === EVENT.LOG) serveLog(event, options.clientId);
    },
    {
      // Only a bug gets here (a delivery report that could not be read): fail the sends rather than leave them hanging.
      fail: (error) => {
        for (const { send } of pending.values()) fail(send, error instanceof Error ? error : new Error(String(error)));
        pending.clear();
      },
    },
  );
  loop.wake();

  const topicName = (topic: string) => {
    const known = topicNames.get(topic);
    if (known) return known;
    const name = cstr(onBroker(options.kafka, topic));
    topicNames.set(topic, name);
    return name;
  };

  /**
   * Hands one record to librdkafka; false when its queue is full. Its key, value and headers are written into
   * `scratch`, which librdkafka copies during the call: a buffer the producer holds, so nothing librdkafka reads
   * can be garbage by then (a buffer only a raw address refers to may be freed at any allocation).
   */
  function produce(record: OutRecord, id: number): boolean {
    const headers = record.headers ? Object.entries(record.headers) : NO_HEADERS;
    if (fields.count < FIXED_FIELDS + headers.length) fields = new Fields(FIXED_FIELDS + headers.length);
    let need = 1 + byteLength(record.key) + byteLength(record.value);
    for (const [name, text] of headers) need += Buffer.byteLength(name) + 1 + Buffer.byteLength(text);
    if (scratch.length < need) scratch = Buffer.alloc(2 * need);
    const base = ptr(scratch);
    // Byte 0 is what an empty key or value points at: a NULL pointer would be no value at all (a tombstone).
    let used = 1;
    /** Copies `data` into scratch; its address there. */
    const place = (data: string | Buffer) => {
      const start = used;
      used += typeof data === "string" ? scratch.write(data, used) : data.copy(scratch, used);
      return base + start;
    };
    /** Field `i` of `type` as bytes: their address and length, or NULL for null. */
    const bytes = (i: number, type: number, data: string | Buffer | null) => {
      const start = used;
      fields.set(i, type, 0, data === null ? 0 : place(data));
      fields.setWord(i, 1, used - start);
    };
    let n = 0;
    fields.set(n++, VTYPE.TOPIC, 0, ptr(topicName(record.topic)));
    fields.set(n++, VTYPE.PARTITION, 0, 0);
    fields.setInt(n - 1, record.partition ?? (record.key === undefined ? 0 : PARTITION_UA));
    bytes(n++, VTYPE.VALUE, record.value);
    if (record.key !== undefined) bytes(n++, VTYPE.KEY, record.key);
    fields.set(n++, VTYPE.MSGFLAGS, 0, 0);
    fields.setInt(n - 1, MSG_F_COPY);
    fields.set(n++, VTYPE.OPAQUE, 0, id);
    for (const [name, text] of headers) {
      const address = place(name);
      scratch[used++] = 0; // a header's name is NUL-terminated
      fields.set(n, VTYPE.HEADER, 0, address);
      const start = used;
      fields.setWord(n, 1, place(text));
      fields.setWord(n++, 2, used - start);
    }
    const error = takeError(lib.rd_kafka_produceva(rk, fields.buffer, n));
    if (!error) return true;
    if (error.code === ERR.QUEUE_FULL) return false;
    throw new Error(`producing to ${record.topic} failed: ${error.message}`);
  }

  async function send(records: OutRecord[]): Promise<Delivery[]> {
    if (refused) throw refused;
    if (records.length === 0) return [];
    const { promise, resolve, reject } = Promise.withResolvers<Delivery[]>();
    const state: SendState = { deliveries: [], remaining: records.length, settled: false, resolve, reject };
    for (const [index, record] of records.entries()) {
      const id = ++sequence;
      pending.set(id, { topic: record.topic, send: state, index });
      try {
        // A full queue drains as deliveries come back: wait for them rather than fail.
        while (!produce(record, id)) {
          loop.wake();
          await Bun.sleep(1);
          if (state.settled) break;
        }
      } catch (error) {
        pending.delete(id);
        fail(state, error as Error);
      }
      if (state.settled) break;
    }
    loop.wake();
    return promise;
  }

  let closing: Promise<void> | undefined;
  return {
    send,
    ping: (ms = 1000) => brokerAnswers(options.kafka, ms),
    close() {
      closing ??= (async () => {
        // Waits for every record handed over to be delivered or to time out (message.timeout.ms), then stops.
        while (pending.size > 0 || lib.rd_kafka_outq_len(rk) > 0) await Bun.sleep(5);
        loop.stop();
        lib.rd_kafka_queue_destroy(queue);
        lib.rd_kafka_destroy_flags(rk, DESTROY_F_NO_CONSUMER_CLOSE);
      })();
      return closing;
    },
  };
}
