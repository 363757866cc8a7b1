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
