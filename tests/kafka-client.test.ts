/**
 * The contract of shared/kafka's port, run against each client library (@platformatic/kafka and librdkafka) and
 * the real broker: what the stages rely on must hold for both, whichever `KAFKA_CLIENT` selects.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { LOCAL_SASL_SSL } from "../scripts/stack.ts";
import { KAFKA_CLIENTS } from "../shared/config.ts";
import { createTopics, listCommittedOffsets, listEndOffsets, probeBroker } from "../shared/kafka/rdkafka/admin.ts";
import {
  committedOffsets,
  type Delivery,
  deleteGroup,
  deleteNamespace,
  ensureTopics,
  type InRecord,
  KafkaAccessError,
  type KafkaConnection,
  type KafkaConsumer,
  kafkaClient,
  type OutRecord,
  type Position,
  partitionFor,
  scramFailsOnKafka4,
  seekGroup,
} from "../shared/kafka.ts";
import { dlqOf, TOPICS } from "../shared/topics.ts";
import { pollUntil, snapshot, startGroupAtEnd, testConfig, testKafka } from "./support.ts";

/** A topic no stage reads, so the records written here disturb nobody; tests pick out their own by key. */
const TOPIC = dlqOf(TOPICS.loginsStats);
const RUN = crypto.randomUUID().slice(0, 8);
const groups: string[] = [];
afterAll(async () => {
  await Promise.all(groups.map((group) => deleteGroup(testKafka(), group).catch(() => {})));
});

/** A group of this run; deleted at the end. */
const group = (name: string) => {
  const id = `contract-${RUN}-${name}`;
  groups.push(id);
  return id;
};

/** A consumer being read in the background: what it has received, and its latest assignment. */
interface Reading {
  consumer: KafkaConsumer;
  records: InRecord[];
  assignment: { topic: string; partition: number }[] | undefined;
  /** Rejects when the consumer's stream fails. */
  done: Promise<void>;
}

const localStack = testConfig().KAFKA_BROKERS.join(",") === "127.0.0.1:19092";

describe.each(KAFKA_CLIENTS)("the %s client", (name) => {
  const client = kafkaClient(name);
  const kafka = testKafka();

  function read(options: { groupId: string; startAt?: Position[]; exclusive?: boolean }, on = kafka): Reading {
    const reading: Reading = { records: [], assignment: undefined } as unknown as Reading;
    reading.consumer = client.createConsumer({
      kafka: on,
      clientId: `contract-${name}`,
      topics: [TOPIC],
      ...options,
      onAssign: (partitions) => {
        reading.assignment = partitions;
      },
    });
    reading.done = (async () => {
      for await (const batch of reading.consumer.batches()) reading.records.push(...batch);
    })();
    reading.done.catch(() => {}); // tests that expect a failure await it themselves
    return reading;
  }

  /** Waits until `reading` holds `count` records with keys of `prefix`, and returns them. */
  const ours = (reading: Reading, prefix: string, count: number) => {
    const mine = () => reading.records.filter((record) => record.key?.toString().startsWith(prefix));
    return pollUntil(`${count} records of ${prefix}`, async () => (mine().length >= count ? mine() : undefined)).catch(
      (error: Error) => {
        // What the reader did get says whether it fetched nothing at all or lost some.
        const assigned = reading.assignment?.map((p) => p.partition).join(",");
        const others = reading.records
          .filter((record) => !record.key?.toString().startsWith(prefix))
          .slice(0, 5)
          .map(
            (r) =>
              `${r.partition}:${r.offset} key ${r.key?.toString("hex") ?? "none"} value ${r.value.toString("hex")}`,
          );
        throw new Error(
          `${error.message}; got ${mine().length} of ${reading.records.length}, assigned [${assigned}], others [${others.join("; ")}]`,
        );
      },
    );
  };

  async function produce(records: OutRecord[], on = kafka): Promise<Delivery[]> {
    const producer = client.createProducer({ kafka: on, clientId: `contract-${name}` });
    try {
      return await producer.send(records);
    } finally {
      await producer.close();
    }
  }

  /** Waits until `reading` holds all six partitions. */
  const holdsAll = (reading: Reading, what: string) =>
    pollUntil(what, async () => (reading.assignment?.length === 6 ? true : undefined));

  /** Writes two records to every partition and waits until `reading` has all of them. */
  async function readsEveryPartition(reading: Reading, label: string) {
    const prefix = `${RUN}-${name}-${label}`;
    await produce(
      Array.from({ length: 12 }, (_, i) => ({ topic: TOPIC, key: `${prefix}-${i}`, partition: i % 6, value: "x" })),
    );
    expect(await ours(reading, prefix, 12)).toHaveLength(12);
  }

  /** Commits where every partition ends now, so a new member of the group reads only what comes next. */
  async function commitEnds(reading: Reading, from: Position[]) {
    await pollUntil("an assignment", async () => (reading.assignment?.length ? true : undefined));
    await reading.consumer.commit(from);
  }

  test("records round-trip with their deliveries, murmur2 partitions, headers and keyless records", async () => {
    const from = await snapshot(TOPIC);
    const prefix = `${RUN}-${name}-trip`;
    const keyed = Array.from({ length: 20 }, (_, i) => ({
      topic: TOPIC,
      key: `${prefix}-${i}`,
      value: JSON.stringify({ i }),
      headers: { run: RUN, index: String(i) },
    }));
    const deliveries = await produce([
      ...keyed,
      { topic: TOPIC, key: `${prefix}-explicit`, partition: 4, value: "explicit" },
      { topic: TOPIC, key: undefined, value: `keyless ${prefix}` },
    ]);
    expect(deliveries).toHaveLength(22);
    for (const [i, record] of keyed.entries()) expect(deliveries[i]?.partition).toBe(partitionFor(record.key, 6));
    expect(deliveries[20]?.partition).toBe(4);
    expect(deliveries[21]?.partition).toBe(0);
    for (const delivery of deliveries) {
      const start = from.find((p) => p.partition === delivery.partition)?.offset ?? 0n;
      expect(delivery.offset).toBeGreaterThanOrEqual(start);
    }
    expect(new Set(deliveries.map((d) => `${d.partition}:${d.offset}`)).size).toBe(22);

    const reading = read({ groupId: group(`${name}-trip`), startAt: from });
    try {
      const records = await ours(reading, prefix, 21);
      for (const [i, record] of keyed.entries()) {
        const got = records.find((r) => r.key?.toString() === record.key);
        expect(got).toMatchObject({ topic: TOPIC, partition: deliveries[i]?.partition, offset: deliveries[i]?.offset });
        expect(got?.value.toString()).toBe(record.value);
        expect(got?.headers).toEqual(record.headers);
        expect(got?.timestamp).toBeGreaterThan(0n);
      }
      const keyless = await pollUntil("the keyless record", async () =>
        reading.records.find((r) => r.value.toString() === `keyless ${prefix}`),
      );
      expect(keyless).toMatchObject({ key: undefined, partition: 0, offset: deliveries[21]?.offset, headers: {} });
    } finally {
      await reading.consumer.close();
    }
  });

  test("every byte of many records survives garbage collection while they are read", async () => {
    const from = await snapshot(TOPIC);
    const prefix = `${RUN}-${name}-gc`;
    // Keys and values of many lengths, so every allocation size the reader makes is in play.
    const sent = Array.from({ length: 3_000 }, (_, i) => ({
      topic: TOPIC,
      key: `${prefix}-${i}-${"k".repeat(i % 40)}`,
      value: JSON.stringify({ i, pad: "v".repeat(i % 200) }),
      headers: { index: String(i), [`h${i % 7}`]: "x".repeat(i % 30) },
    }));
    await produce(sent);
    const reading = read({ groupId: group(`${name}-gc`), startAt: from });
    const collector = setInterval(() => Bun.gc(true), 5);
    try {
      const records = await ours(reading, prefix, sent.length);
      const byKey = new Map(records.map((record) => [record.key?.toString(), record]));
      for (const record of sent) {
        const got = byKey.get(record.key);
        expect(got?.value.toString()).toBe(record.value);
        expect(got?.headers).toEqual(record.headers);
      }
    } finally {
      clearInterval(collector);
      await reading.consumer.close();
    }
  });

  test("a reader slower than the fetching gets every record once, in offset order per partition", async () => {
    const from = await snapshot(TOPIC);
    const prefix = `${RUN}-${name}-slow`;
    const deliveries = await produce(
      Array.from({ length: 30_000 }, (_, i) => ({ topic: TOPIC, key: `${prefix}-${i % 97}`, value: String(i) })),
    );
    const consumer = client.createConsumer({
      kafka,
      clientId: `contract-${name}`,
      groupId: group(`${name}-slow`),
      topics: [TOPIC],
      startAt: from,
    });
    const got: InRecord[] = [];
    try {
      // Small batches, each handed back a turn of the event loop later: the client holds many times what the
      // reader takes, so whatever bounds its queue is in play.
      for await (const batch of consumer.batches(500)) {
        got.push(...batch.filter((record) => record.key?.toString().startsWith(`${prefix}-`)));
        if (got.length >= deliveries.length) break;
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      await consumer.close();
    }
    const offsets = (records: { partition: number; offset: bigint }[], partition: number) =>
      records.filter((r) => r.partition === partition).map((r) => r.offset);
    for (let partition = 0; partition < 6; partition++)
      expect(offsets(got, partition)).toEqual(offsets(deliveries, partition));
  });

  test("a new member resumes from the offset the group committed", async () => {
    const from = await snapshot(TOPIC);
    const prefix = `${RUN}-${name}-resume`;
    const groupId = group(`${name}-resume`);
    const first = read({ groupId, startAt: from });
    await commitEnds(first, from);
    const deliveries = await produce(
      Array.from({ length: 10 }, (_, i) => ({ topic: TOPIC, key: prefix, value: String(i) })),
    );
    const fifth = deliveries[4] as Delivery;
    try {
      const records = await ours(first, prefix, 10);
      expect(records.map((r) => r.value.toString())).toEqual(Array.from({ length: 10 }, (_, i) => String(i)));
      await first.consumer.commit([{ topic: TOPIC, partition: fifth.partition, offset: fifth.offset + 1n }]);
    } finally {
      await first.consumer.close();
    }
    const stored = await committedOffsets(kafka, groupId);
    expect(stored.find((p) => p.topic === TOPIC && p.partition === fifth.partition)?.offset).toBe(fifth.offset + 1n);

    const second = read({ groupId });
    try {
      const records = await ours(second, prefix, 5);
      expect(records.map((r) => r.value.toString())).toEqual(["5", "6", "7", "8", "9"]);
      expect(records[0]?.offset).toBe(fifth.offset + 1n);
    } finally {
      await second.consumer.close();
    }
  });

  test("in a namespace, the broker holds <namespace>.<name> and the stages see only their own names", async () => {
    const spaced: KafkaConnection = { ...kafka, namespace: `contract-${RUN}-${name}` };
    const prefix = `${RUN}-${name}-ns`;
    const groupId = `${name}-ns`;
    await ensureTopics(spaced, [{ name: TOPIC, partitions: 6 }]);
    const outside = await snapshot(TOPIC);
    const reading = read({ groupId }, spaced);
    try {
      const deliveries = await produce(
        Array.from({ length: 6 }, (_, i) => ({ topic: TOPIC, key: `${prefix}-${i}`, value: String(i) })),
        spaced,
      );
      const records = await ours(reading, prefix, 6);
      expect(new Set(records.map((r) => r.topic))).toEqual(new Set([TOPIC]));
      expect(new Set(reading.assignment?.map((p) => p.topic))).toEqual(new Set([TOPIC]));
      const last = deliveries[5] as Delivery;
      await reading.consumer.commit([{ topic: TOPIC, partition: last.partition, offset: last.offset + 1n }]);
      // Seen without the namespace: the group and the topic carry its prefix, and the plain topic got nothing.
      const stored = await committedOffsets(kafka, `${spaced.namespace}.${groupId}`);
      expect(stored).toContainEqual({
        topic: `${spaced.namespace}.${TOPIC}`,
        partition: last.partition,
        offset: last.offset + 1n,
      });
      expect(await snapshot(TOPIC)).toEqual(outside);
    } finally {
      await reading.consumer.close();
      await deleteNamespace(spaced);
    }
  });

  test("a paused consumer receives nothing until it resumes", async () => {
    const from = await snapshot(TOPIC);
    const prefix = `${RUN}-${name}-pause`;
    const paused = read({ groupId: group(`${name}-paused`), startAt: from });
    const control = read({ groupId: group(`${name}-control`), startAt: from });
    try {
      await pollUntil("both assigned", async () =>
        paused.assignment?.length && control.assignment?.length ? true : undefined,
      );
      paused.consumer.pause();
      await produce(Array.from({ length: 5 }, (_, i) => ({ topic: TOPIC, key: `${prefix}-${i}`, value: "p" })));
      // Once a reader that was never paused has them, the paused one had every chance to receive them.
      await ours(control, prefix, 5);
      expect(paused.records.filter((r) => r.key?.toString().startsWith(prefix))).toHaveLength(0);
      paused.consumer.resume();
      expect(await ours(paused, prefix, 5)).toHaveLength(5);
    } finally {
      await Promise.all([paused.consumer.close(), control.consumer.close()]);
    }
  });

  test.each([
    ["reading", false],
    ["paused while some were away", true],
  ])(
    "two members share the partitions, and the one left takes them all back and reads them (%s)",
    async (_, paused) => {
      const groupId = group(`${name}-share-${paused}`);
      const from = await snapshot(TOPIC);
      const a = read({ groupId, startAt: from });
      await holdsAll(a, "all six partitions on the first member");
      // A pause must not outlive the assignment of a partition taken away meanwhile.
      if (paused) a.consumer.pause();
      const b = read({ groupId, startAt: from });
      try {
        await pollUntil("the partitions split between both", async () => {
          const [ofA, ofB] = [a.assignment ?? [], b.assignment ?? []];
          const union = new Set([...ofA, ...ofB].map((p) => p.partition));
          return ofA.length > 0 && ofB.length > 0 && ofA.length + ofB.length === 6 && union.size === 6
            ? true
            : undefined;
        });
        if (paused) a.consumer.resume();
        await b.consumer.close();
        await holdsAll(a, "all six back on the first");
        // Partitions that went to the other member and came back are read again, every one of them.
        await readsEveryPartition(a, `back-${paused}`);
      } finally {
        await Promise.all([a.consumer.close(), b.consumer.close()]);
      }
    },
  );

  test("after a rebalance, every partition a member keeps is read again from the group's committed offset", async () => {
    const groupId = group(`${name}-reread`);
    // The group's own committed offsets, not startAt positions: the stages read that way.
    const from = await startGroupAtEnd(groupId, [TOPIC]);
    const prefix = `${RUN}-${name}-reread`;
    const deliveries = await produce(
      Array.from({ length: 60 }, (_, i) => ({ topic: TOPIC, key: `${prefix}-${i}`, partition: i % 6, value: "x" })),
    );
    const mine = (records: InRecord[]) => records.filter((r) => r.key?.toString().startsWith(prefix));
    const a = read({ groupId });
    await ours(a, prefix, 60);
    // Half of each partition is done: the other half is what a rebalance must hand out again.
    const start = new Map(from.map((p) => [p.partition, p.offset]));
    const half = [...start].map(([partition, offset]) => ({ topic: TOPIC, partition, offset: offset + 5n }));
    await a.consumer.commit(half);
    const seen = a.records.length;
    const b = read({ groupId });
    try {
      const expected = (partitions: { partition: number }[]) =>
        deliveries
          .filter((d) => partitions.some((p) => p.partition === d.partition))
          .filter((d) => d.offset >= (start.get(d.partition) ?? 0n) + 5n)
          .map((d) => `${d.partition}:${d.offset}`);
      const missing = (reading: Reading, records: InRecord[]) => {
        const got = new Set(mine(records).map((r) => `${r.partition}:${r.offset}`));
        return expected(reading.assignment ?? []).filter((at) => !got.has(at));
      };
      await pollUntil("each member reading the partitions it holds from the committed offset", async () => {
        const [pa, pb] = [a.assignment ?? [], b.assignment ?? []];
        if (pa.length === 0 || pb.length === 0 || pa.length + pb.length !== 6) return undefined;
        return missing(a, a.records.slice(seen)).length === 0 && missing(b, b.records).length === 0 ? true : undefined;
      }).catch((error: Error) => {
        const kept = a.assignment?.map((p) => p.partition).join(",");
        throw new Error(
          `${error.message}; the first member holds [${kept}] and missed ${missing(a, a.records.slice(seen))}`,
        );
      });
    } finally {
      await Promise.all([a.consumer.close(), b.consumer.close()]);
    }
  });

  test("exclusive members: one takes every partition, the other stands by and takes over", async () => {
    const groupId = group(`${name}-exclusive`);
    const from = await snapshot(TOPIC);
    const a = read({ groupId, startAt: from, exclusive: true });
    await holdsAll(a, "all six on the first member");
    const b = read({ groupId, startAt: from, exclusive: true });
    try {
      const [active, standby] = await pollUntil("one active member and one standing by", async () => {
        // Both have seen the rebalance once the standby has its (empty) assignment and the active one has all.
        if (b.assignment === undefined) return undefined;
        const sizes = [a.assignment?.length, b.assignment.length];
        if (sizes[0] === 6 && sizes[1] === 0) return [a, b];
        if (sizes[0] === 0 && sizes[1] === 6) return [b, a];
        return undefined;
      });
      const prefix = `${RUN}-${name}-exclusive`;
      await produce(Array.from({ length: 12 }, (_, i) => ({ topic: TOPIC, key: `${prefix}-${i}`, value: "x" })));
      expect(await ours(active, prefix, 12)).toHaveLength(12);
      expect(standby.records.filter((r) => r.key?.toString().startsWith(prefix))).toHaveLength(0);
      // The rebalance revoked and re-assigned every partition: reading still starts where it was told to, not
      // at the beginning of the topic (which the tests above filled).
      const start = new Map(from.map((p) => [p.partition, p.offset]));
      const before = active.records.filter((r) => r.offset < (start.get(r.partition) ?? 0n));
      expect(before.map((r) => `${r.partition}:${r.offset}`)).toEqual([]);
      await active.consumer.close();
      await pollUntil("the standby taking every partition", async () =>
        standby.assignment?.length === 6 ? true : undefined,
      );
    } finally {
      await Promise.all([a.consumer.close(), b.consumer.close()]);
    }
  });

  describe.skipIf(!localStack)("over SASL_SSL", () => {
    const secure = (overrides: Record<string, string> = {}): KafkaConnection =>
      testKafka({
        KAFKA_BROKERS: LOCAL_SASL_SSL.broker,
        KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
        KAFKA_SASL_USERNAME: LOCAL_SASL_SSL.username,
        KAFKA_SASL_PASSWORD: LOCAL_SASL_SSL.password,
        KAFKA_TLS: "on",
        KAFKA_TLS_CA_FILE: LOCAL_SASL_SSL.caFile,
        ...overrides,
      });

    // A system librdkafka before 2.6.1 (Debian's is 2.0.2) cannot do SCRAM with a Kafka 4 broker; it must say so.
    const scramRefused = name === "librdkafka" && scramFailsOnKafka4();

    test.each(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])("produces and consumes with %s", async (mechanism) => {
      const on = secure({ KAFKA_SASL_MECHANISM: mechanism });
      if (scramRefused && mechanism !== "PLAIN") {
        await expect(produce([{ topic: TOPIC, key: RUN, value: mechanism }], on)).rejects.toThrow(/older than 2\.6\.1/);
        return;
      }
      const from = await snapshot(TOPIC);
      const prefix = `${RUN}-${name}-sasl-${mechanism}`;
      const [delivery] = await produce([{ topic: TOPIC, key: prefix, value: mechanism }], on);
      const reading = read({ groupId: group(`${name}-sasl-${mechanism}`), startAt: from }, on);
      try {
        const [record] = await ours(reading, prefix, 1);
        expect(record).toMatchObject({ partition: delivery?.partition, offset: delivery?.offset });
      } finally {
        await reading.consumer.close();
      }
    });

    test("a wrong password fails the producer and the consumer with an access error naming the settings", async () => {
      const on = secure({ KAFKA_SASL_PASSWORD: "not-the-password", KAFKA_SASL_MECHANISM: "PLAIN" });
      const producer = client.createProducer({ kafka: on, clientId: `contract-${name}` });
      const sent = producer.send([{ topic: TOPIC, key: RUN, value: "never" }]);
      await expect(sent).rejects.toBeInstanceOf(KafkaAccessError);
      await expect(sent).rejects.toThrow(/rejected user "pipeline" \(PLAIN\): wrong username or password/);
      await expect(sent).rejects.not.toThrow(/not-the-password/);
      await producer.close();

      const reading = read({ groupId: group(`${name}-refused`) }, on);
      await expect(reading.done).rejects.toBeInstanceOf(KafkaAccessError);
      await reading.consumer.close();
    });
  });
});

/** The admin calls a stage makes, on librdkafka's admin API, in a namespace of their own. */
describe("librdkafka's admin calls", () => {
  const kafka = { ...testKafka(), namespace: `admin-${RUN}` };
  afterAll(() => deleteNamespace(kafka));

  test("the probe answers for the broker and not for a closed port", async () => {
    expect(await probeBroker(kafka, 5_000)).toBe(true);
    expect(await probeBroker({ brokers: ["127.0.0.1:1"] }, 1_000)).toBe(false);
  });

  test("topics are created once, in the order asked, with their partitions; ends of a new topic are 0", async () => {
    expect(
      await createTopics(kafka, [
        { name: "b", partitions: 3 },
        { name: "a", partitions: 2 },
      ]),
    ).toEqual(["b", "a"]);
    // Asked at once: the new partitions' leaders may not be elected yet.
    expect(await listEndOffsets(kafka, "b")).toEqual(
      [0, 1, 2].map((partition) => ({ topic: "b", partition, offset: 0n })),
    );
    expect(
      await createTopics(kafka, [
        { name: "a", partitions: 2 },
        { name: "c", partitions: 1 },
      ]),
    ).toEqual(["c"]);
    expect(await listEndOffsets(kafka, "missing")).toEqual([]);
  });

  test("end offsets count what was produced; committed offsets are what the group committed", async () => {
    await createTopics(kafka, [{ name: "d", partitions: 2 }]);
    const producer = kafkaClient("librdkafka").createProducer({ kafka, clientId: "admin-test" });
    try {
      await producer.send([0, 0, 1].map((partition) => ({ topic: "d", key: "k", partition, value: "x" })));
    } finally {
      await producer.close();
    }
    expect(await listEndOffsets(kafka, "d")).toEqual([
      { topic: "d", partition: 0, offset: 2n },
      { topic: "d", partition: 1, offset: 1n },
    ]);
    const groupId = "g";
    expect(await listCommittedOffsets(kafka, groupId)).toEqual([]);
    await seekGroup(kafka, groupId, [{ topic: "d", partition: 0, offset: 1n }]);
    expect(await listCommittedOffsets(kafka, groupId)).toEqual([{ topic: "d", partition: 0, offset: 1n }]);
  });
});
