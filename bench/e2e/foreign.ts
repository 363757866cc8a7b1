/**
 * Other work on the machine that would spoil the numbers: other sessions share the broker, the database and
 * the consumer groups, and a fault-injection run even stops and restarts the servers. Before measuring, the
 * bench waits until none of that is running; during each step it looks again and records what it saw.
 */
import { groupOf } from "../../tools/harness.ts";
import { stageTweaks } from "../stages.ts";
import type { GroupWatcher } from "./groups.ts";
import { PIPELINE } from "./pipeline.ts";

/** Command lines that mean pipeline work: stages, tests, the fault run, other benches, wrk. */
const PATTERNS = [
  /\b(ingest|enrich|aggregate|persist)\.ts\b/,
  /\bbun (run )?(tools\/faults\.ts|test:faults)/,
  /\bbun test\b/,
  /\bbench\/(?!e2e)[\w/.-]+\.ts\b|bench:(?!e2e)\w+/,
  /(^|\/)wrk\s/,
];

/** The groups of every stage that consumes, as the bench runs them (BENCH_STAGE_ENV included). */
export const GROUPS = PIPELINE.flatMap((name) => groupOf(name, { ...process.env, ...stageTweaks().env }) ?? []);

/** Processes other than `ours` (and this process and its parent) whose command line matches a pattern. */
export function foreignProcesses(ours: number[]): string[] {
  const mine = new Set([process.pid, process.ppid, ...ours]);
  const out = Bun.spawnSync(["ps", "-eo", "pid=,args="]).stdout.toString();
  const found: string[] = [];
  for (const line of out.split("\n")) {
    const match = /^\s*(\d+)\s+(.*)$/.exec(line);
    if (!match || mine.has(Number(match[1]))) continue;
    const args = match[2] as string;
    if (PATTERNS.some((pattern) => pattern.test(args))) found.push(`${match[1]} ${args.slice(0, 120)}`);
  }
  return found;
}

/** Members of the pipeline's groups beyond `oursPerGroup` (0 before our stages start, 1 after). */
export async function foreignMembers(watcher: GroupWatcher, oursPerGroup: number): Promise<string[]> {
  const members = await watcher.members(GROUPS);
  return [...members]
    .filter(([, list]) => list.length > oursPerGroup)
    .map(([group, list]) => `group ${group}: ${list.length} members (${list.join(", ")}), ${oursPerGroup} ours`);
}

/** Everything foreign right now: processes and group members. */
export async function lookForForeign(watcher: GroupWatcher, ours: number[], oursPerGroup: number): Promise<string[]> {
  const members = await foreignMembers(watcher, oursPerGroup).catch((error: unknown) => [
    `cannot describe the groups: ${error instanceof Error ? error.message : String(error)}`,
  ]);
  return [...foreignProcesses(ours), ...members];
}
