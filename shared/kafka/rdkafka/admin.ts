/**
 * The admin calls a running stage makes (the broker probe, creating its topics, end and committed offsets) on
 * librdkafka's asynchronous admin API, so that a process on librdkafka never loads @platformatic/kafka: that
 * library's modules cost a stage about 40 MB of resident memory. One handle per connection, opened on first use
 * and kept for the life of the process; each request names the handle's queue for its result and carries an id
 * there. The queue is served only while a request waits, so an idle handle never keeps a finished script alive.
 */
import { type Pointer, ptr, read } from "bun:ffi";
import type { TopicSpec } from "../../topics.ts";
import { connectionKey, KafkaAccessError } from "../connection.ts";
import { fromBroker, onBroker } from "../namespace.ts";
import type { KafkaConnection, Position } from "../types.ts";
import { type EventLoop, openClient, pollEvents, serveLog } from "./client.ts";
import { accessRefusal, connectionSettings, listenerRefusal } from "./config.ts";
import { cstr, DESTROY_F_NO_CONSUMER_CLOSE, ERR, EVENT, OFFSET_SPEC_LATEST, pointer, rdkafkaAdmin } from "./ffi.ts";
import { listedPartition, listedPartitions, withList } from "./partitions.ts";

/** The library with its admin API; the callers choose this module only when it has one. */
function api() {
  const lib = rdkafkaAdmin();
  if (!lib) throw new Error("this librdkafka has no admin API for topics and offsets (it needs 2.3 or later)");
  return lib;
}

/**
 * Per-partition errors of a partition without a settled leader for now: a new topic's, during a leader change,
 * or just after a broker restart (its metadata behind the partition's leader epoch).
 */
const LEADERLESS = new Set<number>([
  ERR.UNKNOWN_TOPIC_OR_PART,
  ERR.LEADER_NOT_AVAILABLE,
  ERR.NOT_LEADER_OR_FOLLOWER,
  ERR.UNKNOWN_LEADER_EPOCH,
  ERR.IN_PROGRESS,
  ERR.UNKNOWN_PARTITION,
  // The whole request, when no partition has a leader yet ("No leaders found").
  ERR.NOENT,
]);
const LEADER_RETRY_MS = 100;

/** How long topic creation and the offset look-ups wait for the broker before they fail. */
const REQUEST_TIMEOUT_MS = 10_000;

/**
 * A request librdkafka gave up waiting for. After a broker restart, librdkafka 2.16 can keep sending a group's
 * offset requests to a broker handle it retired (the coordinator it remembered), and every one times out; a new
 * handle asks the cluster afresh. So a timeout retires the handle, and the calls below try once more on a new one.
 */
class RequestTimeout extends Error {}

/** A request librdkafka failed as a whole, with its error code. */
class AdminError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}
const ANSWER_GRACE_MS = 2_000;
/** The admin handle's own consumer group, never joined (no subscription, no assignment, no commit). */
const ADMIN_GROUP = "pipeline-admin-lookups";

/** `call`, and once more (on a new handle) if it timed out. */
const retriedOnce = <T>(call: () => Promise<T>): Promise<T> =>
  call().catch((error: unknown) => (error instanceof RequestTimeout ? call() : Promise.reject(error)));

interface Waiting {
  /** Reads the result event (which is destroyed once this returns) and settles the caller. */
  settle(event: Pointer): void;
  reject(error: Error): void;
}

interface Handle {
  key: string;
  kafka: KafkaConnection;
  rk: Pointer;
  queue: Pointer;
  waiting: Map<number, Waiting>;
  loop?: EventLoop;
  /** Connections closed before their first answer since a request was last answered. */
  closedAtOnce: number;
  /** Retired: refused, timed out or failed; destroyed once, on the next turn of the event loop. */
  dropped: boolean;
}

const handles = new Map<string, Handle>();
let lastId = 0;

function handleFor(kafka: KafkaConnection): Handle {
  const key = connectionKey(kafka);
  const known = handles.get(key);
  if (known) return known;
  // A consumer with a group of its own that it never joins: librdkafka answers a "not coordinator" reply to a
  // group offsets request by poking the handle's consumer group, and a producer's has none (it crashes).
  const settings = { ...connectionSettings(kafka), "client.id": "admin", "group.id": ADMIN_GROUP };
  const { rk, queue } = openClient("consumer", settings, 0);
  const handle: Handle = { key, kafka, rk, queue, waiting: new Map(), closedAtOnce: 0, dropped: false };
  handles.set(key, handle);
  return handle;
}

function serve(handle: Handle, event: Pointer, type: number) {
  if (handle.dropped) return;
  const lib = api();
  if (type === EVENT.LOG) return closedAtOnce(handle, serveLog(event, "admin") ?? "");
  if (type === EVENT.ERROR) {
    const why = accessRefusal(
      lib.rd_kafka_event_error(event),
      String(lib.rd_kafka_event_error_string(event)),
      handle.kafka,
    );
    // Anything else is a broker not up yet or gone for a while: librdkafka reconnects, a request times out.
    if (why) drop(handle, new KafkaAccessError(why));
    return;
  }
  const id = Number(pointer(lib.rd_kafka_event_opaque(event)) ?? 0);
  const waiting = handle.waiting.get(id);
  if (!waiting) return;
  handle.waiting.delete(id);
  handle.closedAtOnce = 0;
  const code = lib.rd_kafka_event_error(event);
  const text = String(lib.rd_kafka_event_error_string(event));
  if (code === ERR.TIMED_OUT) {
    waiting.reject(new RequestTimeout(text));
    drop(handle, new RequestTimeout(`another request on this connection: ${text}`));
    return;
  }
  if (code !== ERR.NO_ERROR) waiting.reject(new AdminError(code, text));
  else waiting.settle(event);
  if (handle.waiting.size === 0) idle(handle);
}

/**
 * A plaintext client at a TLS port sees each connection closed before its first answer, reported in the log
 * alone. Several in a row, with no broker answering between them, are that and not a broker going away.
 */
const CLOSED_AT_ONCE_IN_A_ROW = 3;

function closedAtOnce(handle: Handle, line: string) {
  const why = listenerRefusal(line, handle.kafka);
  if (!why) return;
  handle.closedAtOnce++;
  if (handle.closedAtOnce >= CLOSED_AT_ONCE_IN_A_ROW) drop(handle, new KafkaAccessError(why));
}

/**
 * Takes what reached an idle handle's queue while nobody served it. Log lines and the answer to a request given
 * up on are old news, and would otherwise count against the next request (three old "closed at once" lines from
 * a broker restart would read as a TLS port); a refusal is not (librdkafka reports a repeated one only once), so
 * it retires the handle. True when it did.
 */
function discardBacklog(handle: Handle): boolean {
  const lib = api();
  for (;;) {
    const event = pointer(lib.rd_kafka_queue_poll(handle.queue, 0));
    if (!event) break;
    if (lib.rd_kafka_event_type(event) === EVENT.ERROR) serve(handle, event, EVENT.ERROR);
    lib.rd_kafka_event_destroy(event);
  }
  handle.closedAtOnce = 0;
  return handle.dropped;
}

function idle(handle: Handle) {
  handle.loop?.stop();
  handle.loop = undefined;
}

/**
 * Forgets a handle, once: its waiting calls fail with `error`, and the next call opens a new handle, which
 * connects afresh (librdkafka reports a repeated refusal of one handle only once). False if it was already.
 */
function retire(handle: Handle, error: Error): boolean {
  if (handle.dropped) return false;
  handle.dropped = true;
  if (handles.get(handle.key) === handle) handles.delete(handle.key);
  for (const waiting of handle.waiting.values()) waiting.reject(error);
  handle.waiting.clear();
  idle(handle);
  return true;
}

/** Retires a refused, timed out or failed handle, and destroys it on the next turn of the event loop. */
function drop(handle: Handle, error: Error) {
  // Not from inside the loop's turn, which still holds the event it is serving.
  if (retire(handle, error)) setImmediate(() => destroy(handle));
}

function destroy(handle: Handle) {
  const lib = api();
  lib.rd_kafka_queue_destroy(handle.queue);
  lib.rd_kafka_destroy_flags(handle.rk, DESTROY_F_NO_CONSUMER_CLOSE);
}

/**
 * Sends one admin request through `issue`, which gets the handle, the request's options and the queue for its
 * result; `settle` reads the result event into the promise's value. Fails after `timeoutMs` without an answer,
 * with librdkafka's words for a failed request, or with a {@link KafkaAccessError} when the broker refuses.
 */
function request<T>(
  kafka: KafkaConnection,
  timeoutMs: number,
  issue: (rk: Pointer, options: Pointer, queue: Pointer) => void,
  settle: (event: Pointer) => T,
): Promise<T> {
  const lib = api();
  let handle = handleFor(kafka);
  if (!handle.loop && discardBacklog(handle)) handle = handleFor(kafka);
  const id = ++lastId;
  const { promise, resolve, reject } = Promise.withResolvers<T>();
  // librdkafka answers every request within its timeout (twice it for a request to each partition's leader
  // after asking who leads), or should: one it never answers (seen after a broker restart) fails here instead,
  // and retires the handle as a timeout does.
  const answerWithinMs = 2 * timeoutMs + ANSWER_GRACE_MS;
  const stuck = setTimeout(() => {
    if (!handle.waiting.delete(id)) return;
    reject(new RequestTimeout(`no answer from librdkafka within ${answerWithinMs} ms`));
    drop(handle, new RequestTimeout("another request on this connection got no answer"));
  }, answerWithinMs);
  handle.waiting.set(id, {
    settle: (event) => {
      clearTimeout(stuck);
      try {
        resolve(settle(event));
      } catch (error) {
        reject(error);
      }
    },
    reject: (error) => {
      clearTimeout(stuck);
      reject(error);
    },
  });
  let options: Pointer | null = null;
  try {
    handle.loop ??= pollEvents([handle.queue], (event, type) => serve(handle, event, type), {
      fail: (error) => drop(handle, error instanceof Error ? error : new Error(String(error))),
    });
    options = pointer(lib.rd_kafka_AdminOptions_new(handle.rk, 0));
    if (!options) throw new Error("librdkafka gave no admin options");
    const text = Buffer.alloc(256);
    lib.rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, text, text.length);
    // How long the broker may take to create topics before it answers: within the request's own timeout, so a
    // slow creation is an answer (and not a timeout whose retry would find the topics made by someone else).
    lib.rd_kafka_AdminOptions_set_operation_timeout(options, Math.floor(timeoutMs / 2), text, text.length);
    lib.rd_kafka_AdminOptions_set_opaque(options, id as Pointer);
    // The request copies its arguments and its options: they are freed by the callers and here once it is sent.
    issue(handle.rk, options, handle.queue);
  } catch (error) {
    clearTimeout(stuck);
    handle.waiting.delete(id);
    if (handle.waiting.size === 0) idle(handle);
    throw error;
  } finally {
    if (options) lib.rd_kafka_AdminOptions_destroy(options);
  }
  return promise;
}

/** An array of `count` pointers that librdkafka returned with the count written into `slot`. */
function pointers(array: Pointer | bigint | null, slot: BigUint64Array): Pointer[] {
  const base = pointer(array);
  if (!base) return [];
  return Array.from({ length: Number(slot[0]) }, (_, i) => read.ptr(base, i * 8) as Pointer);
}

/** The code of a `const rd_kafka_error_t *` that is not ours to destroy; 0 for NULL. */
const codeOf = (error: Pointer | bigint | null) => {
  const at = pointer(error);
  return at ? api().rd_kafka_error_code(at) : ERR.NO_ERROR;
};

/**
 * True when a broker of `kafka` describes the cluster within `timeoutMs`, false when none does. Throws a
 * {@link KafkaAccessError} when a broker refuses the connection for good.
 *
 * @example
 * if (!(await probeBroker(kafka, 3_000))) log.warn("no broker yet");
 */
export async function probeBroker(kafka: KafkaConnection, timeoutMs: number): Promise<boolean> {
  const lib = api();
  try {
    return await request(
      kafka,
      timeoutMs,
      (rk, options, queue) => lib.rd_kafka_DescribeCluster(rk, options, queue),
      () => true,
    );
  } catch (error) {
    if (error instanceof KafkaAccessError) throw error;
    return false;
  }
}

/**
 * Creates the topics of `specs` that do not exist yet; the names of those it created, in the order of `specs`.
 *
 * @example
 * const created = await createTopics(kafka, topicSpecs(6));
 */
export const createTopics = (kafka: KafkaConnection, wanted: TopicSpec[]): Promise<string[]> =>
  retriedOnce(() => createTopicsOnce(kafka, wanted));

async function createTopicsOnce(kafka: KafkaConnection, wanted: TopicSpec[]): Promise<string[]> {
  if (wanted.length === 0) return [];
  // Only the missing ones are asked for: a client allowed to use the topics but not to create any is refused a
  // creation even of a topic that exists.
  const names = [...new Set(wanted.map((spec) => spec.name))];
  const existing = await describeTopics(kafka, names);
  // The first spec of a name counts, as the broker would take the first of two creations.
  const specs = names
    .filter((name) => !existing.has(name))
    .map((name) => wanted.find((spec) => spec.name === name) as TopicSpec);
  if (specs.length === 0) return [];
  const lib = api();
  const text = Buffer.alloc(512);
  const topics: Pointer[] = [];
  try {
    for (const spec of specs) {
      // -1 replicas takes the broker's default.replication.factor: 1 locally, 3 on a real cluster.
      const topic = pointer(
        lib.rd_kafka_NewTopic_new(cstr(onBroker(kafka, spec.name)), spec.partitions, -1, text, text.length),
      );
      if (!topic) throw new Error(`topic ${spec.name} cannot be created: ${text.toString("utf8", 0, text.indexOf(0))}`);
      topics.push(topic);
      for (const [name, value] of Object.entries(spec.configs ?? {}))
        if (lib.rd_kafka_NewTopic_set_config(topic, cstr(name), cstr(value)) !== ERR.NO_ERROR)
          throw new Error(`topic ${spec.name}: librdkafka refused the setting ${name}`);
    }
    const array = new BigUint64Array(topics.map(BigInt));
    const created = await request(
      kafka,
      REQUEST_TIMEOUT_MS,
      (rk, options, queue) => lib.rd_kafka_CreateTopics(rk, ptr(array), topics.length, options, queue),
      (event) => {
        const count = new BigUint64Array(1);
        const results = lib.rd_kafka_CreateTopics_result_topics(
          lib.rd_kafka_event_CreateTopics_result(event),
          ptr(count),
        );
        const made = new Set<string>();
        for (const result of pointers(results, count)) {
          const name = String(lib.rd_kafka_topic_result_name(result));
          const code = lib.rd_kafka_topic_result_error(result);
          if (code === ERR.NO_ERROR) made.add(name);
          else if (code !== ERR.TOPIC_ALREADY_EXISTS)
            throw new Error(`creating topic ${name} failed: ${lib.rd_kafka_topic_result_error_string(result)}`);
        }
        return made;
      },
    );
    return specs.filter((spec) => created.has(onBroker(kafka, spec.name))).map((spec) => spec.name);
  } finally {
    for (const topic of topics) lib.rd_kafka_NewTopic_destroy(topic);
  }
}

/** The partition numbers of each of `topics` that exists, by the stage's name of the topic. */
async function describeTopics(kafka: KafkaConnection, topics: string[]): Promise<Map<string, number[]>> {
  const lib = api();
  const names = topics.map((topic) => cstr(onBroker(kafka, topic)));
  const array = new BigUint64Array(names.map((name) => BigInt(ptr(name))));
  const collection = pointer(lib.rd_kafka_TopicCollection_of_topic_names(ptr(array), names.length));
  if (!collection) throw new Error("librdkafka gave no topic collection");
  try {
    return await request(
      kafka,
      REQUEST_TIMEOUT_MS,
      (rk, options, queue) => lib.rd_kafka_DescribeTopics(rk, collection, options, queue),
      (event) => {
        const count = new BigUint64Array(1);
        const result = lib.rd_kafka_event_DescribeTopics_result(event);
        const found = new Map<string, number[]>();
        for (const description of pointers(lib.rd_kafka_DescribeTopics_result_topics(result, ptr(count)), count)) {
          const name = fromBroker(kafka, String(lib.rd_kafka_TopicDescription_name(description)));
          const code = codeOf(lib.rd_kafka_TopicDescription_error(description));
          if (code === ERR.UNKNOWN_TOPIC_OR_PART) continue;
          if (code !== ERR.NO_ERROR) throw new Error(`describing ${name} failed: ${lib.rd_kafka_err2str(code)}`);
          const infos = pointers(lib.rd_kafka_TopicDescription_partitions(description, ptr(count)), count);
          found.set(
            name,
            infos.map((info) => lib.rd_kafka_TopicPartitionInfo_partition(info)).sort((a, b) => a - b),
          );
        }
        return found;
      },
    );
  } finally {
    lib.rd_kafka_TopicCollection_destroy(collection);
  }
}

/**
 * The offset after the last record of each partition of `topic`; none for a topic that does not exist.
 *
 * @example
 * const ends = await listEndOffsets(kafka, "locations.raw"); // [{ topic, partition: 0, offset: 1234n }, ...]
 */
export const listEndOffsets = (kafka: KafkaConnection, topic: string): Promise<Position[]> =>
  retriedOnce(() => listEndOffsetsOnce(kafka, topic));

async function listEndOffsetsOnce(kafka: KafkaConnection, topic: string): Promise<Position[]> {
  const partitions = (await describeTopics(kafka, [topic])).get(topic) ?? [];
  if (partitions.length === 0) return [];
  const lib = api();
  const latest = partitions.map((partition) => ({ topic, partition, offset: OFFSET_SPEC_LATEST }));
  const deadline = Date.now() + REQUEST_TIMEOUT_MS;
  // A topic just created has partitions whose leader is not elected yet: asked again shortly, they answer.
  const leaderless = (code: number) => LEADERLESS.has(code) && Date.now() < deadline;
  for (;;) {
    const ends = await withList(kafka, latest, (list) =>
      request(
        kafka,
        REQUEST_TIMEOUT_MS,
        (rk, options, queue) => lib.rd_kafka_ListOffsets(rk, list, options, queue),
        (event) => {
          const count = new BigUint64Array(1);
          const result = lib.rd_kafka_event_ListOffsets_result(event);
          return pointers(lib.rd_kafka_ListOffsets_result_infos(result, ptr(count)), count).map((info) =>
            listedPartition(kafka, pointer(lib.rd_kafka_ListOffsetsResultInfo_topic_partition(info)) as Pointer),
          );
        },
      ),
    ).catch((error: unknown) => {
      if (error instanceof AdminError && leaderless(error.code)) return undefined;
      throw error;
    });
    const failed = ends?.find((end) => end.err !== ERR.NO_ERROR);
    if (ends && !failed)
      return ends
        .map(({ partition, offset }) => ({ topic, partition, offset }))
        .sort((a, b) => a.partition - b.partition);
    if (failed && !leaderless(failed.err))
      throw new Error(`the end of ${topic}:${failed.partition} is unknown: ${lib.rd_kafka_err2str(failed.err)}`);
    await Bun.sleep(LEADER_RETRY_MS);
  }
}

/**
 * The offsets `groupId` has committed, per topic-partition; -1 for a partition it never committed, none for a
 * group that never committed.
 *
 * @example
 * const committed = await listCommittedOffsets(kafka, "persist");
 */
export const listCommittedOffsets = (kafka: KafkaConnection, groupId: string): Promise<Position[]> =>
  retriedOnce(() => listCommittedOffsetsOnce(kafka, groupId));

async function listCommittedOffsetsOnce(kafka: KafkaConnection, groupId: string): Promise<Position[]> {
  const lib = api();
  const group = pointer(lib.rd_kafka_ListConsumerGroupOffsets_new(cstr(onBroker(kafka, groupId)), null));
  if (!group) throw new Error("librdkafka gave no group offsets request");
  const groups = new BigUint64Array([BigInt(group)]);
  try {
    return await request(
      kafka,
      REQUEST_TIMEOUT_MS,
      (rk, options, queue) => lib.rd_kafka_ListConsumerGroupOffsets(rk, ptr(groups), 1, options, queue),
      (event) => {
        const count = new BigUint64Array(1);
        const result = lib.rd_kafka_event_ListConsumerGroupOffsets_result(event);
        const [listed] = pointers(lib.rd_kafka_ListConsumerGroupOffsets_result_groups(result, ptr(count)), count);
        if (!listed) return [];
        const code = codeOf(lib.rd_kafka_group_result_error(listed));
        if (code === ERR.GROUP_ID_NOT_FOUND) return [];
        if (code !== ERR.NO_ERROR)
          throw new Error(`the offsets of ${groupId} are unknown: ${lib.rd_kafka_err2str(code)}`);
        const partitions = listedPartitions(kafka, pointer(lib.rd_kafka_group_result_partitions(listed)));
        const failed = partitions.find((p) => p.err !== ERR.NO_ERROR);
        if (failed)
          throw new Error(
            `the offset of ${groupId} on ${failed.topic}:${failed.partition} is unknown: ${lib.rd_kafka_err2str(failed.err)}`,
          );
        return partitions.map((p) => ({
          topic: p.topic,
          partition: p.partition,
          // librdkafka's "no offset" (-1001) is the broker's -1, as the other client reports it.
          offset: p.offset < 0n ? -1n : p.offset,
        }));
      },
    );
  } finally {
    lib.rd_kafka_ListConsumerGroupOffsets_destroy(group);
  }
}

/**
 * Closes every admin handle at once: waiting calls fail, and a later call opens a new handle.
 *
 * @example
 * closeAdminHandles(); // at shutdown, once nothing calls the admin helpers any more
 */
export function closeAdminHandles(): void {
  for (const handle of [...handles.values()])
    if (retire(handle, new Error("the admin connection closed"))) destroy(handle);
}
