/** The ingest API against the real broker: every status code, and what lands on the raw topics. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { type InRecord, type Position, partitionFor } from "../shared/kafka.ts";
import { RawLocation, RawLogin, RawVehicle } from "../shared/schemas.ts";
import { TOPICS } from "../shared/topics.ts";
import { startStage } from "../tools/harness.ts";
import { pollUntil, readTopic, snapshot, startIngest, testConfig } from "./support.ts";

const run = crypto.randomUUID().slice(0, 8);
const location = (i: number, extra: object = {}) => ({
  user_id: `user-${run}-${i % 37}`,
  timestamp: 1694479551 + i,
  lat: -31.677696,
  long: -65.030317,
  ...extra,
});

/** The records of `ids` on `topic` since `before`, each with its event as `schema` decodes it, once all are there. */
async function landed<E extends { event_id?: string }>(
  topic: string,
  schema: v.GenericSchema<unknown, E>,
  before: Position[],
  ids: Set<string>,
): Promise<{ record: InRecord; event: E }[]> {
  const ours = (records: InRecord[]) =>
    records
      .map((record) => ({ record, event: v.parse(schema, JSON.parse(record.value.toString())) }))
      // Ingest sets every event_id: an event without one is not one of ours.
      .filter(({ event }) => ids.has(event.event_id ?? ""));
  return ours(await readTopic(topic, before, (all) => ours(all).length >= ids.size));
}

let ingest: Awaited<ReturnType<typeof startIngest>>;
beforeAll(async () => {
  ingest = await startIngest();
});
afterAll(() => ingest.stop());

describe("POST /v1/locations and /v1/logins", () => {
  test("202 with the event ids once the broker has the events", async () => {
    const before = await snapshot(TOPICS.loginsRaw);
    const login = { user_id: `login-${run}`, timestamp: "2024-01-31T12:00:00+01:00", device_type: "ios" };
    const response = await ingest.post("/v1/logins", JSON.stringify(login));
    expect(response.status).toBe(202);
    const body = (await response.json()) as { accepted: number; event_ids: string[] };
    expect(body.accepted).toBe(1);
    expect(body.event_ids).toHaveLength(1);

    const [record] = await readTopic(TOPICS.loginsRaw, before, (records) =>
      records.some((r) => r.key?.toString() === login.user_id),
    ).then((records) => records.filter((r) => r.key?.toString() === login.user_id));
    const event = v.parse(RawLogin, JSON.parse(String(record?.value)));
    expect(event.event_id).toBe(body.event_ids[0] as string);
    expect(event.timestamp).toBe("2024-01-31T11:00:00.000Z");
    expect(event.device_type).toBe("ios");
  });

  test("a 1,000-event NDJSON body lands keyed by user_id, each on the partition its key maps to", async () => {
    const before = await snapshot(TOPICS.locationsRaw);
    const events = Array.from({ length: 1000 }, (_, i) => location(i));
    const body = events.map((event) => JSON.stringify(event)).join("\n");
    const response = await ingest.post("/v1/locations", body, { "content-type": "application/x-ndjson" });
    expect(response.status).toBe(202);
    const { event_ids } = (await response.json()) as { event_ids: string[] };
    expect(new Set(event_ids).size).toBe(1000);

    const records = await landed(TOPICS.locationsRaw, RawLocation, before, new Set(event_ids));
    expect(records).toHaveLength(1000);
    const partitions = testConfig().TOPIC_PARTITIONS;
    for (const { record, event } of records) {
      expect(record.key?.toString()).toBe(event.user_id);
      expect(record.partition).toBe(partitionFor(event.user_id, partitions));
    }
    expect(new Set(records.map(({ record }) => record.partition)).size).toBeGreaterThan(1);
  });

  test("a client-given event_id is kept", async () => {
    const before = await snapshot(TOPICS.locationsRaw);
    const eventId = `client-${run}-1`;
    const response = await ingest.post("/v1/locations", JSON.stringify([location(1, { event_id: eventId })]));
    expect(response.status).toBe(202);
    expect(((await response.json()) as { event_ids: string[] }).event_ids).toEqual([eventId]);
    const records = await readTopic(TOPICS.locationsRaw, before, (all) =>
      all.some((r) => r.value.toString().includes(eventId)),
    );
    const event = JSON.parse(String(records.find((r) => r.value.toString().includes(eventId))?.value));
    expect(event.event_id).toBe(eventId);
  });

  test("400 lists every bad event by index and path, and nothing is produced", async () => {
    const before = await snapshot(TOPICS.locationsRaw);
    const body = [location(1), location(2, { lat: 91 }), location(3, { timestamp: "yesterday", extra: 1 })];
    const response = await ingest.post("/v1/locations", JSON.stringify(body));
    expect(response.status).toBe(400);
    const { issues } = (await response.json()) as { issues: { index: number; path: string }[] };
    expect(issues.map(({ index, path }) => `${index}:${path}`).sort()).toEqual(["1:lat", "2:extra", "2:timestamp"]);
    // Nothing from the rejected body may reach the topic: a later good event is the next record on its partition.
    const marker = location(4, { event_id: `marker-${run}` });
    expect((await ingest.post("/v1/locations", JSON.stringify(marker))).status).toBe(202);
    const records = await readTopic(TOPICS.locationsRaw, before, (all) =>
      all.some((r) => r.value.toString().includes(`marker-${run}`)),
    );
    expect(records.filter((r) => r.value.toString().includes(`user-${run}-`)).map((r) => r.value.toString())).toEqual([
      expect.stringContaining(`marker-${run}`),
    ]);
  });

  test("400 names malformed JSON and the bad NDJSON line", async () => {
    const json = await ingest.post("/v1/locations", "{not json");
    expect(json.status).toBe(400);
    expect(((await json.json()) as { error: string }).error).toContain("not valid JSON");

    const ndjson = [JSON.stringify(location(1)), "{oops", JSON.stringify(location(2))].join("\n");
    const bad = await ingest.post("/v1/locations", ndjson, { "content-type": "application/x-ndjson" });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: string }).error).toContain("line 2");
  });

  test("415 for other content types and for compressed bodies", async () => {
    const response = await ingest.post("/v1/locations", JSON.stringify(location(1)), { "content-type": "text/plain" });
    expect(response.status).toBe(415);
    const gzipped = await fetch(`${ingest.url}/v1/locations`, {
      method: "POST",
      headers: { "content-type": "application/json", "content-encoding": "gzip" },
      body: Bun.gzipSync(JSON.stringify(location(1))),
    });
    expect(gzipped.status).toBe(415);
    expect(((await gzipped.json()) as { error: string }).error).toContain("gzip");
  });

  test("404 for unknown routes", async () => {
    expect((await ingest.post("/v1/nope", "{}")).status).toBe(404);
  });
});

describe("POST /v1/vehicles", () => {
  const report = (i: number, extra: object = {}) => ({
    vehicle_id: `van-${run}-${i % 23}`,
    timestamp: 1694479551 + i,
    lat: -31.41 + i / 10_000,
    long: -64.18,
    speed: (i % 120) + 0.5,
    ...(i % 3 !== 0 && { heading: (i * 7) % 360 }),
    ...(i % 2 === 0 && { metadata: { driver: `d-${i % 5}`, odometer_km: 80_000 + i } }),
    ...extra,
  });

  test("202, and each report lands on vehicles.raw keyed by vehicle_id, on its key's partition, as sent", async () => {
    const before = await snapshot(TOPICS.vehiclesRaw);
    const reports = Array.from({ length: 300 }, (_, i) => report(i));
    const body = reports.map((event) => JSON.stringify(event)).join("\n");
    const response = await ingest.post("/v1/vehicles", body, { "content-type": "application/x-ndjson" });
    expect(response.status).toBe(202);
    const { accepted, event_ids } = (await response.json()) as { accepted: number; event_ids: string[] };
    expect(accepted).toBe(300);

    const order = new Map(event_ids.map((id, i) => [id, i]));
    const records = await landed(TOPICS.vehiclesRaw, RawVehicle, before, new Set(event_ids));
    expect(records).toHaveLength(300);
    const partitions = testConfig().TOPIC_PARTITIONS;
    for (const { record, event } of records) {
      const sent = reports[order.get(event.event_id ?? "") as number] as ReturnType<typeof report>;
      expect(record.key?.toString()).toBe(sent.vehicle_id);
      expect(record.partition).toBe(partitionFor(sent.vehicle_id, partitions));
      const { event_id: _, ingested_at: __, ...fields } = event;
      expect(fields).toEqual({ ...sent, timestamp: new Date(sent.timestamp * 1000).toISOString() });
    }
    expect(new Set(records.map(({ record }) => record.partition)).size).toBeGreaterThan(1);
  });

  test("400 lists every bad report by index and path, with what is wrong, and nothing is produced", async () => {
    const before = await snapshot(TOPICS.vehiclesRaw);
    const tooMany = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i]));
    const body = [
      report(0),
      report(1, { speed: 501 }),
      report(2, { heading: 360 }),
      report(3, { metadata: { trailer: { id: "t-1" } } }),
      report(4, { metadata: tooMany }),
      report(5, { metadata: { ["k".repeat(65)]: "x" } }),
      report(6, { user_id: "u-1" }),
    ];
    const response = await ingest.post("/v1/vehicles", JSON.stringify(body));
    expect(response.status).toBe(400);
    const { issues, issue_count } = (await response.json()) as { issues: object[]; issue_count: number };
    expect(issues).toEqual([
      { index: 1, path: "speed", message: "must be between 0 and 500 km/h" },
      { index: 2, path: "heading", message: "must be at least 0 and less than 360 (degrees clockwise from north)" },
      { index: 3, path: "metadata.trailer", message: "must be a string or a number: metadata is flat" },
      { index: 4, path: "metadata", message: "must have at most 16 keys" },
      { index: 5, path: `metadata.${"k".repeat(65)}`, message: "key must be at most 64 characters" },
      { index: 6, path: "user_id", message: "is not a known field" },
    ]);
    expect(issue_count).toBe(6);
    // A location is not a vehicle report: the route takes only its own events.
    const location = { user_id: `user-${run}`, timestamp: 1694479551, lat: 1, long: 2 };
    expect((await ingest.post("/v1/vehicles", JSON.stringify(location))).status).toBe(400);

    // Nothing from the rejected bodies reached the topic: a later good report is the run's only new record.
    const marker = report(7, { event_id: `vehicle-marker-${run}` });
    expect((await ingest.post("/v1/vehicles", JSON.stringify(marker))).status).toBe(202);
    const records = await readTopic(TOPICS.vehiclesRaw, before, (all) =>
      all.some((r) => r.value.toString().includes(`vehicle-marker-${run}`)),
    );
    expect(records.filter((r) => r.key?.toString().startsWith(`van-${run}-`)).map((r) => r.value.toString())).toEqual([
      expect.stringContaining(`vehicle-marker-${run}`),
    ]);
  });
});

describe("limits", () => {
  test("413 over the body limit and over the event cap", async () => {
    const small = await startIngest({ INGEST_BODY_LIMIT_BYTES: "2048", INGEST_MAX_EVENTS: "5" });
    try {
      const big = JSON.stringify(Array.from({ length: 40 }, (_, i) => location(i)));
      expect(big.length).toBeGreaterThan(2048);
      const tooBig = await small.post("/v1/locations", big);
      expect(tooBig.status).toBe(413);
      expect(((await tooBig.json()) as { error: string }).error).toContain("2048 bytes");

      const tooMany = await small.post(
        "/v1/locations",
        JSON.stringify(Array.from({ length: 6 }, (_, i) => location(i))),
      );
      expect(tooMany.status).toBe(413);
      expect((await small.post("/v1/locations", JSON.stringify([location(1)]))).status).toBe(202);
    } finally {
      await small.stop();
    }
  });

  test("401 without a valid key when keys are configured", async () => {
    const guarded = await startIngest({ INGEST_API_KEYS: "key-one, key-two" });
    try {
      const body = JSON.stringify(location(1));
      expect((await guarded.post("/v1/locations", body)).status).toBe(401);
      expect((await guarded.post("/v1/locations", body, { authorization: "Bearer wrong" })).status).toBe(401);
      expect((await guarded.post("/v1/locations", body, { authorization: "Bearer key-two" })).status).toBe(202);
      expect((await fetch(`${guarded.url}/healthz`)).status).toBe(200);
    } finally {
      await guarded.stop();
    }
  });

  test("429 with Retry-After over the per-key rate", async () => {
    const limited = await startIngest({ INGEST_API_KEYS: "a,b", INGEST_RATE_LIMIT_PER_SECOND: "1" });
    try {
      const body = JSON.stringify(location(1));
      const statuses = [];
      let retryAfter: string | null = null;
      // Five requests inside at most two one-second windows: at least one window sees two of them.
      for (let i = 0; i < 5; i++) {
        const response = await limited.post("/v1/locations", body, { authorization: "Bearer a" });
        statuses.push(response.status);
        if (response.status === 429) retryAfter = response.headers.get("retry-after");
      }
      expect(statuses).toContain(429);
      expect(retryAfter).toMatch(/^\d+$/);
      // The limit is per key: the other key still gets through.
      expect((await limited.post("/v1/locations", body, { authorization: "Bearer b" })).status).toBe(202);
    } finally {
      await limited.stop();
    }
  });

  test("behind a proxy, rates without keys count per client address from X-Forwarded-For", async () => {
    const proxied = await startIngest({ INGEST_RATE_LIMIT_PER_SECOND: "1", INGEST_BEHIND_PROXY: "true" });
    try {
      const body = JSON.stringify(location(1));
      // The proxy appends the real address last; a forged first entry must not buy a fresh limit.
      const from = (chain: string) => proxied.post("/v1/locations", body, { "x-forwarded-for": chain });
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await from(`10.0.0.${i}, 192.0.2.1`)).status);
      expect(statuses).toContain(429);
      expect((await from("192.0.2.2")).status).toBe(202);
    } finally {
      await proxied.stop();
    }
  });

  test("503 with Retry-After when the broker cannot ack before the deadline", async () => {
    const orphan = await startIngest({ KAFKA_BROKERS: "127.0.0.1:1", INGEST_ACK_TIMEOUT_MS: "1000" });
    try {
      // The bound only stops a hang from stalling the suite; the API must answer on its own deadline.
      const response = await fetch(`${orphan.url}/v1/locations`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(location(1)),
        signal: AbortSignal.timeout(15_000),
      });
      expect(response.status).toBe(503);
      expect(response.headers.get("retry-after")).toMatch(/^\d+$/);
      expect((await fetch(`${orphan.url}/readyz`)).status).toBe(503);
    } finally {
      await orphan.stop();
    }
  });
});

describe("operations", () => {
  test("/healthz, /readyz and /metrics", async () => {
    expect((await fetch(`${ingest.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${ingest.url}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${ingest.url}/metrics`)).text();
    expect(metrics).toMatch(/http_requests_total\{route="\/v1\/locations",status="202"/);
    expect(metrics).toMatch(/ingest_events_total\{topic="locations.raw",outcome="accepted"/);
    expect(metrics).toMatch(/http_requests_total\{route="\/v1\/vehicles",status="202"/);
    expect(metrics).toMatch(/ingest_events_total\{topic="vehicles.raw",outcome="accepted"/);
    expect(metrics).toContain("ingest_produce_seconds_bucket");
  });

  test("SIGTERM finishes in-flight work, flushes and exits 0", async () => {
    const logPath = join(tmpdir(), `ingest-sigterm-${crypto.randomUUID()}.log`);
    const stage = await startStage("ingest", {
      mode: "process",
      env: { LOG_LEVEL: "debug" },
      output: logPath,
      waitReady: true,
    });
    const { child } = stage;
    const url = stage.url;
    // Stream the body so the request is provably in flight when the signal lands.
    let body!: ReadableStreamDefaultController<Uint8Array>;
    const lines = Array.from({ length: 500 }, (_, i) => `${JSON.stringify(location(i))}\n`);
    const inFlight = fetch(`${url}/v1/locations`, {
      method: "POST",
      headers: { "content-type": "application/x-ndjson" },
      body: new ReadableStream<Uint8Array>({
        start(controller) {
          body = controller;
        },
      }),
    });
    body.enqueue(new TextEncoder().encode(lines.slice(0, 250).join("")));
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    child.kill("SIGTERM");
    body.enqueue(new TextEncoder().encode(lines.slice(250).join("")));
    body.close();
    expect((await inFlight).status).toBe(202);
    expect(await child.exited).toBe(0);
    const log = await Bun.file(logPath).text();
    // The phases in their fixed order: intake stops before the producer flushes, which is before "stopped".
    const at = (text: string) => log.indexOf(text);
    expect(at('"phase":"stop intake"')).toBeGreaterThan(-1);
    expect(at('"phase":"stop intake"')).toBeLessThan(at('"phase":"flush the producer"'));
    expect(at('"phase":"flush the producer"')).toBeLessThan(at('"msg":"stopped"'));
  });

  test("INGEST_PROCESSES=2: both processes answer on the one port, /metrics covers both, SIGTERM stops both", async () => {
    const logPath = join(tmpdir(), `ingest-processes-${crypto.randomUUID()}.log`);
    const stage = await startStage("ingest", {
      mode: "process",
      env: { LOG_LEVEL: "debug", INGEST_PROCESSES: "2" },
      output: logPath,
      waitReady: true,
    });
    const { child } = stage;
    const workers = await pollUntil("both processes to start", async () => {
      const pids = (await Bun.file(`/proc/${child.pid}/task/${child.pid}/children`).text()).trim().split(/\s+/);
      return pids.length === 2 ? pids.map(Number) : undefined;
    });
    const accepted = (process: string) => stage.metric("ingest_events_total", { outcome: "accepted", process });
    // The kernel spreads new connections over the processes: one request per connection until both took some.
    let i = 0;
    await pollUntil("both processes to accept events", async () => {
      const response = await fetch(`${stage.url}/v1/locations`, {
        method: "POST",
        headers: { "content-type": "application/json", connection: "close" },
        body: JSON.stringify(location(i++)),
      });
      expect(response.status).toBe(202);
      return (await accepted("1")) > 0 && (await accepted("2")) > 0 ? true : undefined;
    });
    // One scrape, whichever process answers it, counts every event either process accepted.
    expect((await accepted("1")) + (await accepted("2"))).toBe(i);

    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    for (const pid of workers) expect(() => process.kill(pid, 0)).toThrow();
    const log = await Bun.file(logPath).text();
    expect(log.split('"phase":"flush the producer"').length - 1).toBe(2);
  });
});
