/**
 * The change-data-capture part of a fault run: users written to the source table (insert, update, delete) while
 * capture and the two cdc sinks run as processes, and the verdict on where the changes ended up:
 * - the MariaDB mirror equals the source table for the run's rows: none missing, none extra (a row deleted at the
 *   source), none with other values than the source's latest;
 * - the bucket holds each change of the run once (one line per source position of a key) and, per key, in
 *   source order (offsets and source positions grow together), and its last change of every row is the source's
 *   current state (the row's latest values, or a delete).
 * The run's rows are those whose email carries `+<run>@` (the users generator's tag), so other rows of the shared
 * table and topic are not looked at.
 */
import mysql from "mysql2/promise";
import postgres from "postgres";
import { mirrorOf } from "../../persist/mysql.ts";
import { bucketClient } from "../../persist/s3.ts";
import { type ChangeEvent, positionOf } from "../../shared/change.ts";
import type { Config } from "../../shared/config.ts";
import { endOffsets, type KafkaConnection, type Position } from "../../shared/kafka.ts";
import { cdcTopicOf } from "../../shared/topics.ts";
import { ownCapture } from "../../tests/capture.ts";
import { userChangeGenerator } from "../generators.ts";
import { pollEvery, TimeoutError } from "../poll.ts";
import { emptyUserTally, type UserTally, writeUsers } from "../users.ts";
import type { Check } from "./checks.ts";

/** The captured table and its topic. */
const TABLE = "public.users";
const TOPIC = cdcTopicOf(TABLE);
/** The columns the users generator writes, besides the key: what the mirror must agree on. */
const COLUMNS = ["email", "name", "username", "address", "job", "company", "birthdate", "timestamp"] as const;

/** capture, and persist with each cdc sink: instances of their own, beside the rest of the pipeline. */
export const CDC_INSTANCES = ["capture", "persist#mysql", "persist#s3"];

/**
 * The run's capture settings (a slot and publication of its own, dropped by `drop`, since a slot left behind
 * holds the shared cluster's WAL back) and the sinks' (objects close after 2 s, so the bucket catches up soon
 * after the load stops).
 *
 * @example
 * const cdc = cdcSettings(run);
 * const pipeline = new Pipeline(logDir, { ...stageEnv, ...cdc.env }, freePort, say);
 * await cdc.drop(); // after the run
 */
export function cdcSettings(run: string) {
  const own = ownCapture(run);
  return {
    env: { ...own.env, CAPTURE_TABLES: TABLE, S3_ROTATE_SECONDS: "2" },
    slot: own.env.CAPTURE_SLOT,
    drop: own.drop,
  };
}

/** The emails of the run's rows contain this. */
const tagOf = (run: string) => `+${run}@`;

/**
 * Waits until capture's snapshot of the table is done (its slot's row in `event_pipeline_capture`), so the run's
 * changes are all streamed ones, then writes users at `rate` changes per second until `signal` aborts.
 *
 * @example
 * const users = await startUserLoad({ env, run, seed, rate: 20, slot, signal });
 * load.abort(); await users.done; users.tally.inserted;
 */
export async function startUserLoad(options: {
  env: Config;
  run: string;
  seed: number;
  rate: number;
  slot: string;
  signal: AbortSignal;
}): Promise<{ tally: UserTally; done: Promise<unknown> }> {
  const sql = postgres(options.env.CAPTURE_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    await pollEvery(
      "capture's snapshot",
      async () =>
        (await sql`select 1 from event_pipeline_capture where slot_name = ${options.slot}`.catch(() => [])).length > 0
          ? true
          : undefined,
      60_000,
    );
  } finally {
    await sql.end({ timeout: 2 });
  }
  const tally = emptyUserTally();
  const generator = userChangeGenerator({
    seed: options.seed,
    updateShare: 0.3,
    deleteShare: 0.15,
    emailTag: options.run,
  });
  const done = writeUsers(
    { url: options.env.CAPTURE_DATABASE_URL, generator, rate: options.rate, signal: options.signal },
    tally,
  );
  return { tally, done };
}

/** A value as both stores can be compared: times (pg's Dates, the mirror's ISO text) as epoch ms, the rest as text. */
function canonical(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return String(value.getTime());
  const text = String(value);
  return /^\d{4}-\d\d-\d\d(T| )/.test(text) && Number.isFinite(Date.parse(text)) ? String(Date.parse(text)) : text;
}

/** A row's compared values, keyed by column. */
type Values = Record<string, string | null>;

const valuesOf = (row: Record<string, unknown>): Values =>
  Object.fromEntries(COLUMNS.map((column) => [column, canonical(row[column])]));

/** The run's rows now, at the source and in the mirror, by id. */
async function rows(env: Config, run: string) {
  const source = postgres(env.CAPTURE_DATABASE_URL, { max: 1, onnotice: () => {} });
  const mirror = await mysql.createConnection({ uri: env.MYSQL_URL, connectTimeout: 5_000 });
  try {
    const pattern = `%${tagOf(run)}%`;
    // pg's own parsers, as capture reads the values: dates and times as Dates.
    const at = await source`select * from public.users where email like ${pattern}`;
    const [copied] = await mirror.query<mysql.RowDataPacket[]>(
      `select * from \`${mirrorOf(TOPIC)}\` where email like ?`,
      [pattern],
    );
    return {
      source: new Map(at.map((row) => [String(row.id), valuesOf(row)])),
      mirror: new Map(copied.map((row) => [String(row.id), valuesOf(row)])),
    };
  } finally {
    await Promise.all([source.end({ timeout: 2 }), mirror.end()]);
  }
}

/** One line of a stored object. */
interface Line {
  partition: number;
  offset: string;
  key: string;
  value: ChangeEvent;
}

/** The bucket's lines of the run's changes at or after `start`, per key, in offset order. */
async function bucketChanges(env: Config, run: string, start: Position[]): Promise<Map<string, Line[]>> {
  const client = bucketClient(env);
  const byKey = new Map<string, Line[]>();
  const tag = tagOf(run);
  for (const { partition, offset } of start) {
    const prefix = `${TOPIC}/partition=${partition}/`;
    let continuationToken: string | undefined;
    const names: string[] = [];
    do {
      const page = await client.list({ prefix, maxKeys: 1000, ...(continuationToken && { continuationToken }) });
      for (const { key } of page.contents ?? []) {
        const last = /-(\d{20})\.ndjson$/.exec(key)?.[1];
        if (last !== undefined && BigInt(last) >= offset) names.push(key);
      }
      continuationToken = page.isTruncated ? page.nextContinuationToken : undefined;
    } while (continuationToken);
    names.sort();
    for (const name of names) {
      for (const text of (await client.file(name).text()).split("\n")) {
        if (text === "") continue;
        const line = JSON.parse(text) as Line;
        const email = String((line.value.after ?? line.value.before)?.email ?? "");
        if (!email.includes(tag)) continue;
        byKey.set(line.key, [...(byKey.get(line.key) ?? []), line]);
      }
    }
  }
  for (const lines of byKey.values()) lines.sort((a, b) => (BigInt(a.offset) < BigInt(b.offset) ? -1 : 1));
  return byKey;
}

/** A change's source position, `[commit LSN, change LSN]`, as text that sorts in source order. */
const sortablePosition = (event: ChangeEvent) =>
  positionOf(event)
    .map((lsn) => String(lsn).padStart(20, "0"))
    .join("/");

/** The id of a record key `{"id":42}`. */
const idOf = (key: string) => String((JSON.parse(key) as { id: unknown }).id);

/** The verdict's counts; each must be 0. */
interface Tallies {
  mirrorMissing: string[];
  mirrorExtra: string[];
  mirrorStale: string[];
  bucketTwice: number;
  bucketDisordered: number;
  bucketBehind: string[];
  bucketChanges: number;
}

async function tallies(env: Config, run: string, start: Position[]): Promise<Tallies> {
  const [{ source, mirror }, bucket] = await Promise.all([rows(env, run), bucketChanges(env, run, start)]);
  const same = (a: Values, b: Values) => COLUMNS.every((column) => a[column] === b[column]);
  const result: Tallies = {
    mirrorMissing: [...source.keys()].filter((id) => !mirror.has(id)),
    mirrorExtra: [...mirror.keys()].filter((id) => !source.has(id)),
    mirrorStale: [...source]
      .filter(([id, row]) => mirror.has(id) && !same(row, mirror.get(id) as Values))
      .map(([id]) => id),
    bucketTwice: 0,
    bucketDisordered: 0,
    bucketBehind: [],
    bucketChanges: 0,
  };
  const lastOf = new Map<string, ChangeEvent>();
  for (const [key, lines] of bucket) {
    const seen = new Set<string>();
    let previous = "";
    for (const line of lines) {
      const position = sortablePosition(line.value);
      if (seen.has(position)) {
        result.bucketTwice++;
        continue;
      }
      seen.add(position);
      if (position <= previous) result.bucketDisordered++;
      previous = position;
    }
    result.bucketChanges += seen.size;
    const last = lines.at(-1);
    if (last) lastOf.set(idOf(key), last.value);
  }
  // Every row of the run the bucket saw, and every row the source has, must end in the source's state.
  for (const id of new Set([...lastOf.keys(), ...source.keys()])) {
    const last = lastOf.get(id);
    const row = source.get(id);
    const current = last?.op === "d" || !last?.after ? undefined : valuesOf(last.after);
    if (row === undefined ? current !== undefined : current === undefined || !same(row, current))
      result.bucketBehind.push(id);
  }
  return result;
}

/** The end offsets of the cdc topic now: where the run's changes start. */
export const cdcStart = (kafka: KafkaConnection) => endOffsets(kafka, TOPIC);

/**
 * Waits (polling, with a deadline) until the mirror and the bucket have caught up with the source for the run's
 * rows, then returns the check lines; a timeout leaves the differences to the checks.
 *
 * @example
 * checks.push(...(await accountCdc({ env, run, start, users: users.tally, timeoutMs: 90_000, say })));
 */
export async function accountCdc(options: {
  env: Config;
  run: string;
  start: Position[];
  users: UserTally;
  timeoutMs: number;
  say: (line: string) => void;
}): Promise<{ checks: Check[]; details: string[] }> {
  const { env, run, start, users } = options;
  const behind = (t: Tallies) =>
    t.mirrorMissing.length + t.mirrorExtra.length + t.mirrorStale.length + t.bucketBehind.length;
  let last = await tallies(env, run, start);
  try {
    last = await pollEvery(
      "the mirror and the bucket to catch up with the source",
      async () => {
        last = await tallies(env, run, start);
        return behind(last) === 0 ? last : undefined;
      },
      options.timeoutMs,
      1_000,
    );
  } catch (error) {
    if (!(error instanceof TimeoutError)) throw error;
    options.say(`cdc: ${error.message}`);
  }
  const committed = users.inserted + users.updated + users.deleted;
  const row = (name: string, value: number): Check => ({ name, value, expected: "must be 0", ok: value === 0 });
  const reported = (name: string, value: number): Check => ({ name, value, expected: "", ok: undefined });
  const first = (what: string, ids: string[]) =>
    ids.length > 0 ? [`cdc ${what} (first 10): ${ids.slice(0, 10).join(", ")}`] : [];
  return {
    checks: [
      reported("cdc: users changes written", committed),
      reported("cdc: users changes failed or unanswered", users.failed),
      row("cdc mysql: source rows missing from the mirror", last.mirrorMissing.length),
      row("cdc mysql: mirror rows not at the source", last.mirrorExtra.length),
      row("cdc mysql: mirror rows with other values", last.mirrorStale.length),
      row("cdc s3: changes stored more than once", last.bucketTwice),
      row("cdc s3: changes out of source order per key", last.bucketDisordered),
      row("cdc s3: rows whose last change is not the source's state", last.bucketBehind.length),
      {
        name: "cdc s3: distinct changes stored",
        value: last.bucketChanges,
        expected: `${committed} to ${committed + users.failed} (written, + failed)`,
        ok: last.bucketChanges >= committed && last.bucketChanges <= committed + users.failed,
      },
    ],
    details: [
      ...first("mirror missing ids", last.mirrorMissing),
      ...first("mirror extra ids", last.mirrorExtra),
      ...first("mirror stale ids", last.mirrorStale),
      ...first("bucket behind ids", last.bucketBehind),
    ],
  };
}
