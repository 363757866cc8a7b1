/**
 * Consumer-group facts the fault run needs from the broker: committed offsets (has a stage caught up?) and
 * members (is some other process consuming in our groups?).
 */
// Imports the Kafka client outside shared/kafka because shared/kafka/admin.ts has no committed-offsets or
// describe-groups call yet; both belong there (bench/stages.ts has the same workaround).
import { Admin } from "@platformatic/kafka";

/** Key of a partition in the maps below. */
export const slot = (topic: string, partition: number) => `${topic}:${partition}`;

/** A short-lived admin client for `brokers`, closed after `work`. */
async function withAdmin<T>(brokers: string[], work: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = new Admin({ clientId: "faults", bootstrapBrokers: brokers, timeout: 5_000, retries: 0 });
  try {
    return await work(admin);
  } finally {
    await admin.close().catch(() => {});
  }
}

/** The group's committed offset per partition ("topic:partition"); never-committed partitions are absent. */
export function committedOffsets(brokers: string[], groupId: string): Promise<Map<string, bigint>> {
  return withAdmin(brokers, async (admin) => {
    const [group] = await admin.listConsumerGroupOffsets({ groups: [groupId] });
    const offsets = new Map<string, bigint>();
    for (const topic of group?.topics ?? [])
      for (const p of topic.partitions)
        if (p.committedOffset >= 0n) offsets.set(slot(topic.name, p.partitionIndex), p.committedOffset);
    return offsets;
  });
}

/** Members per group, as "clientId@host". */
export function groupMembers(brokers: string[], groupIds: string[]): Promise<Map<string, string[]>> {
  return withAdmin(brokers, async (admin) => {
    const groups = await admin.describeGroups({ groups: groupIds });
    return new Map(
      groupIds.map((id) => [
        id,
        [...(groups.get(id)?.members.values() ?? [])].map((m) => `${m.clientId}@${m.clientHost}`),
      ]),
    );
  });
}
