/**
 * `bun run generate`: realistic traffic through the HTTP API (see --help). The generators live in
 * tools/generators.ts and the driver in tools/traffic.ts, so tools/faults.ts drives the same traffic.
 */
import { parseArgs } from "node:util";
import { parseConfig, redactUrl } from "../shared/config.ts";
import { createGenerator, KINDS, type Kind, mulberry32, seedOf, userChangeGenerator } from "./generators.ts";
import { startProgress, statusLine, tallyTable } from "./report.ts";
import { drive, emptyTally } from "./traffic.ts";
import { emptyUserTally, userChanges, userStatusLine, writeUsers } from "./users.ts";

const HELP = `Usage: bun run generate [options]

Posts generated events to the ingest API and prints what became of them; --kind users writes rows to the
source database's users table instead, for change data capture.

Kinds (--kind):
  logins     a login producer: a user population with device, app-version and locale mixes;
             --missing of the optional fields are absent, null or "" (the aggregate counts them as missing)
  locations  users moving along paths (random walks of great-circle steps from cities on every continent)
  fleet      a vehicle fleet: --vehicles vehicles each reporting every --interval seconds to /v1/vehicles,
             with the speed driven since the last report (km/h), the heading (absent while standing) and
             the vehicle's model, depot and odometer as metadata
  users      rows of public.users in CAPTURE_DATABASE_URL (what capture.ts streams): inserts of fake people
             (name, username, email, address, job, company, birthdate, timestamp), and --update and --delete
             shares of changes that update or delete a row inserted before; one connection, in order

Options:
  --kind KIND          logins | locations | fleet | users                      (default logins)
  --url URL            ingest base URL                                         (default http://127.0.0.1:3000)
  --rate N             events per second, 0 = as fast as the API answers       (default 100; fleet: vehicles/interval;
                       users: changes per second, default 1)
  --count N            stop after N events                                     (default 1000 unless --duration)
  --duration S         stop after S seconds
  --concurrency N      requests in flight                                      (default 4)
  --batch N | MIN-MAX  events per request; more than one is sent as NDJSON     (default 1)
  --api-key KEY        sent as Authorization: Bearer KEY                       (default $INGEST_API_KEY)
  --seed S             same seed, same events (and same event_ids)             (default 1)
  --event-ids          send client event_ids <id-prefix>-<n>; without it the API assigns them.
                       Reusing a seed with --event-ids resends the same ids, which the pipeline deduplicates:
                       change --seed or --id-prefix for new events.
  --id-prefix P        prefix of client event_ids                              (default gen-<seed>-<kind>)
  --user-prefix P      prefix of user and vehicle ids                          (default none)
  --users N            users of logins and locations                           (default 1000)
  --vehicles N         fleet size                                              (default 50)
  --interval S         seconds between two reports of one user or vehicle      (default fleet 1, locations 5)
  --missing SHARE      logins: share of optional fields missing, 0..1          (default 0.1)
  --invalid SHARE      share of requests with one invalid event, 0..1: they must get a 400
                       and none of their events may be stored                  (default 0)
  --start TIME         event times start here (ISO-8601) and advance with the schedule instead of the wall
                       clock, so a seeded run is reproducible byte for byte (default: wall clock)
  --update SHARE       users: share of changes that update a row, 0..1         (default 0.2)
  --delete SHARE       users: share of changes that delete a row, 0..1         (default 0.1)
  --tag T              users: emails are <username>+T@example.com, to find a run's rows (default none)
  --timeout MS         a request without an answer after MS is indeterminate   (default 10000)
  -h, --help           this text

Outcomes: accepted = 2xx (the broker has the events); rejected = 4xx or 5xx (a 503 may still have been written:
retry it with the same event_ids); indeterminate = no answer (timeout, connection refused or reset).
Nothing is retried. Exit status 1 when any request was rejected or unanswered, other than the --invalid ones.
`;

const { values } = parseArgs({
  options: {
    kind: { type: "string", default: "logins" },
    url: { type: "string", default: "http://127.0.0.1:3000" },
    rate: { type: "string" },
    count: { type: "string" },
    duration: { type: "string" },
    concurrency: { type: "string", default: "4" },
    batch: { type: "string", default: "1" },
    "api-key": { type: "string" },
    seed: { type: "string", default: "1" },
    "event-ids": { type: "boolean", default: false },
    "id-prefix": { type: "string" },
    "user-prefix": { type: "string", default: "" },
    users: { type: "string", default: "1000" },
    vehicles: { type: "string", default: "50" },
    interval: { type: "string" },
    missing: { type: "string", default: "0.1" },
    invalid: { type: "string", default: "0" },
    start: { type: "string" },
    timeout: { type: "string", default: "10000" },
    update: { type: "string", default: "0.2" },
    delete: { type: "string", default: "0.1" },
    tag: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});

if (values.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

const problems: string[] = [];

/** A number option within [min, max], or undefined when not given; bad values are collected, not thrown. */
function numberOf(name: string, raw: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER) {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || value < min || value > max) {
    problems.push(`--${name} must be a number from ${min} to ${max}, got "${raw}"`);
    return undefined;
  }
  return value;
}

const kind = values.kind as Kind | "users";
if (kind !== "users" && !KINDS.includes(kind))
  problems.push(`--kind must be one of ${[...KINDS, "users"].join(", ")}, got "${values.kind}"`);
const seed = /^\d+$/.test(values.seed) ? Number(values.seed) : seedOf(values.seed);
const vehicles = numberOf("vehicles", values.vehicles, 1) ?? 50;
const interval = numberOf("interval", values.interval, 0.001) ?? (kind === "fleet" ? 1 : 5);
const count = numberOf("count", values.count, 1);
const durationSeconds = numberOf("duration", values.duration, 0.001);
const rate = numberOf("rate", values.rate, 0) ?? (kind === "fleet" ? vehicles / interval : kind === "users" ? 1 : 100);
const updateShare = numberOf("update", values.update, 0, 1) ?? 0.2;
const deleteShare = numberOf("delete", values.delete, 0, 1) ?? 0.1;
if (updateShare + deleteShare > 1) problems.push("--update and --delete together must be at most 1");
const batchMatch = /^(\d+)(?:-(\d+))?$/.exec(values.batch);
const batch: [number, number] = batchMatch
  ? [Number(batchMatch[1]), Number(batchMatch[2] ?? batchMatch[1])]
  : [Number.NaN, Number.NaN];
if (!(batch[0] >= 1 && batch[1] >= batch[0]))
  problems.push(`--batch must be N or MIN-MAX (N >= 1), got "${values.batch}"`);
const start = values.start === undefined ? undefined : Date.parse(values.start);
if (start !== undefined && !Number.isFinite(start))
  problems.push(`--start must be an ISO-8601 time, got "${values.start}"`);
try {
  new URL(values.url);
} catch {
  problems.push(`--url must be a URL, got "${values.url}"`);
}
const options = {
  concurrency: numberOf("concurrency", values.concurrency, 1, 10_000) ?? 4,
  users: numberOf("users", values.users, 1) ?? 1000,
  missing: numberOf("missing", values.missing, 0, 1) ?? 0.1,
  invalid: numberOf("invalid", values.invalid, 0, 1) ?? 0,
  timeout: numberOf("timeout", values.timeout, 1) ?? 10_000,
};
if (problems.length > 0) {
  process.stderr.write(`${problems.join("\n")}\n\nbun run generate --help lists the options.\n`);
  process.exit(2);
}

// A synthetic clock: the events after the first n are stamped start + n / rate (1 ms apart at rate 0), so a
// seeded run is reproducible byte for byte.
const clock =
  start === undefined ? undefined : (eventsBefore: number) => start + (eventsBefore * 1000) / (rate > 0 ? rate : 1000);

const endCount = count ?? (durationSeconds === undefined ? 1000 : undefined);
const durationMs = durationSeconds === undefined ? undefined : durationSeconds * 1000;
const stop = new AbortController();
process.once("SIGINT", () => stop.abort());

const tty = process.stdout.isTTY === true;

/** --kind users: writes to the source table instead of posting; the exit status is 1 when a change failed. */
async function generateUsers(): Promise<number> {
  const url = parseConfig(process.env).CAPTURE_DATABASE_URL;
  const target = endCount !== undefined ? `${endCount.toLocaleString("en-US")} changes` : `${durationSeconds} s`;
  process.stdout.write(
    `generate: users to ${redactUrl(url)}, ${target} at ${rate > 0 ? `${rate} changes/s` : "full speed"}, ` +
      `update ${updateShare}, delete ${deleteShare}, seed ${values.seed}\n`,
  );
  const tally = emptyUserTally();
  const total = () => {
    if (endCount !== undefined) return userChanges(tally) / endCount;
    return durationMs === undefined ? undefined : tally.elapsedMs / durationMs;
  };
  const progress = startProgress(() => userStatusLine(tally), total, tty);
  const generator = userChangeGenerator({
    seed,
    updateShare,
    deleteShare,
    ...(values.tag !== undefined && { emailTag: values.tag }),
  });
  let shown = 0;
  await writeUsers(
    {
      url,
      generator,
      rate,
      ...(clock && { clock }),
      ...(endCount !== undefined && { count: endCount }),
      ...(durationMs !== undefined && { durationMs }),
      signal: stop.signal,
      onError(change, error) {
        if (++shown <= 5) process.stderr.write(`${tty ? "\n" : ""}${change.op} failed: ${error.message}\n`);
      },
    },
    tally,
  );
  progress.stop();
  process.stdout.write(`\n${userStatusLine(tally)}\n`);
  return tally.failed > 0 ? 1 : 0;
}
if (kind === "users") process.exit(await generateUsers());

const generator = createGenerator(kind, {
  seed,
  userPrefix: values["user-prefix"],
  population: kind === "fleet" ? vehicles : options.users,
  missingShare: options.missing,
  intervalSeconds: interval,
  ...(values["event-ids"] && { eventIdPrefix: values["id-prefix"] ?? `gen-${values.seed}-${kind}` }),
});

const target = endCount !== undefined ? `${endCount.toLocaleString("en-US")} events` : `${durationSeconds} s`;
process.stdout.write(
  `generate: ${kind} to ${values.url}, ${target} at ${rate > 0 ? `${rate} events/s` : "full speed"}, ` +
    `concurrency ${options.concurrency}, batch ${values.batch}, seed ${values.seed}\n`,
);

const tally = emptyTally();
const total = () => {
  if (endCount !== undefined) return tally.sent / endCount;
  return durationMs === undefined ? undefined : tally.elapsedMs / durationMs;
};
const progress = startProgress(() => statusLine(tally), total, tty);
let unexpectedFailures = 0;
let acceptedInvalid = 0;
const apiKey = values["api-key"] ?? process.env.INGEST_API_KEY;

await drive(
  {
    url: values.url,
    generator,
    ...(clock && { clock }),
    rate,
    ...(endCount !== undefined && { count: endCount }),
    ...(durationMs !== undefined && { durationMs }),
    signal: stop.signal,
    concurrency: options.concurrency,
    batch,
    ...(apiKey && { apiKey }),
    timeoutMs: options.timeout,
    invalidShare: options.invalid,
    rng: mulberry32(seedOf(`${seed}/requests`)),
    onResult(result) {
      if (result.invalid && result.outcome === "ok") acceptedInvalid++;
      if (result.outcome === "ok" || result.invalid) return;
      // The first few failures are shown as they happen: usually they all have the same cause.
      if (++unexpectedFailures > 5) return;
      const what = result.status === undefined ? result.error : `${result.status} ${result.error ?? ""}`;
      process.stderr.write(`${tty ? "\n" : ""}request failed: ${what}\n`);
    },
  },
  tally,
);
progress.stop();
process.stdout.write(`\n${tallyTable(tally)}\n`);
if (acceptedInvalid > 0) process.stderr.write(`${acceptedInvalid} requests with an invalid event were accepted!\n`);
process.exit(unexpectedFailures + acceptedInvalid > 0 ? 1 : 0);
