/**
 * What the broker knows about the pipeline's consumer groups: how far behind each is (to drain before and after
 * a step) and who its members are (to notice processes that are not ours consuming in the same groups).
 */
import {
  closeAdminConnections,
  endOffsets,
  groupLag,
  groupMembers,
  type KafkaConnection,
  type Position,
} from "../../shared/kafka.ts";

/**
 * The group queries of one bench run, bound to its cluster. They share the process's admin connection, so
 * polling every 250 ms does not reconnect each time; `close` closes that connection at the end of the run.
 *
 * @example
 * const watcher = createGroupWatcher(kafka);
 * const behind = await watcher.lag("enrich", ["locations.raw"]);
 * await watcher.close();
 */
export function createGroupWatcher(kafka: KafkaConnection) {
  return {
    /** The end offset of every partition of `topic`. */
    ends: (topic: string): Promise<Position[]> => endOffsets(kafka, topic),

    /**
     * Records of `topics` that `groupId` has not committed yet. A partition the group never committed counts
     * in full: its next member would start from the earliest record.
     */
    lag: (groupId: string, topics: string[]): Promise<number> => groupLag(kafka, groupId, topics),

    /** Members of each group, as "clientId@host". */
    members: (groupIds: string[]): Promise<Map<string, string[]>> => groupMembers(kafka, groupIds),

    close: closeAdminConnections,
  };
}

export type GroupWatcher = ReturnType<typeof createGroupWatcher>;
