/** Topic administration and broker probes. */
import { Admin, type Producer } from "@platformatic/kafka";
import { within } from "../deadline.ts";
import type { TopicSpec } from "../topics.ts";
import type { Position } from "./consumer.ts";

/** True when `client`'s broker answers a metadata request within `timeoutMs`. */
export function answers(client: Producer | Admin, timeoutMs: number): Promise<boolean> {
  const metadata = client.metadata({ topics: [], forceUpdate: true, retries: 0 }).then(
    () => true,
    () => false,
  );
  return within(metadata, timeoutMs, false);
}

/** True when a broker of `brokers` answers a metadata request within `timeoutMs`. */
export async function brokerAnswers(brokers: string[], timeoutMs: number): Promise<boolean> {
  const admin = new Admin({
    clientId: "probe",
    bootstrapBrokers: brokers,
    connectTimeout: timeoutMs,
    timeout: timeoutMs,
    retries: 0,
  });
  try {
    return await answers(admin, timeoutMs);
  } finally {
    await admin.close().catch(() => {});
  }
}

/** Creates the topics of `specs` that do not exist yet; existing topics are left as they are. */
export async function ensureTopics(brokers: string[], specs: TopicSpec[]): Promise<string[]> {
  const admin = new Admin({ clientId: "topics", bootstrapBrokers: brokers });
  try {
    const existing = new Set(await admin.listTopics());
    const missing = specs.filter((spec) => !existing.has(spec.name));
    for (const spec of missing) {
      // -1 replicas takes the broker's default.replication.factor: 1 locally, 3 on a real cluster.
      await admin.createTopics({ topics: [spec.name], partitions: spec.partitions, replicas: -1 });
    }
    return missing.map((spec) => spec.name);
  } finally {
    await admin.close();
  }
}

/** The offset after the last record of each partition of `topic`: where a reader starting now would begin. */
export async function endOffsets(brokers: string[], topic: string): Promise<Position[]> {
  const admin = new Admin({ clientId: "offsets", bootstrapBrokers: brokers });
  try {
    const metadata = await admin.metadata({ topics: [topic] });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp: -1n }));
    const [listed] = await admin.listOffsets({ topics: [{ name: topic, partitions }] });
    return (listed?.partitions ?? []).map(({ partitionIndex, offset }) => ({
      topic,
      partition: partitionIndex,
      offset,
    }));
  } finally {
    await admin.close();
  }
}

/** Deletes a consumer group's committed offsets, so its next member starts from the earliest records. */
export async function deleteGroup(brokers: string[], groupId: string): Promise<void> {
  const admin = new Admin({ clientId: "groups", bootstrapBrokers: brokers });
  try {
    await admin.deleteGroups({ groups: [groupId] });
  } finally {
    await admin.close();
  }
}

/** The offsets `groupId` has committed, per topic-partition; -1 for a partition it never committed. */
export async function committedOffsets(brokers: string[], groupId: string): Promise<Position[]> {
  const admin = new Admin({ clientId: "offsets", bootstrapBrokers: brokers });
  try {
    const [group] = await admin.listConsumerGroupOffsets({ groups: [groupId] });
    return (group?.topics ?? []).flatMap((topic) =>
      topic.partitions.map((p) => ({ topic: topic.name, partition: p.partitionIndex, offset: p.committedOffset })),
    );
  } finally {
    await admin.close();
  }
}

/**
 * Records of `topics` that `groupId` has not committed yet. A partition it never committed counts in full: its
 * next member would start from the earliest record.
 */
export async function groupLag(brokers: string[], groupId: string, topics: string[]): Promise<number> {
  const committed = new Map((await committedOffsets(brokers, groupId)).map((p) => [`${p.topic}:${p.partition}`, p]));
  let behind = 0n;
  for (const topic of topics) {
    for (const end of await endOffsets(brokers, topic)) {
      const done = committed.get(`${topic}:${end.partition}`)?.offset ?? -1n;
      behind += end.offset - (done < 0n ? 0n : done);
    }
  }
  return Number(behind);
}

/** The members of each group, as "clientId@host": who else is consuming in a group. */
export async function groupMembers(brokers: string[], groupIds: string[]): Promise<Map<string, string[]>> {
  const admin = new Admin({ clientId: "groups", bootstrapBrokers: brokers });
  try {
    const groups = await admin.describeGroups({ groups: groupIds });
    const members = (id: string) => [...(groups.get(id)?.members.values() ?? [])];
    return new Map(groupIds.map((id) => [id, members(id).map((m) => `${m.clientId}@${m.clientHost}`)]));
  } finally {
    await admin.close();
  }
}
