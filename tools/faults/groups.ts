/** Consumer-group facts the fault run needs, keyed as the fault run's maps are: "topic:partition". */
import { committedOffsets as committedPositions, type KafkaConnection } from "../../shared/kafka.ts";

export { groupMembers } from "../../shared/kafka.ts";

/** Key of a partition in the maps below. */
export const slot = (topic: string, partition: number) => `${topic}:${partition}`;

/** The group's committed offset per partition; never-committed partitions are absent. */
export async function committedOffsets(kafka: KafkaConnection, groupId: string): Promise<Map<string, bigint>> {
  const positions = await committedPositions(kafka, groupId);
  return new Map(positions.filter((p) => p.offset >= 0n).map((p) => [slot(p.topic, p.partition), p.offset]));
}
