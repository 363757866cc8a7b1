/**
 * The port's {@link KafkaConsumer} on librdkafka: a group member with manual commits, cooperative-sticky
 * rebalancing, pause/resume and lag reports. Rebalances and commit results are events on the consumer's queues;
 * fetched records are routed to a queue of their own, read up to a thousand per call. Both are served by the
 * client's non-blocking loop. Records wait in a JavaScript queue of at most two batches; while it is full they
 * stay in librdkafka's queue, whose bound (`queued.max.messages.kbytes`) stops fetching. Pausing is for the stage
 * alone: librdkafka drops what it prefetched for a paused partition and fetches it again on resume.
 */
import { CString, type Pointer, ptr, read } from "bun:ffi";
import { committedOffsets, endOffsets } from "../admin.ts";
import { KafkaAccessError } from "../connection.ts";
import { fromBroker, onBroker } from "../namespace.ts";
import type { ConsumerOptions, InRecord, KafkaConnection, KafkaConsumer, Position } from "../types.ts";
import { openClient, pollEvents, serveLog, takeError } from "./client.ts";
import { accessRefusal, connectionSettings } from "./config.ts";
import { copyOut, cstr, DESTROY_F_NO_CONSUMER_CLOSE, ERR, EVENT, MESSAGE, pointer, rdkafka } from "./ffi.ts";
import { partitionsOf, type TopicPartition, withList } from "./partitions.ts";

const LAG_INTERVAL_MS = 5_000;
/** Fetched records taken from librdkafka per call. */
const FETCH_BATCH = 1_000;

const slot = ({ topic, partition }: TopicPartition) => `${topic}:${partition}`;

/**
 * Out-parameters: a headers handle, a header's name, value and size, a timestamp type. Its address is taken on
 * every use, never kept: an array only a saved address refers to is garbage to the collector, which frees its
 * memory for the next allocation of that size, and librdkafka would then write into whatever lives there.
 */
const slots = new BigUint64Array(4);
/** The out-array of rd_kafka_consume_batch_queue: message pointers (its address is taken on every use, too). */
const fetchedSlots = new BigUint64Array(FETCH_BATCH);

/**
 * Topic names by topic handle, for one client: its handles live as long as it does (not longer, so the cache
 * must not outlive it), and the lookup saves reading a string per record.
 */
function topicNames(kafka: KafkaConnection): (handle: Pointer) => string {
  const names = new Map<number, string>();
  return (handle) => {
    const known = names.get(handle);
    if (known !== undefined) return known;
    const name = fromBroker(kafka, String(rdkafka().rd_kafka_topic_name(handle)));
    names.set(handle, name);
    return name;
  };
}

function toRecord(message: Pointer, topicOf: (handle: Pointer) => string): InRecord {
  const lib = rdkafka();
  const slotsAt = ptr(slots);
  const slot8 = (slotsAt + 8) as Pointer;
  const slot16 = (slotsAt + 16) as Pointer;
  const slot24 = (slotsAt + 24) as Pointer;
  const length = Number(read.u64(message, MESSAGE.len));
  const payload = read.ptr(message, MESSAGE.payload) as Pointer;
  const keyLength = Number(read.u64(message, MESSAGE.keyLen));
  const key = read.ptr(message, MESSAGE.key) as Pointer;
  const headers: Record<string, string> = {};
  if (lib.rd_kafka_message_headers(message, slotsAt) === ERR.NO_ERROR) {
    const handle = read.ptr(slotsAt, 0) as Pointer;
    for (let i = 0; lib.rd_kafka_header_get_all(handle, i, slot8, slot16, slot24) === 0; i++) {
      const name = new CString(read.ptr(slotsAt, 8) as Pointer).toString();
      const size = Number(read.u64(slotsAt, 24));
      const value = read.ptr(slotsAt, 16) as Pointer;
      headers[name] = size > 0 && value ? copyOut(value, size).toString() : "";
    }
  }
  return {
    topic: topicOf(read.ptr(message, MESSAGE.topic) as Pointer),
    partition: read.i32(message, MESSAGE.partition),
    offset: read.i64(message, MESSAGE.offset),
    // Copies: the message's memory goes with its event.
    key: keyLength > 0 && key ? copyOut(key, keyLength) : undefined,
    value: length > 0 && payload ? copyOut(payload, length) : Buffer.alloc(0),
    headers,
    timestamp: lib.rd_kafka_message_timestamp(message, slot8),
  };
}

/**
 * Joins `groupId` and reads `topics` with manual commits, on librdkafka. Call `batches()` once to start reading.
 * With `exclusive`, the group uses the range assignor, which gives partition 0 of every topic to the member with
 * the lowest id: that member takes every partition of `topics`, and the others take none and stand by.
 *
 * @example
 * const consumer = createRdConsumer({ kafka, groupId: "enrich", clientId: "enrich-1", topics: ["locations.raw"] });
 * for await (const batch of consumer.batches()) await consumer.commit(nextPositions(batch));
 */
export function createRdConsumer(options: ConsumerOptions): KafkaConsumer {
  const lib = rdkafka();
  const exclusive = options.exclusive === true;
  const { rk, queue } = openClient(
    "consumer",
    {
      ...connectionSettings(options.kafka),
      "client.id": options.clientId,
      "group.id": onBroker(options.kafka, options.groupId),
      "enable.auto.commit": "false",
      "enable.auto.offset.store": "false",
      "auto.offset.reset": "earliest",
      "partition.assignment.strategy": exclusive ? "range" : "cooperative-sticky",
      "session.timeout.ms": "6000", // the broker's minimum: a killed member's partitions move on quickly
      "heartbeat.interval.ms": "1000",
      "fetch.wait.max.ms": "200",
      // Once its queue reaches the bound below, librdkafka waits this long before fetching again (1 s by default,
      // which held reading at a fifth of the rate).
      "fetch.queue.backoff.ms": "20",
      // librdkafka's defaults (64 MB of prefetched records, 50 MB fetches) cost hundreds of MB of RSS per stage.
      "queued.max.messages.kbytes": "16384",
      "fetch.max.bytes": String(4 * 1024 * 1024),
      "max.partition.fetch.bytes": String(1024 * 1024),
    },
    EVENT.FETCH | EVENT.REBALANCE | EVENT.OFFSET_COMMIT,
  );
  const commitQueue = pointer(lib.rd_kafka_queue_new(rk));
  const fetchQueue = pointer(lib.rd_kafka_queue_new(rk));
  if (!commitQueue || !fetchQueue) throw new Error("librdkafka gave no queue for commits and records");

  const topicOf = topicNames(options.kafka);
  const records: InRecord[] = [];
  let maxRecords = 5_000;
  let failure: Error | undefined;
  let finished = false;
  let wake: (() => void) | undefined;
  const notify = () => wake?.();
  const assigned = new Map<string, TopicPartition>();
  const startAt = new Map((options.startAt ?? []).map((position) => [slot(position), position.offset]));
  /**
   * Per topic and partition, where a rebalance sends reading back to: the offset this member last committed, or
   * before any commit the first record it read. With the cooperative assignor a partition the member keeps is not
   * assigned again, and librdkafka would read on from where it was; the port's contract (and the stages' state
   * rebuilt after every rebalance) wants it read again from the committed offset, as a new assignment is.
   */
  const rewindTo = new Map<string, Map<number, bigint>>();
  const rewindOf = (topic: string) => {
    const known = rewindTo.get(topic);
    if (known) return known;
    const partitions = new Map<number, bigint>();
    rewindTo.set(topic, partitions);
    return partitions;
  };
  /** Every partition of `topics`, for the exclusive member; looked up before joining. */
  let everyPartition: TopicPartition[] = [];
  const commits: { resolve: () => void; reject: (error: Error) => void }[] = [];
  // Paused by the stage (a failing batch).
  let paused = false;
  let closing: Promise<void> | undefined;

  /**
   * A partition starts at its `startAt` position, if it has one, on every assignment until this member commits
   * it: a rebalance before any commit (an exclusive group's, which revokes everything) must not send it back to
   * the group's committed offset or the topic's beginning.
   */
  const withStart = (partitions: TopicPartition[]) =>
    partitions.map((tp) => {
      const offset = startAt.get(slot(tp));
      return offset === undefined ? tp : { ...tp, offset };
    });

  /**
   * Routes the records of `partitions` to the fetch queue. It must happen before they are assigned: fetching then
   * starts with the route in place, so no record of theirs reaches the consumer's queue ahead of the others.
   */
  function routeFetches(partitions: TopicPartition[]) {
    for (const { topic, partition } of partitions) {
      const from = pointer(lib.rd_kafka_queue_get_partition(rk, cstr(onBroker(options.kafka, topic)), partition));
      if (!from) throw new Error(`librdkafka has no queue for ${topic}:${partition}`);
      lib.rd_kafka_queue_forward(from, fetchQueue);
      lib.rd_kafka_queue_destroy(from);
    }
  }

  /**
   * Partitions paused in librdkafka. A pause outlives the assignment: a partition revoked while paused and
   * assigned again later stays paused there until it is resumed by name, so an assignment resumes those.
   */
  const pausedThere = new Set<string>();

  function setPaused(partitions: TopicPartition[], pause: boolean) {
    if (partitions.length === 0) return;
    for (const tp of partitions) pause ? pausedThere.add(slot(tp)) : pausedThere.delete(slot(tp));
    withList(options.kafka, partitions, (list) =>
      pause ? lib.rd_kafka_pause_partitions(rk, list) : lib.rd_kafka_resume_partitions(rk, list),
    );
  }

  /** Reads the partitions a member kept through a rebalance again from their committed offsets. */
  function rewind(kept: TopicPartition[]) {
    const back = kept.flatMap((tp) => {
      const offset = rewindOf(tp.topic).get(tp.partition);
      return offset === undefined ? [] : [{ ...tp, offset }]; // nothing read yet: still where it started
    });
    if (back.length === 0) return;
    dropQueued(back);
    // Asynchronous: librdkafka drops what it fetched before the seek (its version barrier), and so does dropQueued.
    const error = withList(options.kafka, back, (list) => takeError(lib.rd_kafka_seek_partitions(rk, list, 0)));
    if (error) failure ??= new Error(`rewinding ${options.groupId} after a rebalance failed: ${error.message}`);
  }

  function setHeld(pause: boolean) {
    if (pause === paused) return;
    paused = pause;
    setPaused([...assigned.values()], pause);
  }

  function dropQueued(partitions: TopicPartition[]) {
    const gone = new Set(partitions.map(slot));
    const kept = records.filter((record) => !gone.has(slot(record)));
    if (kept.length === records.length) return;
    records.splice(0, records.length, ...kept);
    // Room again. A drain that stopped on a full queue left records in librdkafka, and its signal fires only for
    // a queue that was emptied: without a turn now they would wait for the idle poll.
    loop.wake();
  }

  function rebalanced(event: Pointer) {
    const code = lib.rd_kafka_event_error(event);
    const partitions = partitionsOf(options.kafka, pointer(lib.rd_kafka_event_topic_partition_list(event)));
    if (code === ERR.ASSIGN_PARTITIONS) {
      let taken = partitions;
      if (exclusive) {
        const lead = [...options.topics].sort()[0];
        taken = partitions.some((tp) => tp.topic === lead && tp.partition === 0) ? everyPartition : [];
        routeFetches(taken);
        withList(options.kafka, withStart(taken), (list) => lib.rd_kafka_assign(rk, list));
      } else {
        const kept = [...assigned.values()];
        for (const tp of taken) rewindOf(tp.topic).delete(tp.partition);
        routeFetches(taken);
        const error = withList(options.kafka, withStart(taken), (list) =>
          takeError(lib.rd_kafka_incremental_assign(rk, list)),
        );
        if (error) failure ??= new Error(`joining ${options.groupId} failed: ${error.message}`);
        rewind(kept);
      }
      for (const tp of taken) assigned.set(slot(tp), tp);
      if (paused) setPaused(taken, true);
      else
        setPaused(
          taken.filter((tp) => pausedThere.has(slot(tp))),
          false,
        );
      options.onAssign?.([...assigned.values()]);
    } else {
      const revoked = exclusive ? [...assigned.values()] : partitions;
      dropQueued(revoked);
      for (const tp of revoked) {
        assigned.delete(slot(tp));
        rewindOf(tp.topic).delete(tp.partition);
      }
      if (exclusive) lib.rd_kafka_assign(rk, null);
      else withList(options.kafka, partitions, (list) => takeError(lib.rd_kafka_incremental_unassign(rk, list)));
    }
    notify();
  }

  /** Queues a fetched message's record. Errors here are per partition (a topic not there yet): librdkafka retries. */
  function take(message: Pointer) {
    if (read.i32(message, MESSAGE.err) !== ERR.NO_ERROR) return;
    const record = toRecord(message, topicOf);
    const rewind = rewindOf(record.topic);
    if (!rewind.has(record.partition)) rewind.set(record.partition, record.offset);
    records.push(record);
  }

  /** Takes up to `most` fetched records off the fetch queue, as far as the JavaScript queue has room; how many. */
  function drainFetched(most: number): number {
    // After a failure (a record that could not be read among them) nothing more is taken: the consumer is done.
    if (failure) return 0;
    let taken = 0;
    for (;;) {
      const room = Math.min(most - taken, 2 * maxRecords - records.length, FETCH_BATCH);
      if (room <= 0) break;
      const count = Number(lib.rd_kafka_consume_batch_queue(fetchQueue, 0, ptr(fetchedSlots), room));
      try {
        for (let i = 0; i < count; i++) take(Number(fetchedSlots[i]) as Pointer);
      } finally {
        // Every message is destroyed, also those after one that failed (the failure stops the consumer).
        for (let j = 0; j < count; j++) lib.rd_kafka_message_destroy(Number(fetchedSlots[j]) as Pointer);
      }
      taken += Math.max(0, count);
      if (count < room) break;
    }
    if (taken > 0) notify();
    return taken;
  }

  /** A record on the consumer's own queue: none once routed, but one that came there is read, not dropped. */
  function fetched(event: Pointer) {
    const message = pointer(lib.rd_kafka_event_message_next(event));
    if (!message) return;
    take(message);
    notify();
  }

  function committed(event: Pointer) {
    const waiter = commits.shift();
    const code = lib.rd_kafka_event_error(event);
    if (code === ERR.NO_ERROR) waiter?.resolve();
    else waiter?.reject(new Error(`commit for ${options.groupId} failed: ${lib.rd_kafka_err2str(code)}`));
  }

  function errored(event: Pointer) {
    const code = lib.rd_kafka_event_error(event);
    const text = String(lib.rd_kafka_event_error_string(event));
    const why = accessRefusal(code, text, options.kafka);
    if (why) failure ??= new KafkaAccessError(why);
    else if (lib.rd_kafka_event_error_is_fatal(event)) failure ??= new Error(`librdkafka failed for good: ${text}`);
    else return; // transient (a broker down): librdkafka reconnects and the group carries on
    notify();
  }

  const loop = pollEvents(
    [queue, commitQueue],
    (event, type) => {
      if (type === EVENT.FETCH) fetched(event);
      else if (type === EVENT.REBALANCE) rebalanced(event);
      else if (type === EVENT.OFFSET_COMMIT) committed(event);
      else if (type === EVENT.ERROR) errored(event);
      else if (type === EVENT.LOG) serveLog(event, options.clientId);
    },
    {
      drain: { queue: fetchQueue, serve: drainFetched },
      fail: (error) => {
        failure ??= error instanceof Error ? error : new Error(String(error));
        notify();
      },
    },
  );

  let lagTimer: Timer | undefined;
  if (options.onLag) {
    const onLag = options.onLag;
    let measuring = false;
    lagTimer = setInterval(() => {
      if (measuring || assigned.size === 0) return;
      measuring = true;
      Promise.all([
        committedOffsets(options.kafka, options.groupId),
        ...options.topics.map((t) => endOffsets(options.kafka, t)),
      ])
        .then(([done, ...ends]) => {
          const at = new Map(done.map((position) => [slot(position), position.offset]));
          const lags = ends
            .flat()
            .filter((end) => assigned.has(slot(end)))
            .map((end) => {
              const offset = at.get(slot(end)) ?? -1n;
              return {
                topic: end.topic,
                partition: end.partition,
                lag: Number(end.offset - (offset < 0n ? 0n : offset)),
              };
            });
          onLag(lags);
        })
        .catch(() => {}) // a broker down: the next round reports
        .finally(() => {
          measuring = false;
        });
    }, LAG_INTERVAL_MS);
    lagTimer.unref();
  }

  return {
    async *batches(max = 5_000): AsyncGenerator<InRecord[]> {
      maxRecords = max;
      if (exclusive)
        everyPartition = (await Promise.all(options.topics.map((topic) => endOffsets(options.kafka, topic))))
          .flat()
          .map(({ topic, partition }) => ({ topic, partition }));
      const code = withList(
        options.kafka,
        options.topics.map((topic) => ({ topic, partition: -1 })),
        (list) => lib.rd_kafka_subscribe(rk, list),
      );
      if (code !== ERR.NO_ERROR)
        throw new Error(`subscribing to ${options.topics.join(", ")} failed: ${lib.rd_kafka_err2str(code)}`);
      loop.wake();
      for (;;) {
        // A failure ends the reading at once: records taken after it may have gaps.
        if (failure) throw failure;
        if (records.length > 0) {
          const batch = records.splice(0, maxRecords);
          loop.wake(); // room again: take what librdkafka holds
          yield batch;
          continue;
        }
        if (finished) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    },

    commit(positions: Position[]): Promise<void> {
      if (positions.length === 0) return Promise.resolve();
      const { promise, resolve, reject } = Promise.withResolvers<void>();
      const code = withList(options.kafka, positions, (list) =>
        lib.rd_kafka_commit_queue(rk, list, commitQueue, null, null),
      );
      if (code !== ERR.NO_ERROR)
        return Promise.reject(new Error(`commit for ${options.groupId} failed: ${lib.rd_kafka_err2str(code)}`));
      commits.push({ resolve, reject });
      loop.wake();
      return promise.then(() => {
        for (const position of positions) {
          startAt.delete(slot(position));
          if (assigned.has(slot(position))) rewindOf(position.topic).set(position.partition, position.offset);
        }
      });
    },

    pause() {
      setHeld(true);
    },
    resume() {
      setHeld(false);
    },

    close(): Promise<void> {
      closing ??= (async () => {
        clearInterval(lagTimer);
        // Leaves the group without blocking: the revocation and the leave are served by the loop until done.
        takeError(lib.rd_kafka_consumer_close_queue(rk, queue));
        loop.wake();
        const deadline = Date.now() + 10_000;
        // Each check serves a turn: the close's last steps leave no event behind to signal the loop with.
        while (!lib.rd_kafka_consumer_closed(rk) && Date.now() < deadline) {
          loop.wake();
          await Bun.sleep(2);
        }
        loop.stop();
        finished = true;
        for (const waiter of commits.splice(0)) waiter.reject(new Error(`the consumer of ${options.groupId} closed`));
        notify();
        lib.rd_kafka_queue_destroy(commitQueue);
        lib.rd_kafka_queue_destroy(fetchQueue);
        lib.rd_kafka_queue_destroy(queue);
        lib.rd_kafka_destroy_flags(rk, DESTROY_F_NO_CONSUMER_CLOSE);
      })();
      return closing;
    },
  };
}
