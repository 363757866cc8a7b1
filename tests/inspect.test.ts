/**
 * The README's inspection commands (`bun run kafka ...`: Kafka's own CLI tools from the stack's jars), run exactly
 * as a user types them, against the real broker and records this test produces: dead letters with their headers,
 * and a consumer group with committed offsets and lag. The README shows each command with example arguments; the
 * first test checks it still does, so the two cannot drift apart.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createConsumer, createProducer, type Delivery, deleteGroup, type InRecord } from "../shared/kafka.ts";
import { DecodeError, deadLetter } from "../shared/records.ts";
import { dlqOf, TOPICS, topicSpecs } from "../shared/topics.ts";
import { snapshot, testConfig, testKafka } from "./support.ts";

const ROOT = join(import.meta.dir, "..");

/** The commands, one shape each; arguments never contain spaces, so each is run split on spaces, as a shell would. */
const commands = {
  listTopics: () => "bun run kafka topics --list",
  describeTopic: (topic: string) => `bun run kafka topics --describe --topic ${topic}`,
  endOffsets: (topic: string) => `bun run kafka get-offsets --topic ${topic}`,
  followWithHeaders: (topic: string) =>
    `bun run kafka console-consumer --topic ${topic} --from-beginning --formatter-property print.key=true --formatter-property print.headers=true`,
  readAt: (topic: string, partition: number, offset: bigint) =>
    `bun run kafka console-consumer --topic ${topic} --partition ${partition} --offset ${offset} --max-messages 1 --timeout-ms 10000 --formatter-property print.key=true`,
  listGroups: () => "bun run kafka consumer-groups --list",
  describeGroup: (group: string) => `bun run kafka consumer-groups --describe --group ${group}`,
};

/** How the README shows them. */
const README_EXAMPLES = [
  commands.listTopics(),
  commands.describeTopic("locations.raw"),
  commands.endOffsets("locations.raw.dlq"),
  commands.followWithHeaders("locations.raw.dlq"),
  commands.readAt("locations.raw", 1, 6124n),
  commands.listGroups(),
  commands.describeGroup("persist"),
];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  seconds: number;
}

/**
 * Runs `command` in its own process group, as a terminal does. With `until`, the group gets SIGINT (Ctrl-C) once
 * stdout satisfies it; past `timeoutMs` it gets SIGTERM and the run fails.
 */
async function run(command: string, options: { until?: (stdout: string) => boolean; timeoutMs?: number } = {}) {
  const started = performance.now();
  const child = Bun.spawn(command.split(" "), { cwd: ROOT, stdout: "pipe", stderr: "pipe", detached: true });
  const group = -child.pid;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    process.kill(group, "SIGTERM");
  }, options.timeoutMs ?? 30_000);
  const stderr = new Response(child.stderr).text();
  let stdout = "";
  const decoder = new TextDecoder();
  let interrupted = false;
  for await (const chunk of child.stdout) {
    stdout += decoder.decode(chunk, { stream: true });
    if (!interrupted && options.until?.(stdout)) {
      interrupted = true;
      process.kill(group, "SIGINT");
    }
  }
  const code = await child.exited;
  clearTimeout(timer);
  const result: Run = { code, stdout, stderr: await stderr, seconds: (performance.now() - started) / 1000 };
  if (timedOut) throw new Error(`${command} did not finish in time:\n${result.stdout}\n${result.stderr}`);
  console.log(`${result.seconds.toFixed(1)} s  ${command}`);
  return result;
}

/** What a tool may print to stderr on success: no SLF4J setup noise, no deprecation notices, no log lines. */
const QUIET_STDERR = /SLF4J|deprecated|WARN|ERROR|Exception/;

const config = testConfig();
const KAFKA = testKafka();
const DLQ = dlqOf(TOPICS.locationsRaw);
const RUN = crypto.randomUUID().slice(0, 8);
const KEY = `inspect-${RUN}`;
const GROUP = `inspect-${RUN}`;
const STAGE = "inspect-test";

/** Dead letters as enrich writes them, for made-up source records; one key, so all land in one partition. */
const letters = [0, 1, 2].map((i) => {
  const source: InRecord = {
    topic: TOPICS.locationsRaw,
    partition: 0,
    offset: BigInt(1000 + i),
    key: Buffer.from(KEY),
    value: Buffer.from(`not json ${i}`),
    headers: {},
    timestamp: BigInt(Date.now()),
  };
  return deadLetter(source, new DecodeError(`value is not JSON: case ${i}`), STAGE);
});

let deliveries: Delivery[] = [];

beforeAll(async () => {
  const before = await snapshot(DLQ);
  const producer = createProducer({ kafka: KAFKA, clientId: "inspect-test" });
  try {
    deliveries = await producer.send(letters);
  } finally {
    await producer.close();
  }
  // A group that has read all three and committed after the first: lag 2 (more if others write that partition).
  const consumer = createConsumer({
    kafka: KAFKA,
    groupId: GROUP,
    clientId: "inspect-test",
    topics: [DLQ],
    startAt: before,
  });
  try {
    for await (const batch of consumer.batches()) {
      const ours = batch.filter((record) => record.key?.toString() === KEY);
      const first = ours.find((record) => record.offset === deliveries[0]?.offset);
      if (first) {
        await consumer.commit([{ topic: DLQ, partition: first.partition, offset: first.offset + 1n }]);
        break;
      }
    }
  } finally {
    await consumer.close();
  }
});

afterAll(async () => {
  await deleteGroup(KAFKA, GROUP).catch(() => {});
});

test("the README shows these commands, and package.json has the script they run", () => {
  const scripts = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts ?? {};
  expect(scripts.kafka, 'package.json needs "kafka": "bun run scripts/kafka.ts"').toBe("bun run scripts/kafka.ts");
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const missing = README_EXAMPLES.filter((command) => !readme.includes(command));
  expect(missing, "commands this test runs that README.md no longer shows").toEqual([]);
});

test("topics --list names every topic of the pipeline", async () => {
  const { code, stdout, stderr } = await run(commands.listTopics());
  expect(code, stderr).toBe(0);
  expect(stderr).not.toMatch(QUIET_STDERR);
  const listed = stdout.trim().split("\n");
  for (const { name } of topicSpecs(config.TOPIC_PARTITIONS)) expect(listed).toContain(name);
});

test("topics --describe shows each partition's leader", async () => {
  const { code, stdout, stderr } = await run(commands.describeTopic(DLQ));
  expect(code, stderr).toBe(0);
  expect(stderr).not.toMatch(QUIET_STDERR);
  const count = Number(/^Topic: locations\.raw\.dlq\tTopicId: \S+\tPartitionCount: (\d+)\t/m.exec(stdout)?.[1]);
  expect(count).toBeGreaterThan(0);
  for (let partition = 0; partition < count; partition++) {
    expect(stdout).toMatch(new RegExp(`\\tTopic: locations\\.raw\\.dlq\\tPartition: ${partition}\\tLeader: \\d+\\t`));
  }
});

test("get-offsets prints each partition's end offset", async () => {
  const { code, stdout, stderr } = await run(commands.endOffsets(DLQ));
  expect(code, stderr).toBe(0);
  expect(stderr).not.toMatch(QUIET_STDERR);
  const last = deliveries.at(-1);
  if (!last) throw new Error("nothing was produced");
  const end = new RegExp(`^locations\\.raw\\.dlq:${last.partition}:(\\d+)$`, "m").exec(stdout)?.[1];
  expect(BigInt(end ?? -1)).toBeGreaterThan(last.offset);
});

test("console-consumer follows the dead letters with their keys and dlq.* headers until Ctrl-C", async () => {
  const ours = (stdout: string) => stdout.split("\n").filter((line) => line.includes(`\t${KEY}\t`));
  const { code, stdout, stderr } = await run(commands.followWithHeaders(DLQ), {
    until: (out) => ours(out).length === letters.length,
  });
  expect(code, stderr).toBe(130); // the JVM's status after SIGINT, passed through bun run
  expect(stderr).not.toMatch(QUIET_STDERR);
  expect(stderr).toMatch(/Processed a total of \d+ messages/);
  // Each line: headers as name:value joined by commas, tab, key, tab, value.
  const lines = ours(stdout);
  expect(lines).toHaveLength(3);
  lines.forEach((line, i) => {
    const [headers = "", key, value] = line.split("\t");
    expect(key).toBe(KEY);
    expect(value).toBe(`not json ${i}`);
    expect(headers).toContain("dlq.error.class:DecodeError");
    expect(headers).toContain(`dlq.error.message:value is not JSON: case ${i}`);
    expect(headers).toContain("dlq.source.topic:locations.raw,dlq.source.partition:0");
    expect(headers).toContain(`dlq.source.offset:${1000 + i}`);
    expect(headers).toContain(`dlq.stage:${STAGE}`);
  });
});

test("console-consumer reads one record by partition and offset", async () => {
  const second = deliveries[1];
  if (!second) throw new Error("nothing was produced");
  const { code, stdout, stderr } = await run(commands.readAt(DLQ, second.partition, second.offset));
  expect(code, stderr).toBe(0);
  expect(stdout).toBe(`${KEY}\tnot json 1\n`);
  expect(stderr).not.toMatch(QUIET_STDERR);
  expect(stderr).toContain("Processed a total of 1 messages");
});

test("consumer-groups lists the group and describes its committed offsets and lag", async () => {
  const listed = await run(commands.listGroups());
  expect(listed.code, listed.stderr).toBe(0);
  expect(listed.stderr).not.toMatch(QUIET_STDERR);
  expect(listed.stdout.split("\n")).toContain(GROUP);

  const { code, stdout, stderr } = await run(commands.describeGroup(GROUP));
  expect(code, stderr).toBe(0);
  expect(stderr).not.toMatch(QUIET_STDERR);
  expect(stdout).toMatch(
    /^GROUP +TOPIC +PARTITION +CURRENT-OFFSET +LOG-END-OFFSET +LAG +CONSUMER-ID +HOST +CLIENT-ID$/m,
  );
  const [first] = deliveries;
  if (!first) throw new Error("nothing was produced");
  const row = stdout.split("\n").find((line) => line.startsWith(`${GROUP} `));
  const [group, topic, partition, current, end, lag] = row?.trim().split(/ +/) ?? [];
  expect({ group, topic, partition: Number(partition), current: BigInt(current ?? -1) }).toEqual({
    group: GROUP,
    topic: DLQ,
    partition: first.partition,
    current: first.offset + 1n,
  });
  expect(BigInt(lag ?? -1)).toBe(BigInt(end ?? -1) - (first.offset + 1n));
  expect(BigInt(lag ?? -1)).toBeGreaterThanOrEqual(2n);
});
