/**
 * The behaviour every sink owes persist, checked the same way for each store against the real broker and the real
 * store: records produced straight to a topic the sink stores are there exactly once, after a replay of the
 * whole group, after persist is SIGKILLed in the middle of a stream, after an outage of the store, around
 * poison records, and, for the cdc sinks, when records are published again as capture does after a crash. A sink's test file describes how to make its records and how to read what it stored, then calls
 * {@link describeSinkConformance}; nothing else differs between stores.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { SINKS, type SinkName } from "../../persist/sinks.ts";
import { createProducer, groupLag, type OutRecord, type Position, seekGroup } from "../../shared/kafka.ts";
import { createLogger } from "../../shared/log.ts";
import type { TopicName } from "../../shared/topics.ts";
import { groupOf } from "../../tools/harness.ts";
import {
  expectDeadLettered,
  pollUntil,
  type Stage,
  spawnStage,
  startGroupAtEnd,
  testConfig,
  testKafka,
} from "../support.ts";

/** A sink under test: how to reach its store, what to produce for it, and how to read back what it kept. */
export interface SinkConformance {
  /** The `PERSIST_SINK` name. */
  sink: SinkName;
  /** Extra environment for persist (the store's address, say). */
  env?: Record<string, string>;
  /** A topic the sink stores, which the records go to. */
  topic: TopicName;
  /**
   * The `i`-th record of a series, and the identity the store keeps it under. Identities are distinct per
   * `series`, and contain it, so that `stored` can find a series.
   */
  record: (series: string, i: number) => { key: string; value: string; headers?: Record<string, string>; id: string };
  /**
   * The identities of `series` the store holds, one entry per stored row, document or line, so that a record
   * stored twice shows twice.
   */
  stored: (series: string) => Promise<string[]>;
  /** A record the topic's schema rejects, which persist must set aside in the DLQ. */
  violation: (series: string) => string;
  /** Forgets the positions the store keeps, so that a replay reaches the store itself; only where it keeps any. */
  forgetPositions?: () => Promise<void>;
  /** Stops and starts the store, for the outage case; left out where the store cannot be stopped here. */
  outage?: { stop: () => Promise<void>; start: () => Promise<void> };
  /**
   * The records carry capture's source positions (`cdc.position`): the same records published again at new
   * offsets, as capture does after a crash, must be stored once, and the records after them all.
   */
  republished?: boolean;
}

/**
 * Registers the conformance tests for one sink.
 *
 * @example
 * describeSinkConformance({
 *   sink: "postgres",
 *   topic: TOPICS.locationsEnriched,
 *   record: (series, i) => ({ key: `${series}-user`, value: JSON.stringify(location(series, i)), id: `${series}-${i}` }),
 *   stored: (series) => eventIds(series),
 *   violation: (series) => JSON.stringify({ ...location(series, 0), lat: 123 }),
 * });
 */
export function describeSinkConformance(target: SinkConformance): void {
  const run = crypto.randomUUID().slice(0, 8);
  const kafka = testKafka();
  const env = { PERSIST_SINK: target.sink, ...target.env };
  const group = groupOf("persist", { ...process.env, ...env }) as string;
  const producer = createProducer({ kafka, clientId: `test-sink-${target.sink}` });
  // The topics persist reads for this sink, from the sink itself (building it connects to nothing): a replay is
  // over once the group has caught up with all of them.
  const { topics } = SINKS[target.sink]({ env: testConfig(env), log: createLogger("test", "silent"), group });
  let persist: Stage;
  /** Where the group started, at the end of every topic: a replay goes back there, not to a shared backlog. */
  let start: Position[];

  const seriesOf = (name: string) => `${run}-${name}`;
  const records = (series: string, from: number, to: number): OutRecord[] =>
    Array.from({ length: to - from }, (_, i) => {
      const { key, value, headers } = target.record(series, from + i);
      return { topic: target.topic, key, value, ...(headers && { headers }) };
    });
  const ids = (series: string, count: number) =>
    Array.from({ length: count }, (_, i) => target.record(series, i).id).sort();

  /** Waits until `count` identities of `series` are stored, then checks they are exactly the produced ones. */
  async function expectStored(series: string, count: number, timeoutMs = 90_000) {
    const stored = await pollUntil(
      `${count} records of ${series} in the ${target.sink} sink`,
      async () => {
        const found = await target.stored(series);
        return found.length >= count ? found : undefined;
      },
      timeoutMs,
    );
    expect([...stored].sort()).toEqual(ids(series, count));
  }

  /** Waits until persist committed everything of its topics: what it read is in the store. */
  const caughtUp = () =>
    pollUntil(
      "persist to catch up with its topics",
      async () => ((await groupLag(kafka, group, topics)) === 0 ? true : undefined),
      120_000,
    );

  /** Checks that the store holds exactly the first `count` records of `series`, once each. */
  async function expectExactly(series: string, count: number) {
    expect([...(await target.stored(series))].sort()).toEqual(ids(series, count));
  }

  /**
   * Restarts persist with the group's offsets back where the suite started (after `meanwhile`, while it is
   * stopped): Kafka replays every record of this suite. Checks that the records of `series` were indeed read again.
   */
  async function replayAll(series: string, count: number, meanwhile?: () => Promise<void>) {
    await persist.stop();
    await seekGroup(kafka, group, start);
    await meanwhile?.();
    persist = await spawnStage("persist", env);
    await caughtUp();
    expect(await persist.metric("records_in_total", { topic: target.topic })).toBeGreaterThanOrEqual(count);
    await expectStored(series, count);
  }

  describe(`the ${target.sink} sink`, () => {
    beforeAll(async () => {
      start = await startGroupAtEnd(group, topics);
      persist = await spawnStage("persist", env);
    });
    afterAll(async () => {
      await persist?.stop();
      await producer.close();
    });

    test("every record is stored once", async () => {
      const series = seriesOf("main");
      await producer.send(records(series, 0, 2_000));
      await expectStored(series, 2_000);
      expect(await persist.ready()).toBe(200);
    }, 120_000);

    test("a replay of everything since the suite began stores nothing twice", async () => {
      await replayAll(seriesOf("main"), 2_000);
    }, 240_000);

    if (target.forgetPositions) {
      const forget = target.forgetPositions;
      test("a replay with the store's own positions forgotten too stores nothing twice", async () => {
        await replayAll(seriesOf("main"), 2_000, forget);
      }, 240_000);
    }

    test("SIGKILL of persist in the middle of a stream loses and duplicates nothing", async () => {
      const series = seriesOf("crash");
      await producer.send(records(series, 0, 5_000));
      await pollUntil("records to start arriving", async () =>
        (await target.stored(series)).length > 0 ? true : undefined,
      );
      expect(await persist.stop("SIGKILL")).not.toBe(0);
      await producer.send(records(series, 5_000, 10_000));
      persist = await spawnStage("persist", env);
      await expectStored(series, 10_000);
    }, 180_000);

    if (target.outage) {
      const { stop, start } = target.outage;
      test("an outage of the store delays records, loses and duplicates none, and shows on /readyz", async () => {
        const series = seriesOf("outage");
        await producer.send(records(series, 0, 1_000));
        await expectStored(series, 1_000);
        await stop();
        try {
          await producer.send(records(series, 1_000, 2_000));
          await pollUntil("persist to report not ready", async () =>
            (await persist.ready()) === 503 ? true : undefined,
          );
        } finally {
          await start();
        }
        await expectStored(series, 2_000);
        await pollUntil("persist to report ready", async () => ((await persist.ready()) === 200 ? true : undefined));
      }, 180_000);
    }

    if (target.republished) {
      /**
       * Stores 1,000 records of a series, then publishes its records from `from` on again (as capture after a
       * crash: the tail the broker had) and 500 new ones after them, with persist SIGKILLed and restarted in
       * between when `restart`; the store must hold the 1,500 once each.
       */
      const publishAgain = async (name: string, from: number, restart: boolean) => {
        const series = seriesOf(name);
        await producer.send(records(series, 0, 1_000));
        await expectStored(series, 1_000);
        await caughtUp();
        // Everything is committed: the repeats are new to Kafka, and only the store can tell them from changes.
        if (restart) expect(await persist.stop("SIGKILL")).not.toBe(0);
        await producer.send([...records(series, from, 1_000), ...records(series, 1_000, 1_500)]);
        if (restart) persist = await spawnStage("persist", env);
        await expectStored(series, 1_500);
        await caughtUp();
        await expectExactly(series, 1_500);
      };

      test("records published again with their source positions are stored once, and newer ones all", async () => {
        await publishAgain("republished", 600, false);
      }, 180_000);

      test("after a restart of persist, records published again are still stored once", async () => {
        await publishAgain("republished-restart", 0, true);
      }, 180_000);
    }

    test("poison records go to the DLQ with their context, and the records after them are stored", async () => {
      const series = seriesOf("poison");
      const [key] = records(series, 0, 1).map((record) => String(record.key));
      const [notJson, invalid] = await expectDeadLettered(
        target.topic,
        key as string,
        target.violation(series),
        "persist",
        async () => {
          await producer.send(records(series, 0, 1));
          await expectStored(series, 1);
        },
      );
      expect(notJson).toContain("not JSON");
      expect(invalid).toBeTruthy();
    }, 120_000);
  });
}
