/**
 * The one list of topics. Ingest, the consumers, `bun run stack` and compose's topic init all read it, so a
 * topic is added here or nowhere.
 */

export const TOPICS = {
  locationsRaw: "locations.raw",
  loginsRaw: "logins.raw",
  vehiclesRaw: "vehicles.raw",
  locationsEnriched: "locations.enriched",
  vehiclesEnriched: "vehicles.enriched",
  loginsStats: "logins.stats",
  /** One record per window over all partitions, merged from logins.stats by intervals.ts. */
  loginsIntervals: "logins.intervals",
  /** Login events that arrived after their window closed, with the same context headers as a dead letter. */
  loginsLate: "logins.late",
  /** Changes of the source database's `public.users` table, written by capture.ts (the default CAPTURE_TABLES). */
  cdcUsers: "cdc.public.users",
} as const;

export type TopicName = (typeof TOPICS)[keyof typeof TOPICS];

/** Dead letters of a consumed topic (a fixed one or a captured table's) go to `<topic>.dlq`. */
export const dlqOf = (topic: string): string => `${topic}.dlq`;

/**
 * The topic capture.ts writes a table's changes to, for `schema.table` as CAPTURE_TABLES names it.
 *
 * @example
 * cdcTopicOf("public.users"); // "cdc.public.users"
 */
export const cdcTopicOf = (table: string): string => `cdc.${table}`;

/** True for a topic of captured changes; its records decode as change events whatever the table. */
export const isCdcTopic = (topic: string): boolean => topic.startsWith("cdc.") && !topic.endsWith(".dlq");

/** Topics that a stage consumes, and so the ones that get a dead-letter topic. */
const CONSUMED: TopicName[] = [
  TOPICS.locationsRaw,
  TOPICS.vehiclesRaw,
  TOPICS.locationsEnriched,
  TOPICS.vehiclesEnriched,
  TOPICS.loginsStats,
  TOPICS.loginsRaw,
  TOPICS.loginsIntervals,
  TOPICS.cdcUsers,
];

export interface TopicSpec {
  name: string;
  partitions: number;
  /** Topic settings at creation, e.g. `{ "cleanup.policy": "compact" }` for a topic keyed by identity. */
  configs?: Record<string, string>;
}

/** Every topic the pipeline needs, each with `partitions` partitions (the `TOPIC_PARTITIONS` setting). */
export function topicSpecs(partitions: number): TopicSpec[] {
  const names = [...Object.values(TOPICS), ...CONSUMED.map(dlqOf)];
  return names.map((name) => ({ name, partitions }));
}
