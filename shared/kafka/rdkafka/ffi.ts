/**
 * librdkafka's C API through bun:ffi: the symbols the client uses, the struct layouts it reads, and the constants
 * of rdkafka.h (the same from 2.0 to 2.16). The library is opened on first use, so a process that never selects
 * this client never needs it, and a missing library is one clear error saying how to install it.
 */

import { dlopen, type Pointer, ptr, FFIType as T } from "bun:ffi";
import { homedir } from "node:os";
import { join } from "node:path";

const SYMBOLS = {
  rd_kafka_version_str: { args: [], returns: T.cstring },
  rd_kafka_version: { args: [], returns: T.i32 },
  rd_kafka_err2str: { args: [T.i32], returns: T.cstring },
  rd_kafka_conf_new: { args: [], returns: T.ptr },
  rd_kafka_conf_set: { args: [T.ptr, T.ptr, T.ptr, T.ptr, T.u64], returns: T.i32 },
  rd_kafka_conf_set_events: { args: [T.ptr, T.i32], returns: T.void },
  rd_kafka_conf_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_new: { args: [T.i32, T.ptr, T.ptr, T.u64], returns: T.ptr },
  rd_kafka_destroy_flags: { args: [T.ptr, T.i32], returns: T.void },
  rd_kafka_set_log_queue: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_queue_get_main: { args: [T.ptr], returns: T.ptr },
  rd_kafka_queue_get_consumer: { args: [T.ptr], returns: T.ptr },
  rd_kafka_queue_new: { args: [T.ptr], returns: T.ptr },
  rd_kafka_queue_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_queue_poll: { args: [T.ptr, T.i32], returns: T.ptr },
  rd_kafka_queue_get_partition: { args: [T.ptr, T.ptr, T.i32], returns: T.ptr },
  rd_kafka_queue_forward: { args: [T.ptr, T.ptr], returns: T.void },
  rd_kafka_queue_io_event_enable: { args: [T.ptr, T.i32, T.ptr, T.u64], returns: T.void },
  rd_kafka_consume_batch_queue: { args: [T.ptr, T.i32, T.ptr, T.u64], returns: T.i64 },
  rd_kafka_message_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_event_type: { args: [T.ptr], returns: T.i32 },
  rd_kafka_event_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_event_message_next: { args: [T.ptr], returns: T.ptr },
  rd_kafka_event_error: { args: [T.ptr], returns: T.i32 },
  rd_kafka_event_error_string: { args: [T.ptr], returns: T.cstring },
  rd_kafka_event_error_is_fatal: { args: [T.ptr], returns: T.i32 },
  rd_kafka_event_log: { args: [T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_event_topic_partition_list: { args: [T.ptr], returns: T.ptr },
  rd_kafka_produceva: { args: [T.ptr, T.ptr, T.u64], returns: T.ptr },
  rd_kafka_outq_len: { args: [T.ptr], returns: T.i32 },
  rd_kafka_purge: { args: [T.ptr, T.i32], returns: T.i32 },
  rd_kafka_error_code: { args: [T.ptr], returns: T.i32 },
  rd_kafka_error_string: { args: [T.ptr], returns: T.cstring },
  rd_kafka_error_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_message_headers: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_header_get_all: { args: [T.ptr, T.u64, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_topic_name: { args: [T.ptr], returns: T.cstring },
  rd_kafka_message_timestamp: { args: [T.ptr, T.ptr], returns: T.i64 },
  rd_kafka_poll_set_consumer: { args: [T.ptr], returns: T.i32 },
  rd_kafka_subscribe: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_assign: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_incremental_assign: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_incremental_unassign: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_assignment: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_pause_partitions: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_seek_partitions: { args: [T.ptr, T.ptr, T.i32], returns: T.ptr },
  rd_kafka_resume_partitions: { args: [T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_commit_queue: { args: [T.ptr, T.ptr, T.ptr, T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_consumer_close_queue: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_consumer_closed: { args: [T.ptr], returns: T.i32 },
  rd_kafka_topic_partition_list_new: { args: [T.i32], returns: T.ptr },
  rd_kafka_topic_partition_list_add: { args: [T.ptr, T.ptr, T.i32], returns: T.ptr },
  rd_kafka_topic_partition_list_destroy: { args: [T.ptr], returns: T.void },
} as const;

/** The admin API (2.3 and later): requests answered by a result event on the queue they name. */
const ADMIN_SYMBOLS = {
  rd_kafka_event_opaque: { args: [T.ptr], returns: T.ptr },
  rd_kafka_AdminOptions_new: { args: [T.ptr, T.i32], returns: T.ptr },
  rd_kafka_AdminOptions_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_AdminOptions_set_request_timeout: { args: [T.ptr, T.i32, T.ptr, T.u64], returns: T.i32 },
  rd_kafka_AdminOptions_set_operation_timeout: { args: [T.ptr, T.i32, T.ptr, T.u64], returns: T.i32 },
  rd_kafka_AdminOptions_set_opaque: { args: [T.ptr, T.ptr], returns: T.void },
  rd_kafka_DescribeCluster: { args: [T.ptr, T.ptr, T.ptr], returns: T.void },
  rd_kafka_NewTopic_new: { args: [T.ptr, T.i32, T.i32, T.ptr, T.u64], returns: T.ptr },
  rd_kafka_NewTopic_set_config: { args: [T.ptr, T.ptr, T.ptr], returns: T.i32 },
  rd_kafka_NewTopic_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_CreateTopics: { args: [T.ptr, T.ptr, T.u64, T.ptr, T.ptr], returns: T.void },
  rd_kafka_event_CreateTopics_result: { args: [T.ptr], returns: T.ptr },
  rd_kafka_CreateTopics_result_topics: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_topic_result_error: { args: [T.ptr], returns: T.i32 },
  rd_kafka_topic_result_error_string: { args: [T.ptr], returns: T.cstring },
  rd_kafka_topic_result_name: { args: [T.ptr], returns: T.cstring },
  rd_kafka_TopicCollection_of_topic_names: { args: [T.ptr, T.u64], returns: T.ptr },
  rd_kafka_TopicCollection_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_DescribeTopics: { args: [T.ptr, T.ptr, T.ptr, T.ptr], returns: T.void },
  rd_kafka_event_DescribeTopics_result: { args: [T.ptr], returns: T.ptr },
  rd_kafka_DescribeTopics_result_topics: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_TopicDescription_error: { args: [T.ptr], returns: T.ptr },
  rd_kafka_TopicDescription_name: { args: [T.ptr], returns: T.cstring },
  rd_kafka_TopicDescription_partitions: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_TopicPartitionInfo_partition: { args: [T.ptr], returns: T.i32 },
  rd_kafka_ListOffsets: { args: [T.ptr, T.ptr, T.ptr, T.ptr], returns: T.void },
  rd_kafka_event_ListOffsets_result: { args: [T.ptr], returns: T.ptr },
  rd_kafka_ListOffsets_result_infos: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_ListOffsetsResultInfo_topic_partition: { args: [T.ptr], returns: T.ptr },
  rd_kafka_ListConsumerGroupOffsets_new: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_ListConsumerGroupOffsets_destroy: { args: [T.ptr], returns: T.void },
  rd_kafka_ListConsumerGroupOffsets: { args: [T.ptr, T.ptr, T.u64, T.ptr, T.ptr], returns: T.void },
  rd_kafka_event_ListConsumerGroupOffsets_result: { args: [T.ptr], returns: T.ptr },
  rd_kafka_ListConsumerGroupOffsets_result_groups: { args: [T.ptr, T.ptr], returns: T.ptr },
  rd_kafka_group_result_error: { args: [T.ptr], returns: T.ptr },
  rd_kafka_group_result_partitions: { args: [T.ptr], returns: T.ptr },
} as const;

type Library = ReturnType<typeof dlopen<typeof SYMBOLS>>["symbols"];
type AdminLibrary = Library & ReturnType<typeof dlopen<typeof ADMIN_SYMBOLS>>["symbols"];

/**
 * Where scripts/librdkafka.sh puts the library for `./pipeline setup` and for the image, then a system library
 * (Debian's librdkafka1, or the loader's search path).
 */
const CANDIDATES = [
  join(homedir(), ".cache", "event-pipeline", "librdkafka", "librdkafka.so.1"),
  "/opt/librdkafka/librdkafka.so.1",
  "/usr/lib/x86_64-linux-gnu/librdkafka.so.1",
  "/usr/lib/aarch64-linux-gnu/librdkafka.so.1",
  "librdkafka.so.1",
];

let library: Library | undefined;
let libraryPath = "";
let adminLibrary: AdminLibrary | null | undefined;

/**
 * The library's functions, opened on first call. Throws, naming the package, when no librdkafka.so.1 loads.
 *
 * @example
 * const version = rdkafka().rd_kafka_version_str(); // "2.16.0"
 */
export function rdkafka(): Library {
  if (library) return library;
  const failures: string[] = [];
  for (const path of CANDIDATES) {
    try {
      library = dlopen(path, SYMBOLS).symbols;
      libraryPath = path;
      return library;
    } catch (error) {
      failures.push(`${path}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  throw new Error(
    `KAFKA_CLIENT=librdkafka needs librdkafka.so.1, which did not load; run ./pipeline setup (it fetches ` +
      `the library of PyPI's confluent-kafka wheel), install Debian's librdkafka1 (no SCRAM with Kafka 4) ` +
      `or set KAFKA_CLIENT=platformatic (tried ${failures.join("; ")})`,
  );
}

/**
 * The library's functions with its admin API, or null when no librdkafka loads or it is older than 2.3 (Debian
 * bookworm's 2.0.2 has no DescribeTopics, DescribeCluster or ListOffsets): the admin calls then go elsewhere.
 *
 * @example
 * const lib = rdkafkaAdmin(); // null: use the other admin client
 */
export function rdkafkaAdmin(): AdminLibrary | null {
  if (adminLibrary !== undefined) return adminLibrary;
  try {
    const core = rdkafka();
    adminLibrary =
      core.rd_kafka_version() >= 0x020300ff ? { ...core, ...dlopen(libraryPath, ADMIN_SYMBOLS).symbols } : null;
  } catch {
    adminLibrary = null;
  }
  return adminLibrary;
}

const LIBC = {
  pipe2: { args: [T.ptr, T.i32], returns: T.i32 },
  memcpy: { args: [T.ptr, T.ptr, T.u64], returns: T.ptr },
} as const;
let libcSymbols: ReturnType<typeof dlopen<typeof LIBC>>["symbols"] | undefined;

/**
 * The C library's pipe2, for the pipe librdkafka signals its queues through (Node has no call that makes one),
 * and memcpy, which copies a record's bytes out of librdkafka's memory.
 */
export function libc() {
  libcSymbols ??= dlopen("libc.so.6", LIBC).symbols;
  return libcSymbols;
}

/**
 * A copy, in a Buffer of its own, of the `length` bytes at `address`. It costs one call: bun:ffi's `toBuffer`
 * would first wrap the memory in an ArrayBuffer with a finalizer, which took a tenth of a consumer's time.
 */
export function copyOut(address: Pointer, length: number): Buffer {
  if (length <= 0) return Buffer.alloc(0); // ptr() refuses an empty buffer
  const out = Buffer.allocUnsafe(length);
  libc().memcpy(ptr(out), address, length);
  return out;
}
/** pipe2 flags (Linux, x86-64 and arm64 alike). */
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** A NUL-terminated copy of `text`, for the `const char *` parameters. */
export const cstr = (text: string): Buffer => Buffer.from(`${text}\0`);

export const CLIENT_TYPE = { producer: 0, consumer: 1 } as const;

/** rd_kafka_event_type values (RD_KAFKA_EVENT_*). */
export const EVENT = {
  DR: 0x1,
  FETCH: 0x2,
  LOG: 0x4,
  ERROR: 0x8,
  REBALANCE: 0x10,
  OFFSET_COMMIT: 0x20,
  CREATETOPICS_RESULT: 100,
  LISTCONSUMERGROUPOFFSETS_RESULT: 0x8000,
  DESCRIBETOPICS_RESULT: 0x100000,
  DESCRIBECLUSTER_RESULT: 0x200000,
  LISTOFFSETS_RESULT: 0x400000,
} as const;

/** rd_kafka_OffsetSpec_t: the end of a partition, for rd_kafka_ListOffsets. */
export const OFFSET_SPEC_LATEST = -1n;

/** rd_kafka_resp_err_t values the client acts on. */
export const ERR = {
  NO_ERROR: 0,
  TRANSPORT: -195,
  PARTITION_EOF: -191,
  ALL_BROKERS_DOWN: -187,
  QUEUE_FULL: -184,
  TIMED_OUT: -185,
  SSL: -181,
  ASSIGN_PARTITIONS: -175,
  REVOKE_PARTITIONS: -174,
  AUTHENTICATION: -169,
  NO_OFFSET: -168,
  PURGE_QUEUE: -152,
  PURGE_INFLIGHT: -151,
  UNKNOWN_TOPIC_OR_PART: 3,
  LEADER_NOT_AVAILABLE: 5,
  NOT_LEADER_OR_FOLLOWER: 6,
  UNKNOWN_LEADER_EPOCH: 75,
  NOENT: -156,
  IN_PROGRESS: -178,
  UNKNOWN_PARTITION: -190,
  TOPIC_ALREADY_EXISTS: 36,
  GROUP_ID_NOT_FOUND: 69,
} as const;

/** rd_kafka_vtype_t: the fields of rd_kafka_produceva's argument array. */
export const VTYPE = { END: 0, TOPIC: 1, PARTITION: 3, VALUE: 4, KEY: 5, OPAQUE: 6, MSGFLAGS: 7, HEADER: 9 } as const;

/** sizeof(rd_kafka_vu_t): the type, padded to 8, then a union of 64 bytes. */
export const VU_SIZE = 72;
export const MSG_F_COPY = 0x2;
export const PARTITION_UA = -1;
export const PURGE_QUEUE_AND_INFLIGHT = 0x1 | 0x2;
export const DESTROY_F_NO_CONSUMER_CLOSE = 0x8;

/** Offsets into rd_kafka_message_t (x86-64 and arm64 alike). */
export const MESSAGE = {
  err: 0,
  topic: 8,
  partition: 16,
  payload: 24,
  len: 32,
  key: 40,
  keyLen: 48,
  offset: 56,
  opaque: 64,
};

/** Offsets into rd_kafka_topic_partition_list_t and its rd_kafka_topic_partition_t elements (64 bytes each). */
export const PARTITION_LIST = { cnt: 0, elems: 8 };
export const TOPIC_PARTITION = { size: 64, topic: 0, partition: 8, offset: 16, err: 48 };

/**
 * A pointer librdkafka returned, as bun:ffi's number type (it types such results as possibly a bigint, which a
 * user-space address never needs), or null for NULL.
 *
 * @example
 * const event = pointer(rdkafka().rd_kafka_queue_poll(queue, 0));
 */
export const pointer = (value: Pointer | bigint | number | null): Pointer | null =>
  value === null || value === 0 ? null : (Number(value) as Pointer);
