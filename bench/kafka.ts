/**
 * `bun run bench:kafka`: the Kafka clients side by side on the real broker, in one run. Each client produces
 * `--events` small JSON records (acks=all, idempotent, keyed like the stages' records) and then consumes them
 * back through a fresh group; each rate is printed beside the faster client's, the ceiling of that run.
 * `--soak` / BENCH_SOAK_S seconds more of produce-and-consume per client samples the process's RSS every
 * second, to show memory staying flat under load (0, the default, skips it); BENCH_SOAK_CLIENTS (a comma list,
 * default both) picks the clients soaked. Each client also sends one record per send at a fixed rate for a few
 * seconds, as a lightly loaded stage does and as ingest does at 5k single-event requests/s: the CPU that costs
 * and the time each send takes. Everything runs in a Kafka namespace of its own, deleted at the end.
 *
 * Exits 0 when it ran (it reports, it does not assert); 1 when it cannot run.
 */
import { KAFKA_CLIENTS, type KafkaClientName, parseConfig } from "../shared/config.ts";
import {
  brokerAnswers,
  endOffsets,
  type KafkaConnection,
  kafkaClient,
  kafkaConnection,
  type OutRecord,
} from "../shared/kafka.ts";
import { dlqOf, TOPICS } from "../shared/topics.ts";
import { inNamespace } from "../tools/harness.ts";
import { BenchError, int, mib, numberOptions, printFigures, printTable, runBench } from "./cli.ts";

/** A topic no stage reads; the bench's records are told apart by their run id. */
const TOPIC = dlqOf(TOPICS.loginsStats);
const CHUNK = 1_000;
const IN_FLIGHT = 8;

/** `count` records of about 100 bytes of JSON, keyed by one of 1,000 users. */
function records(run: string, count: number): OutRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    topic: TOPIC,
    key: `user-${i % 1000}`,
    value: JSON.stringify({ run, i, user_id: `user-${i % 1000}`, timestamp: "2024-01-01T00:00:00Z", lat: 1.5 }),
  }));
}

/** Produces `count` records with `name`'s producer, `IN_FLIGHT` sends of `CHUNK` at a time; records/s. */
async function produceRate(kafka: KafkaConnection, name: KafkaClientName, run: string, count: number) {
  const producer = kafkaClient(name).createProducer({ kafka, clientId: `bench-${name}` });
  const all = records(run, count);
  const started = performance.now();
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (next < all.length) {
          const chunk = all.slice(next, next + CHUNK);
          next += CHUNK;
          await producer.send(chunk);
        }
      }),
    );
  } finally {
    await producer.close();
  }
  return count / ((performance.now() - started) / 1000);
}

/** Single-record sends offered at `rate` per second from `senders` concurrent callers, for `ms`. */
interface Pacing {
  rate: number;
  senders: number;
  ms: number;
}

/**
 * One record per send, offered at a fixed rate by concurrent senders (as a stage or ingest's requests send):
 * the share of a core the process used, and each send's p50 and p99. A sender awaits its send before the next
 * one, but each latency counts from when the send was due, not from when it went out: a slow client's backlog
 * shows in its latency instead of quietly lowering the offered rate.
 */
async function paced(kafka: KafkaConnection, name: KafkaClientName, { rate, senders, ms }: Pacing) {
  const producer = kafkaClient(name).createProducer({ kafka, clientId: `bench-${name}` });
  try {
    await producer.send(records("warm-up", 1));
    const took: number[] = [];
    const cpu = process.cpuUsage();
    const started = performance.now();
    const gap = (senders * 1000) / rate;
    await Promise.all(
      Array.from({ length: senders }, async (_, sender) => {
        for (let due = started + (sender * 1000) / rate; due < started + ms; due += gap) {
          // The pacing of the offered load, not a synchronisation.
          if (due > performance.now()) await Bun.sleep(due - performance.now());
          // From when it was due; from when it went out if the timer woke a little early.
          const from = Math.min(due, performance.now());
          await producer.send(records(name, 1));
          took.push(performance.now() - from);
        }
      }),
    );
    const used = process.cpuUsage(cpu);
    took.sort((a, b) => a - b);
    const at = (q: number) => (took[Math.floor(q * (took.length - 1))] ?? 0).toFixed(2);
    const wall = (performance.now() - started) * 1000;
    return [
      name,
      `${int(rate)} from ${senders}`,
      int(took.length / ((performance.now() - started) / 1000)),
      `${(((used.user + used.system) / wall) * 100).toFixed(1)}%`,
      at(0.5),
      at(0.99),
    ];
  } finally {
    await producer.close();
  }
}

/** A lightly loaded stage, and single-event ingest at the end-to-end bench's 5k events/s. */
const PACINGS: Pacing[] = [
  { rate: 250, senders: 1, ms: 4_000 },
  { rate: 5_000, senders: 64, ms: 4_000 },
];

/** Reads `count` records from `from` with `name`'s consumer in a fresh group; records/s from the first batch. */
async function consumeRate(
  kafka: KafkaConnection,
  name: KafkaClientName,
  from: Awaited<ReturnType<typeof endOffsets>>,
  count: number,
) {
  const consumer = kafkaClient(name).createConsumer({
    kafka,
    groupId: `bench-kafka-${crypto.randomUUID()}`,
    clientId: `bench-${name}`,
    topics: [TOPIC],
    startAt: from,
  });
  let read = 0;
  let started = 0;
  try {
    for await (const batch of consumer.batches()) {
      started ||= performance.now();
      read += batch.length;
      if (read >= count) break;
    }
  } finally {
    await consumer.close();
  }
  return read / ((performance.now() - started) / 1000);
}

async function main(): Promise<number> {
  const { events, soak } = numberOptions({
    events: { env: "BENCH_EVENTS", fallback: 200_000, min: 1 },
    soak: { env: "BENCH_SOAK_S", fallback: 0 },
  });
  const env = parseConfig(process.env);
  const soaked = (process.env.BENCH_SOAK_CLIENTS ?? KAFKA_CLIENTS.join(",")).split(",").map((name) => name.trim());
  const unknown = soaked.filter((name) => !(KAFKA_CLIENTS as readonly string[]).includes(name));
  if (unknown.length > 0)
    throw new BenchError(`BENCH_SOAK_CLIENTS: ${unknown.join(", ")} is not one of ${KAFKA_CLIENTS.join(", ")}`);
  const broker = kafkaConnection(env);
  if (!(await brokerAnswers(broker, 5_000))) throw new BenchError(`no broker at ${broker.brokers.join(",")}`);
  return inNamespace(`bench-kafka-${crypto.randomUUID().slice(0, 8)}`, (kafka) =>
    measure(kafka, events, soak, soaked as KafkaClientName[]),
  );
}

async function measure(kafka: KafkaConnection, events: number, soak: number, soaked: KafkaClientName[]) {
  const produced: { name: string; rate: number }[] = [];
  const consumed: { name: string; rate: number }[] = [];
  for (const name of KAFKA_CLIENTS) {
    const from = await endOffsets(kafka, TOPIC);
    produced.push({ name, rate: await produceRate(kafka, name, crypto.randomUUID(), events) });
    consumed.push({ name, rate: await consumeRate(kafka, name, from, events) });
  }
  const byRate = (a: { rate: number }, b: { rate: number }) => b.rate - a.rate;
  const [fastProduce, ...slowProduce] = produced.sort(byRate) as [(typeof produced)[0]];
  const [fastConsume, ...slowConsume] = consumed.sort(byRate) as [(typeof consumed)[0]];
  console.log(`${int(events)} records of ~110 bytes, acks=all, idempotent, to ${TOPIC}`);
  printFigures("records", "produced/s", [fastProduce, ...slowProduce]);
  printFigures("records", "consumed/s", [fastConsume, ...slowConsume]);
  const light = [["client", "offered/s from senders", "sends/s", "CPU (of a core)", "p50 ms", "p99 ms"]];
  for (const pacing of PACINGS) for (const name of KAFKA_CLIENTS) light.push(await paced(kafka, name, pacing));
  console.log("one record per send, at a fixed rate from concurrent senders, for 4 s each");
  printTable(light);

  if (soak > 0) {
    const rows = [["client", "RSS at start", "RSS at end", "max RSS", "records produced+consumed"]];
    for (const name of soaked) {
      const samples: number[] = [];
      const sampler = setInterval(() => samples.push(process.memoryUsage.rss()), 1000);
      const until = Date.now() + soak * 1000;
      let moved = 0;
      while (Date.now() < until) {
        const from = await endOffsets(kafka, TOPIC);
        await produceRate(kafka, name, crypto.randomUUID(), 50_000);
        await consumeRate(kafka, name, from, 50_000);
        moved += 100_000;
      }
      clearInterval(sampler);
      rows.push([name, mib(samples[0] ?? 0), mib(samples.at(-1) ?? 0), mib(Math.max(...samples)), int(moved)]);
    }
    console.log(`soak: ${soak} s per client, RSS sampled every second`);
    printTable(rows);
  }
  return 0;
}

await runBench(main);
