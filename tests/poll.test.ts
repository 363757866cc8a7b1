/**
 * poll.ts against a real HTTP API (tests/polled-api.ts) and the real broker: what lands in locations.raw and
 * its DLQ as the API's page changes (new, repeated and invalid records, ETag and 304, 429 with Retry-After,
 * malformed JSON), across a SIGKILL and restart, with an API key that must never show.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type InRecord, type Position, readRange } from "../shared/kafka.ts";
import { dlqOf, TOPICS } from "../shared/topics.ts";
import { type ProcessHandle, startStage } from "../tools/harness.ts";
import { type PolledApi, startPolledApi } from "./polled-api.ts";
import { pollUntil, readTopic, snapshot, testKafka } from "./support.ts";

const run = crypto.randomUUID().slice(0, 8);
const SECRET = `key-${crypto.randomUUID()}`;
const logFile = join(tmpdir(), `poll-${run}.log`);
let api: PolledApi;
let poll: ProcessHandle;
let before: Position[];
let dlqBefore: Position[];

const location = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  user_id: `${run}-user`,
  timestamp: 1_700_000_000,
  lat: -31.4,
  long: -64.18,
  ...extra,
});

const start = () =>
  startStage("poll", {
    mode: "process",
    output: logFile,
    env: {
      LOG_LEVEL: "info",
      POLL_URL: `${api.url}/v1/pings?api_key=${SECRET}`,
      POLL_RECORDS_PATH: "data.items",
      POLL_INTERVAL_MS: "200",
      POLL_HEADERS: JSON.stringify({ Authorization: `Bearer ${SECRET}` }),
    },
  });

/** The run's records in `topic` since `from`, once `done` holds for them. */
async function ours(topic: string, from: Position[], done: (records: InRecord[]) => boolean) {
  const mine = (records: InRecord[]) => records.filter((r) => r.key?.toString() === `${run}-user`);
  return mine(await readTopic(topic, from, (all) => done(mine(all))));
}
const ids = (records: InRecord[]) => records.map((r) => JSON.parse(r.value.toString()).event_id as string);
/** How many copies of each polled id (`p1`...) the topic holds. */
const copies = (records: InRecord[]) => {
  const counts: Record<string, number> = {};
  for (const id of ids(records)) {
    const short = id.split(":").at(-1) as string;
    counts[short] = (counts[short] ?? 0) + 1;
  }
  return counts;
};

/**
 * Waits until poll has counted `n` records as duplicates. The count rises once a poll's seen markers are
 * acknowledged, a moment after the records that poll published, so it is not read the moment they appear.
 */
const duplicatesCounted = (n: number) =>
  pollUntil(`${n} records counted as duplicates`, async () =>
    (await poll.metric("poll_records_total", { outcome: "duplicate" })) >= n ? true : undefined,
  );

beforeAll(async () => {
  api = startPolledApi();
  [before, dlqBefore] = await Promise.all([snapshot(TOPICS.locationsRaw), snapshot(dlqOf(TOPICS.locationsRaw))]);
  api.setPage({ data: { items: [location("p1"), location("p2"), location("p3", { lat: 123 }), { user_id: "x" }] } });
  poll = await start();
});

afterAll(async () => {
  await poll?.stop();
  api?.stop();
});

describe("poll", () => {
  test("publishes each new record once with a deterministic event_id; invalid ones go to the DLQ with context", async () => {
    const published = await ours(TOPICS.locationsRaw, before, (r) => r.length >= 2);
    expect(copies(published)).toEqual({ p1: 1, p2: 1 });
    const [first] = published.map((r) => JSON.parse(r.value.toString()));
    expect(first.event_id).toMatch(/^poll\.[0-9a-f]{8}:p1$/);
    expect(first).toMatchObject({ user_id: `${run}-user`, timestamp: "2023-11-14T22:13:20.000Z", lat: -31.4 });
    expect(first.id).toBeUndefined();

    const letters = await readTopic(dlqOf(TOPICS.locationsRaw), dlqBefore, (all) =>
      all.some(
        (r) => r.headers["dlq.source.url"] === `${api.url}/v1/pings` && r.headers["dlq.error.message"]?.includes("id"),
      ),
    );
    const mine = letters.filter((r) => r.headers["dlq.source.url"] === `${api.url}/v1/pings`);
    const invalid = mine.find((r) => r.headers["dlq.source.id"] === "p3");
    expect(invalid?.headers).toMatchObject({
      "dlq.error.class": "DecodeError",
      "dlq.source.topic": TOPICS.locationsRaw,
      "dlq.source.partition": "-1",
      "dlq.source.offset": "-1",
      "dlq.stage": "poll",
    });
    expect(invalid?.headers["dlq.error.message"]).toContain("lat");
    expect(JSON.parse(invalid?.value.toString() ?? "{}")).toEqual(location("p3", { lat: 123 }));
    const noId = mine.find((r) => r.headers["dlq.source.id"] === undefined);
    expect(noId?.headers["dlq.error.message"]).toContain("id: is missing");
  });

  test("asks with If-None-Match once it has an ETag, and a 304 publishes nothing", async () => {
    await pollUntil("a conditional request answered 304", async () =>
      api.requests.some((r) => r.status === 304 && r.headers.get("if-none-match")) ? true : undefined,
    );
    expect(await poll.metric("poll_requests_total", { outcome: "unchanged" })).toBeGreaterThan(0);
  });

  test("a changed page publishes only what is new; repeats are counted as duplicates", async () => {
    api.setPage({ data: { items: [location("p1"), location("p2"), location("p4"), location("p4")] } });
    const published = await ours(TOPICS.locationsRaw, before, (r) => ids(r).some((id) => id.endsWith(":p4")));
    expect(copies(published)).toEqual({ p1: 1, p2: 1, p4: 1 });
    // p1 and p2 seen before, p4 twice on the page.
    await duplicatesCounted(3);
  });

  test("429 and 503 with Retry-After: the next request waits as long as asked", async () => {
    for (const status of [429, 503] as const) {
      api.throttleNext(status, "2");
      const throttled = await pollUntil(`a ${status}`, async () => api.requests.findLast((r) => r.status === status));
      const next = await pollUntil("the request after it", async () => api.requests.find((r) => r.at > throttled.at));
      expect(next.at - throttled.at).toBeGreaterThanOrEqual(1_900);
    }
    expect(await poll.metric("poll_errors_total", { reason: "throttled" })).toBe(2);
  }, 30_000);

  test("malformed JSON or no array at the path: an error and a metric, not ready, then it recovers", async () => {
    api.setRaw("{not json");
    await pollUntil("a not_json error", async () =>
      (await poll.metric("poll_errors_total", { reason: "not_json" })) > 0 ? true : undefined,
    );
    expect(await poll.ready()).toBe(503);
    api.setPage({ data: { records: [] } });
    await pollUntil("a no_array error", async () =>
      (await poll.metric("poll_errors_total", { reason: "no_array" })) > 0 ? true : undefined,
    );
    expect(poll.child.exitCode).toBeNull();
    api.setPage({ data: { items: [location("p5")] } });
    const published = await ours(TOPICS.locationsRaw, before, (r) => ids(r).some((id) => id.endsWith(":p5")));
    expect(copies(published)).toEqual({ p1: 1, p2: 1, p4: 1, p5: 1 });
    await pollUntil("ready again", async () => ((await poll.ready()) === 200 ? true : undefined));
  }, 30_000);

  test("after a SIGKILL and a restart nothing is published again", async () => {
    expect(await poll.stop("SIGKILL")).toBe("SIGKILL");
    api.setPage({ data: { items: [location("p1"), location("p2"), location("p4"), location("p5"), location("p6")] } });
    poll = await start();
    await ours(TOPICS.locationsRaw, before, (r) => ids(r).some((id) => id.endsWith(":p6")));
    // The page's four old records were skipped as seen, in the same poll that published p6.
    await duplicatesCounted(4);
    const all = await readRange({
      kafka: testKafka(),
      topic: TOPICS.locationsRaw,
      from: before,
      until: "end",
      timeoutMs: 30_000,
    });
    const mine = all.filter((r) => r.key?.toString() === `${run}-user`);
    expect(copies(mine)).toEqual({ p1: 1, p2: 1, p4: 1, p5: 1, p6: 1 });
  }, 60_000);

  test("the API key reaches the API and never a log line or /metrics", async () => {
    expect(api.requests.every((r) => r.headers.get("authorization") === `Bearer ${SECRET}`)).toBe(true);
    await poll.stop();
    expect(readFileSync(logFile, "utf8")).not.toContain(SECRET);
    poll = await start();
    expect(await poll.metrics()).not.toContain(SECRET);
  });
});
