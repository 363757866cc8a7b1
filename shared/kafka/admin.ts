/**
 * Topic administration and broker probes. With librdkafka (`KAFKA_CLIENT`), the calls a running stage makes (the
 * probe, creating topics, end and committed offsets) go through its admin API (rdkafka/admin.ts), so such a
 * process never loads @platformatic/kafka, whose modules cost about 40 MB of resident memory. The rest
 * (deleting groups and topics, seeking a group, listing its members), which tools and tests call, and every call
 * with @platformatic/kafka, go over one Admin client of that library per connection, loaded and opened on first
 * use and kept for the life of the process: a drain that polls offsets every second would otherwise connect every
 * second.
 */
import type { Admin, Producer } from "@platformatic/kafka";
import { config } from "../config.ts";
import { within } from "../deadline.ts";
import type { TopicSpec } from "../topics.ts";
import { accessFailure, clientOptions, connectionKey, KafkaAccessError } from "./connection.ts";
import { fromBroker, onBroker } from "./namespace.ts";
import { uncommitted } from "./positions.ts";
import { closeAdminHandles, createTopics, listCommittedOffsets, listEndOffsets, probeBroker } from "./rdkafka/admin.ts";
import { rdkafkaAdmin } from "./rdkafka/ffi.ts";
import type { KafkaConnection, Position } from "./types.ts";

/** The library, loaded by the first call that needs it. */
const platformatic = () => import("@platformatic/kafka");
/** librdkafka is selected and has the admin API (2.3 or later; an older system library has not). */
const onLibrdkafka = () => config().KAFKA_CLIENT === "librdkafka" && rdkafkaAdmin() !== null;

interface Shared {
  admin: Admin;
  /** Calls using it now. */
  calls: number;
}

/** Shared clients by connection; a client leaves the map when a call on it fails with a connection error. */
const shared = new Map<string, Shared>();
let callsInFlight = 0;
/**
 * The shared sockets are unref'd so that an idle client never keeps a finished script alive (most callers never
 * close it); this timer keeps the process alive instead while a call waits for the broker.
 */
let keepAlive: Timer | undefined;

/** Errors after which the client's connections cannot be trusted: refused, dropped, or timed out. */
async function isConnectionError(error: unknown): Promise<boolean> {
  const { findErrorBy, NetworkError, TimeoutError } = await platformatic();
  const failure = error instanceof Error ? error : undefined;
  return (
    findErrorBy(failure, "code", NetworkError.code) !== null || findErrorBy(failure, "code", TimeoutError.code) !== null
  );
}

async function open(key: string, kafka: KafkaConnection): Promise<Shared> {
  const { Admin } = await platformatic();
  const admin = new Admin({ clientId: "admin", ...clientOptions(kafka) });
  admin.on("client:broker:connect", ({ connection }) => connection.socket.unref());
  const entry = { admin, calls: 0 };
  shared.set(key, entry);
  return entry;
}

/** Runs `work` on the shared client for `kafka`: created on first use, replaced after a connection error. */
async function withAdmin<T>(kafka: KafkaConnection, work: (admin: Admin) => Promise<T>): Promise<T> {
  const key = connectionKey(kafka);
  if (callsInFlight++ === 0) keepAlive = setInterval(() => {}, 60_000);
  let current: Shared | undefined;
  try {
    const cached = shared.get(key);
    // A client closed by anything but this module would fail every call: replace it instead.
    current = cached && !cached.admin.closed ? cached : await open(key, kafka);
    current.calls++;
    return await work(current.admin);
  } catch (error) {
    if (current && shared.get(key) === current && (await isConnectionError(error))) shared.delete(key);
    throw error;
  } finally {
    if (--callsInFlight === 0) clearInterval(keepAlive);
    if (current) {
      current.calls--;
      // Dropped after a connection error: closed once its other callers are done, not under them, and without
      // making this caller wait for it.
      if (current.calls === 0 && shared.get(key) !== current && !current.admin.closed)
        current.admin.close().catch(() => {});
    }
  }
}

/**
 * Closes the connections the admin helpers share, at once: calls still in flight fail, and a later call opens a
 * new connection. A process calls it at shutdown to leave the broker cleanly; forgetting it does not keep the
 * process alive, it only leaves the broker to notice the closed socket.
 *
 * @example
 * // The last step of a shutdown, once nothing calls the admin helpers any more.
 * await closeAdminConnections();
 */
export async function closeAdminConnections(): Promise<void> {
  closeAdminHandles();
  const open = [...shared.values()];
  shared.clear();
  await Promise.all(open.map((entry) => entry.admin.close().catch(() => {})));
}

const probe = (client: Producer | Admin) => client.metadata({ topics: [], forceUpdate: true, retries: 0 });

/**
 * True when `client`'s broker answers a metadata request within `timeoutMs`.
 *
 * @example
 * const up = await answers(producer, 1_000);
 */
export function answers(client: Producer | Admin, timeoutMs: number): Promise<boolean> {
  const answered = probe(client).then(
    () => true,
    () => false,
  );
  return within(answered, timeoutMs, false);
}

/**
 * True when a broker of `kafka` answers a metadata request within `timeoutMs`, false when none does (not up
 * yet, unreachable). Throws a {@link KafkaAccessError} when a broker answers but refuses the connection for good:
 * rejected credentials, an untrusted certificate, TLS against a plaintext port.
 *
 * @example
 * if (!(await checkBroker(kafka, 3_000))) log.warn("no broker yet; retrying in the background");
 */
export function checkBroker(kafka: KafkaConnection, timeoutMs: number): Promise<boolean> {
  if (onLibrdkafka()) return within(probeBroker(kafka, timeoutMs), timeoutMs, false);
  // Through withAdmin, so a refused probe replaces the client and the next probe connects afresh.
  const answered = withAdmin(kafka, probe).then(
    () => true,
    (error: unknown) => {
      const why = accessFailure(error, kafka);
      if (why) throw new KafkaAccessError(why, { cause: error });
      return false;
    },
  );
  return within(answered, timeoutMs, false);
}

/**
 * True when a broker of `kafka` answers a metadata request within `timeoutMs` and accepts the connection.
 *
 * @example
 * if (!(await brokerAnswers({ brokers: ["127.0.0.1:9092"] }, 3_000))) throw new Error("no broker");
 */
export function brokerAnswers(kafka: KafkaConnection, timeoutMs: number): Promise<boolean> {
  return checkBroker(kafka, timeoutMs).catch(() => false);
}

/**
 * Creates the topics of `specs` that do not exist yet; existing topics are left as they are. Returns the names
 * it created.
 *
 * @example
 * const created = await ensureTopics(kafka, topicSpecs(6));
 */
export function ensureTopics(kafka: KafkaConnection, specs: TopicSpec[]): Promise<string[]> {
  if (onLibrdkafka()) return createTopics(kafka, specs);
  return withAdmin(kafka, async (admin) => {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((spec) => !existing.has(onBroker(kafka, spec.name)));
    for (const spec of missing) {
      // -1 replicas takes the broker's default.replication.factor: 1 locally, 3 on a real cluster.
      const configs = Object.entries(spec.configs ?? {}).map(([name, value]) => ({ name, value }));
      const topics = [onBroker(kafka, spec.name)];
      await admin.createTopics({ topics, partitions: spec.partitions, replicas: -1, configs });
    }
    return missing.map((spec) => spec.name);
  });
}

/**
 * The offset after the last record of each partition of `topic`: where a reader starting now would begin.
 *
 * @example
 * const before = await endOffsets(kafka, "locations.raw"); // [{ topic, partition: 0, offset: 1234n }, ...]
 */
export function endOffsets(kafka: KafkaConnection, topic: string): Promise<Position[]> {
  if (onLibrdkafka()) return listEndOffsets(kafka, topic);
  const name = onBroker(kafka, topic);
  return withAdmin(kafka, async (admin) => {
    const metadata = await admin.metadata({ topics: [name] });
    const count = metadata.topics.get(name)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp: -1n }));
    const [listed] = await admin.listOffsets({ topics: [{ name, partitions }] });
    return (listed?.partitions ?? []).map(({ partitionIndex, offset }) => ({
      topic,
      partition: partitionIndex,
      offset,
    }));
  });
}

/**
 * Deletes a consumer group's committed offsets, so its next member starts from the earliest records.
 *
 * @example
 * await deleteGroup(kafka, "enrich");
 */
export function deleteGroup(kafka: KafkaConnection, groupId: string): Promise<void> {
  return withAdmin(kafka, (admin) => admin.deleteGroups({ groups: [onBroker(kafka, groupId)] }));
}

/**
 * Deletes every topic and consumer group of `kafka`'s namespace (none without one): what a run in a namespace
 * leaves behind. Returns how many topics it deleted.
 *
 * @example
 * await deleteNamespace({ ...kafka, namespace: "bench-m1x2" });
 */
export function deleteNamespace(kafka: KafkaConnection): Promise<number> {
  if (!kafka.namespace) return Promise.resolve(0);
  const prefix = `${kafka.namespace}.`;
  return withAdmin(kafka, async (admin) => {
    const groups = [...(await admin.listGroups()).keys()].filter((group) => group.startsWith(prefix));
    if (groups.length > 0) await admin.deleteGroups({ groups });
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(prefix));
    if (topics.length > 0) await admin.deleteTopics({ topics });
    return topics.length;
  });
}

/**
 * Deletes those of `topics` that exist: what a run that made topics of its own outside a namespace leaves behind.
 *
 * @example
 * await deleteTopics(kafka, ["cdc.public.cdc_1a2b3c4d", "cdc.public.cdc_1a2b3c4d.dlq"]);
 */
export function deleteTopics(kafka: KafkaConnection, topics: string[]): Promise<void> {
  return withAdmin(kafka, async (admin) => {
    const existing = new Set(await admin.listTopics());
    const names = topics.map((topic) => onBroker(kafka, topic)).filter((name) => existing.has(name));
    if (names.length > 0) await admin.deleteTopics({ topics: names });
  });
}

/**
 * Sets the committed offsets of `groupId` to `positions` (`rpk group seek`): where its next member starts. The
 * group must have no members then.
 *
 * @example
 * await seekGroup(kafka, "persist-mongodb", await endOffsets(kafka, "locations.enriched")); // skip the backlog
 */
export function seekGroup(kafka: KafkaConnection, groupId: string, positions: Position[]): Promise<void> {
  const topics = [...new Set(positions.map((position) => position.topic))].map((name) => ({
    name: onBroker(kafka, name),
    partitionOffsets: positions
      .filter((position) => position.topic === name)
      .map(({ partition, offset }) => ({ partition, offset })),
  }));
  return withAdmin(kafka, (admin) => admin.alterConsumerGroupOffsets({ groupId: onBroker(kafka, groupId), topics }));
}

/**
 * The offsets `groupId` has committed, per topic-partition; -1 for a partition it never committed.
 *
 * @example
 * const committed = await committedOffsets(kafka, "persist");
 */
export function committedOffsets(kafka: KafkaConnection, groupId: string): Promise<Position[]> {
  if (onLibrdkafka()) return listCommittedOffsets(kafka, groupId);
  return withAdmin(kafka, async (admin) => {
    const [group] = await admin.listConsumerGroupOffsets({ groups: [onBroker(kafka, groupId)] });
    return (group?.topics ?? []).flatMap(({ name, partitions }) =>
      partitions.map((p) => ({
        topic: fromBroker(kafka, name),
        partition: p.partitionIndex,
        offset: p.committedOffset,
      })),
    );
  });
}

/**
 * Records of `topics` that `groupId` has not committed yet. A partition it never committed counts in full: its
 * next member would start from the earliest record.
 *
 * @example
 * const behind = await groupLag(kafka, "enrich", ["locations.raw"]);
 */
export async function groupLag(kafka: KafkaConnection, groupId: string, topics: string[]): Promise<number> {
  const [committed, ...ends] = await Promise.all([
    committedOffsets(kafka, groupId),
    ...topics.map((topic) => endOffsets(kafka, topic)),
  ]);
  return uncommitted(ends.flat(), committed ?? []);
}

/**
 * The members of each group, as "clientId@host": who else is consuming in a group.
 *
 * @example
 * const members = await groupMembers(kafka, ["enrich", "persist"]); // Map { "enrich" => ["enrich@/127.0.0.1"] }
 */
export function groupMembers(kafka: KafkaConnection, groupIds: string[]): Promise<Map<string, string[]>> {
  return withAdmin(kafka, async (admin) => {
    const groups = await admin.describeGroups({ groups: groupIds.map((id) => onBroker(kafka, id)) });
    const members = (id: string) => [...(groups.get(onBroker(kafka, id))?.members.values() ?? [])];
    return new Map(groupIds.map((id) => [id, members(id).map((m) => `${m.clientId}@${m.clientHost}`)]));
  });
}
