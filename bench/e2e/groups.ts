/**
 * What the broker knows about the pipeline's consumer groups: how far behind each is (to drain before and after
 * a step) and who its members are (to notice processes that are not ours consuming in the same groups).
 */
// Imports the Kafka client outside shared/kafka because shared/kafka/admin.ts has no committed-offsets or
// describe-groups call yet (bench/stages.ts and tools/faults/groups.ts have the same workaround).
import { Admin } from "@platformatic/kafka";

/** One admin connection for the whole bench, so polling every 250 ms does not reconnect each time. */
export function createGroupWatcher(brokers: string[]) {
  const admin = new Admin({ clientId: "bench-e2e", bootstrapBrokers: brokers, timeout: 5_000 });

  /** The end offset of every partition of `topic`, by partition. */
  async function ends(topic: string): Promise<Map<number, bigint>> {
    const metadata = await admin.metadata({ topics: [topic] });
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, partitionIndex) => ({ partitionIndex, timestamp: -1n }));
    const [listed] = await admin.listOffsets({ topics: [{ name: topic, partitions }] });
    return new Map((listed?.partitions ?? []).map((p) => [p.partitionIndex, p.offset]));
  }

  return {
    ends,

    /**
     * Records of `topics` that `groupId` has not committed yet. A partition the group never committed counts
     * in full: its next member would start from the earliest record.
     */
    async lag(groupId: string, topics: string[]): Promise<number> {
      const [group] = await admin.listConsumerGroupOffsets({ groups: [groupId] });
      let behind = 0n;
      for (const topic of topics) {
        const committed = group?.topics.find((t) => t.name === topic)?.partitions ?? [];
        for (const [partition, end] of await ends(topic)) {
          const done = committed.find((p) => p.partitionIndex === partition)?.committedOffset ?? -1n;
          behind += end - (done < 0n ? 0n : done);
        }
      }
      return Number(behind);
    },

    /** Members of each group, as "clientId@host". */
    async members(groupIds: string[]): Promise<Map<string, string[]>> {
      const groups = await admin.describeGroups({ groups: groupIds });
      return new Map(
        groupIds.map((id) => [
          id,
          [...(groups.get(id)?.members.values() ?? [])].map((m) => `${m.clientId}@${m.clientHost}`),
        ]),
      );
    },

    close: () => admin.close().catch(() => {}),
  };
}

export type GroupWatcher = ReturnType<typeof createGroupWatcher>;
