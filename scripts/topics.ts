/**
 * `bun run scripts/topics.ts [FILE]`: the topic plan, one `<name> <partitions>` line per topic, computed from
 * shared/topics.ts with the configured TOPIC_PARTITIONS. Compose's one-shot `topic-plan` service runs it in the
 * app image and writes the plan to a volume; `topic-init` (the Redpanda image, which has rpk but no Bun) reads
 * it with redpanda/create-topics.sh. So `docker compose up` creates exactly the topics the code uses, from the
 * code itself, at run time: no copy of the list to drift. Without FILE the plan goes to stdout.
 */
import { renameSync, writeFileSync } from "node:fs";
import { config } from "../shared/config.ts";
import { type TopicSpec, topicSpecs } from "../shared/topics.ts";

/** Kafka's legal topic names; it also keeps every plan line safe to split on spaces in a shell. */
const TOPIC_NAME = /^[a-zA-Z0-9._-]{1,249}$/;

/** The plan's text for `specs`; throws on a name no broker would accept. */
export function topicPlan(specs: TopicSpec[]): string {
  return specs
    .map(({ name, partitions }) => {
      if (!TOPIC_NAME.test(name)) throw new Error(`illegal topic name ${JSON.stringify(name)}`);
      return `${name} ${partitions}\n`;
    })
    .join("");
}

if (import.meta.main) {
  const plan = topicPlan(topicSpecs(config().TOPIC_PARTITIONS));
  const file = process.argv[2];
  if (file) {
    // Written aside and renamed, so topic-init never reads half a plan.
    writeFileSync(`${file}.tmp`, plan);
    renameSync(`${file}.tmp`, file);
    console.log(`topic plan: ${plan.split("\n").length - 1} topics written to ${file}`);
  } else {
    process.stdout.write(plan);
  }
}
