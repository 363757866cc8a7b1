/**
 * poll: records from an HTTP API onto a topic. Every POLL_INTERVAL_MS it asks for the page (conditionally, once
 * the API sent an ETag or Last-Modified), takes the array at POLL_RECORDS_PATH, skips every record whose id it
 * has published before, validates the rest (invalid ones go to the DLQ), publishes them with deterministic
 * event_ids, and only once the broker has acknowledged them marks their ids seen in `<POLL_TOPIC>.seen`.
 * A crash in between publishes a record twice under one event_id, which the stores keep once.
 */

import { pollSettings, recordsAt, sortPage } from "./poll/records.ts";
import { fetchPage, type Validators } from "./poll/request.ts";
import { loadSeen, SEEN_TOPIC_CONFIGS, seenMarkers } from "./poll/seen.ts";
import { ensureTopics } from "./shared/kafka.ts";
import { counter, gauge } from "./shared/metrics.ts";
import { main, type Stage } from "./shared/runner.ts";
import { createPublisher } from "./shared/source.ts";

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 60_000;
const SEEN_LOAD_TIMEOUT_MS = 120_000;

/** The poll stage: `POLL_URL` onto `POLL_TOPIC`, health and metrics on `POLL_PORT`. */
export const poll: Stage = {
  name: "poll",
  port: "POLL_PORT",
  async start({ env, kafka, log, registry, producer }) {
    const settings = pollSettings(env);
    const publish = createPublisher(producer, 10_000);
    const polls = counter(registry, "poll_requests_total", "Polls by outcome", ["outcome"]);
    const records = counter(registry, "poll_records_total", "Polled records by outcome", ["outcome"]);
    const errors = counter(registry, "poll_errors_total", "Polls that failed, by reason", ["reason"]);
    const lastSuccess = gauge(registry, "poll_last_success_timestamp_seconds", "When a poll last succeeded");

    const partitions = env.TOPIC_PARTITIONS;
    await ensureTopics(kafka, [
      { name: settings.topic, partitions },
      { name: settings.dlq, partitions },
      { name: settings.seenTopic, partitions: 1, configs: SEEN_TOPIC_CONFIGS },
    ]);
    const seen = await loadSeen(kafka, settings.seenTopic, SEEN_LOAD_TIMEOUT_MS);
    log.info({ source: settings.source, topic: settings.topic, seen: seen.size }, "polling");

    let validators: Validators = {};
    let failures = 0;
    const stopping = new AbortController();

    /** One poll, start to finish; returns how long to wait before the next. */
    async function pollOnce(): Promise<number> {
      const fail = (reason: string, message: string) => {
        errors.inc({ reason });
        failures++;
        log.warn({ reason, message, source: settings.source, failures }, "poll failed");
        return Math.max(settings.intervalMs, Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (failures - 1)));
      };
      const fetched = await fetchPage({ ...settings, validators, signal: stopping.signal });
      if (stopping.signal.aborted && fetched.kind === "failed") return 0; // the stop abandoned the request
      polls.inc({ outcome: fetched.kind });
      if (fetched.kind === "failed") return fail(fetched.failure, fetched.reason);
      if (fetched.kind === "throttled") {
        const backoff = fail("throttled", `HTTP ${fetched.status}`);
        return fetched.retryAfterMs === undefined ? backoff : Math.max(settings.intervalMs, fetched.retryAfterMs);
      }
      if (fetched.kind === "page") {
        const found = recordsAt(fetched.body, settings.recordsPath);
        if (!found.ok) return fail("no_array", found.reason);
        const page = sortPage(found.records, settings, seen);
        const published = await publish([...page.events, ...page.deadLetters]);
        // Marked seen only once the records are acknowledged: a marker is a promise that the record is there.
        const marked = published.ok ? await publish(seenMarkers(settings.seenTopic, page.ids)) : published;
        if (!marked.ok) return fail("publish", marked.reason);
        for (const id of page.ids) seen.add(id);
        records.inc({ outcome: "published" }, page.events.length);
        records.inc({ outcome: "dead_lettered" }, page.deadLetters.length);
        records.inc({ outcome: "duplicate" }, page.duplicates);
        // Kept only now: a page that failed to publish is asked for again in full.
        validators = fetched.validators;
      }
      failures = 0;
      lastSuccess.set(Date.now() / 1000);
      return settings.intervalMs;
    }

    const loop = (async () => {
      while (!stopping.signal.aborted) {
        const waitMs = await pollOnce().catch((error: Error) => {
          log.error({ err: error }, "poll failed unexpectedly");
          return BACKOFF_MAX_MS;
        });
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          stopping.signal.addEventListener("abort", () => resolve(clearTimeout(timer)), { once: true });
        });
      }
    })();

    return {
      ready: () => failures === 0,
      // A request in flight is abandoned (nothing was received); a page being published is finished and marked.
      drain: async () => {
        stopping.abort();
        await loop;
      },
    };
  },
};

if (import.meta.main) await main(poll);
