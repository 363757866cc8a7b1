/**
 * The object storage sink, an idempotent store: each partition of a stored topic becomes newline-delimited JSON
 * objects `<topic>/partition=<n>/<first offset>-<last offset>.ndjson` (offsets zero-padded to 20 digits, so
 * names sort by offset; the topic as the broker names it, so a run in a KAFKA_NAMESPACE has objects of its own),
 * one line per record: `{"topic","partition","offset","key","position","value"}`, the value being the decoded
 * change event and the position its `cdc.position` header (absent when the record has none). Tombstones and dead
 * letters take an offset but no line.
 *
 * Object boundaries are offsets, never wall-clock moments, so a replay rebuilds the same objects:
 * - an object ends after S3_ROTATE_RECORDS offsets (at its first offset + S3_ROTATE_RECORDS - 1), or, if it is
 *   still open S3_ROTATE_SECONDS after its first record came, at the last offset consumed by then;
 * - the bucket itself records which boundaries were chosen: the names of the uploaded objects. A partition's
 *   objects are listed when it is first written in a process (and after a rewind), and a record an existing
 *   object covers goes back into that object, so the replay uploads the same name with the same lines; an object
 *   whose beginning the replay did not see (it started inside it) is left as it is and its records skipped;
 * - each object is one PUT: it exists whole or not at all.
 * Kafka commits follow the uploads: a partition's position moves only to the first offset of its open object,
 * so records waiting in memory are read again after a crash. The secret key is only handed to the client.
 *
 * Capture publishes at least once: after a crash it publishes again what the broker had but its slot had not
 * confirmed, at new offsets. Such a record repeats a stored one: its source position is not after that of the
 * last line stored before it in its partition (capture publishes in source order and a key stays in its
 * partition, so one source's positions only grow there), and it takes an offset but no line (`repeats` in
 * shared/change.ts; a record without a position, or from another source, is always stored). The last stored
 * position is the last line's, so it is read back from the bucket wherever memory does not hold it (a new
 * process, a rewind, past an object the replay skipped): the last line of the nearest object before with any.
 * An object rebuilt by a replay therefore starts from the same position as when it was first written, and gets
 * the same lines.
 */
import { S3Client } from "bun";
import { POSITION_HEADER, repeats } from "../shared/change.ts";
import type { Config } from "../shared/config.ts";
import { within } from "../shared/deadline.ts";
import { kafkaConnection, onBroker, type Position } from "../shared/kafka.ts";
import { cdcTopicOf } from "../shared/topics.ts";
import type { SinkFactory, SinkRow } from "./sink.ts";

const OFFSET_DIGITS = 20;
const NAME = /\/(\d{20})-(\d{20})\.ndjson$/;

/** The object of `topic`'s partition holding offsets `first` to `last`. */
export const objectName = (topic: string, partition: number, first: bigint, last: bigint) =>
  `${topic}/partition=${partition}/${String(first).padStart(OFFSET_DIGITS, "0")}-${String(last).padStart(OFFSET_DIGITS, "0")}.ndjson`;

/**
 * A client of the bucket the S3_* settings name; the secret key goes only to the client.
 *
 * @example
 * const keys = (await bucketClient(config()).list({ prefix: "cdc.public.users/" })).contents?.map((o) => o.key);
 */
export const bucketClient = (env: Config) =>
  new S3Client({
    endpoint: env.S3_ENDPOINT,
    bucket: env.S3_BUCKET,
    accessKeyId: env.S3_ACCESS_KEY_ID,
    secretAccessKey: env.S3_SECRET_ACCESS_KEY,
    region: env.S3_REGION,
  });

/** An object's offset range, inclusive, and whether it holds no line. */
interface Range {
  first: bigint;
  last: bigint;
  empty: boolean;
}

/** The object being filled: its range (its end may still move down on a time rollover) and lines. */
interface Open extends Omit<Range, "empty"> {
  /** True when `last` comes from an uploaded object: it is rebuilt as it is, never cut short by time. */
  existing: boolean;
  /** False for an existing object the replay entered past its beginning: its records are skipped, not uploaded. */
  upload: boolean;
  lines: string[];
  openedAt: number;
}

/** One partition as the sink knows it. */
interface PartitionState {
  topic: string;
  partition: number;
  /** Uploaded objects, by first offset. */
  objects: Range[];
  open: Open | undefined;
  /** The highest offset taken in, and the next offset after the last batch. */
  lastAdded: bigint;
  consumed: bigint | undefined;
  /**
   * The `cdc.position` of the last line stored before the next record, null when that line has none (or there
   * is no line), undefined while unknown: then it is read from the bucket when the next object opens.
   */
  stored: string | null | undefined;
}

/**
 * The S3 sink at S3_ENDPOINT's bucket S3_BUCKET, for the topics of CAPTURE_TABLES.
 *
 * @example
 * const sink = s3Sink({ env, log, group: "persist-s3" });
 * const { positions } = await sink.write(rows, batchEnds); // commit only these: the rest waits in open objects
 */
export const s3Sink: SinkFactory = ({ env, log }) => {
  const client = bucketClient(env);
  const kafka = kafkaConnection(env);
  const rotateRecords = BigInt(env.S3_ROTATE_RECORDS);
  const rotateMs = env.S3_ROTATE_SECONDS * 1000;
  const states = new Map<string, PartitionState>();
  let written: Record<string, number> = {};
  let conflicts: Record<string, number> = {};
  let replayed = 0;

  async function listObjects(topic: string, partition: number): Promise<Range[]> {
    const prefix = `${onBroker(kafka, topic)}/partition=${partition}/`;
    const objects: Range[] = [];
    let continuationToken: string | undefined;
    do {
      const page = await client.list({ prefix, maxKeys: 1000, ...(continuationToken && { continuationToken }) });
      for (const { key, size } of page.contents ?? []) {
        const match = NAME.exec(key);
        if (match) objects.push({ first: BigInt(match[1] as string), last: BigInt(match[2] as string), empty: !size });
      }
      continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
    } while (continuationToken);
    return objects.sort((a, b) => (a.first < b.first ? -1 : 1));
  }

  async function load(topic: string, partition: number): Promise<PartitionState> {
    return {
      topic,
      partition,
      objects: await listObjects(topic, partition),
      open: undefined,
      lastAdded: -1n,
      consumed: undefined,
      stored: undefined,
    };
  }

  /** The position of the last line stored before `offset`: the last line of the nearest object before it with any. */
  async function storedBefore(state: PartitionState, offset: bigint): Promise<string | null> {
    const before = state.objects.filter((o) => o.last < offset && !o.empty);
    const object = before.at(-1);
    if (!object) return null;
    const name = objectName(onBroker(kafka, state.topic), state.partition, object.first, object.last);
    const text = await client.file(name).text();
    const line = text.trimEnd().split("\n").at(-1) as string;
    return (JSON.parse(line) as { position?: string }).position ?? null;
  }

  async function upload(state: PartitionState): Promise<void> {
    const open = state.open as Open;
    if (open.upload) {
      const name = objectName(onBroker(kafka, state.topic), state.partition, open.first, open.last);
      await client.write(name, open.lines.join(""), { type: "application/x-ndjson" });
      written[state.topic] = (written[state.topic] ?? 0) + open.lines.length;
      const range = { first: open.first, last: open.last, empty: open.lines.length === 0 };
      if (open.existing) state.objects = state.objects.map((o) => (o.first === open.first ? range : o));
      else state.objects.push(range);
    }
    state.open = undefined;
  }

  /** The object `offset` belongs in: an uploaded one that covers it, else a new one starting there. */
  function objectFor(state: PartitionState, offset: bigint, enteredAt: bigint): Open {
    const covering = state.objects.find((o) => o.first <= offset && offset <= o.last);
    const base = { lines: [], openedAt: Date.now() };
    if (covering)
      return {
        first: covering.first,
        last: covering.last,
        existing: true,
        upload: enteredAt <= covering.first,
        ...base,
      };
    const next = state.objects.find((o) => o.first > offset);
    const last = offset + rotateRecords - 1n;
    return {
      first: offset,
      last: next && next.first - 1n < last ? next.first - 1n : last,
      existing: false,
      upload: true,
      ...base,
    };
  }

  /** Takes `partitionRows` (one partition, in offset order) into objects, uploading each one that is full. */
  async function take(state: PartitionState, partitionRows: SinkRow[], next: bigint): Promise<PartitionState> {
    let current = state;
    for (const row of partitionRows) {
      const held = current.open && row.offset >= current.open.first && row.offset <= current.lastAdded;
      if (held) continue; // a retried batch: already in the open object
      if (row.offset <= current.lastAdded) {
        // A rewind before what is held (the partition came back after a rebalance, or the group was reset).
        current = await load(current.topic, current.partition);
        states.set(`${current.topic}\u0000${current.partition}`, current);
      }
      if (current.open && row.offset > current.open.last) await upload(current);
      if (!current.open) {
        const open = objectFor(current, row.offset, current.consumed ?? row.offset);
        // Past an object the replay skips, the position stored before the next one is the bucket's to tell.
        if (!open.upload) current.stored = undefined;
        else current.stored ??= await storedBefore(current, open.first);
        current.open = open;
      }
      const open = current.open;
      const position = row.headers?.[POSITION_HEADER];
      if (!open.upload) replayed++;
      else if (repeats(position, current.stored)) conflicts[current.topic] = (conflicts[current.topic] ?? 0) + 1;
      else {
        const { topic, partition, offset, key, value } = row;
        const line = { topic, partition, offset: Number(offset), key: key?.toString("utf8") ?? null, position, value };
        open.lines.push(`${JSON.stringify(line)}\n`);
        current.stored = position ?? null;
      }
      current.lastAdded = row.offset;
    }
    if (current.open && current.open.last < next) await upload(current);
    current.consumed = current.consumed === undefined || next > current.consumed ? next : current.consumed;
    return current;
  }

  /** Closes open objects past their time (new ones only: an existing one keeps its end). */
  async function rollOver(now: number): Promise<void> {
    for (const state of states.values()) {
      const open = state.open;
      if (!open || open.existing || now - open.openedAt < rotateMs || state.consumed === undefined) continue;
      open.last = state.consumed - 1n;
      await upload(state);
    }
  }

  /** What may be committed: up to the open object's first offset, or all that was consumed. */
  const committable = (state: PartitionState): Position => ({
    topic: state.topic,
    partition: state.partition,
    offset: state.open ? state.open.first : (state.consumed ?? 0n),
  });

  return {
    topics: env.CAPTURE_TABLES.map(cdcTopicOf),
    async open() {
      await client.list({ maxKeys: 1 }).catch((error: Error) => {
        throw new Error(`cannot list the bucket ${env.S3_BUCKET} at S3_ENDPOINT=${env.S3_ENDPOINT}: ${error.message}`);
      });
      log.info({ endpoint: env.S3_ENDPOINT, bucket: env.S3_BUCKET }, "bucket reachable");
    },
    async write(rows, positions) {
      written = {};
      conflicts = {};
      replayed = 0;
      const result: Position[] = [];
      for (const position of positions) {
        const id = `${position.topic}\u0000${position.partition}`;
        const state = states.get(id) ?? (await load(position.topic, position.partition));
        states.set(id, state);
        const partitionRows = rows.filter((r) => r.topic === position.topic && r.partition === position.partition);
        const taken = await take(state, partitionRows, position.offset);
        states.set(id, taken);
        result.push(committable(taken));
      }
      await rollOver(Date.now());
      return { written, conflicts, replayed, positions: result };
    },
    async flush() {
      written = {};
      const before = new Map([...states].map(([id, state]) => [id, committable(state).offset]));
      await rollOver(Date.now());
      // Only the partitions a rollover moved: a quiet partition is not committed every second.
      const positions = [...states]
        .filter(([id, state]) => state.consumed !== undefined && committable(state).offset !== before.get(id))
        .map(([, state]) => committable(state));
      return { written, conflicts: {}, replayed: 0, positions };
    },
    ready: () =>
      within(
        client.list({ maxKeys: 1 }).then(
          () => true,
          () => false,
        ),
        1_000,
        false,
      ),
    // Bun's client holds no pool to close; every upload has finished or failed by now.
    async close() {},
  };
};
