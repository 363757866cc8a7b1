/**
 * Writes a users generator's changes to the source database's `public.users` (the table capture.ts streams), in
 * generator order over one connection, so the source order of the changes is the generator's. Used by
 * `bun run generate --kind users`.
 */
import postgres from "postgres";
import { within } from "../shared/deadline.ts";
import type { UserChange, userChangeGenerator } from "./generators.ts";

/** Running totals of a users write. */
export interface UserTally {
  inserted: number;
  updated: number;
  deleted: number;
  /** Statements that failed (the change may or may not have been committed when there was no answer). */
  failed: number;
  /** Updates and deletes of a row whose insert failed: there is no id to write them to. */
  skipped: number;
  elapsedMs: number;
}

export const emptyUserTally = (): UserTally => ({
  inserted: 0,
  updated: 0,
  deleted: 0,
  failed: 0,
  skipped: 0,
  elapsedMs: 0,
});

/** The changes so far of `tally`, as the progress line shows them. */
export const userChanges = (tally: UserTally) => tally.inserted + tally.updated + tally.deleted + tally.failed;

/** One status line of a users write: counts by operation and the rate so far. */
export function userStatusLine(tally: UserTally): string {
  const perSecond = Math.round(userChanges(tally) / (Math.max(tally.elapsedMs, 1) / 1000));
  return (
    `${tally.inserted} inserted, ${tally.updated} updated, ${tally.deleted} deleted, ${tally.failed} failed, ` +
    `${tally.skipped} skipped, ${perSecond} changes/s`
  );
}

export interface UserWriteOptions {
  /** The source database, CAPTURE_DATABASE_URL. */
  url: string;
  generator: ReturnType<typeof userChangeGenerator>;
  /** Changes per second; 0 writes as fast as the database answers. */
  rate: number;
  /** Stop after this many changes... */
  count?: number;
  /** ...or after this many milliseconds, or when `signal` aborts, whichever comes first. */
  durationMs?: number;
  signal?: AbortSignal;
  /** Event time (ms since the epoch) of a change, given how many came before it; by default the wall clock. */
  clock?: (changesBefore: number) => number;
  /** Called with each failed change and why (the first failure usually explains the rest). */
  onError?: (change: UserChange, error: Error) => void;
}

/** How long one change may wait for its answer; a change without one counts as failed (it may have committed). */
const STATEMENT_TIMEOUT_MS = 10_000;

/**
 * Writes the generator's changes at `rate`, counting them in `tally`; resolves with the id of each handle whose
 * insert committed.
 *
 * @example
 * const tally = emptyUserTally();
 * const generator = userChangeGenerator({ seed: 1, updateShare: 0.2, deleteShare: 0.1 });
 * await writeUsers({ url: env.CAPTURE_DATABASE_URL, generator, rate: 1, count: 10 }, tally);
 * tally.inserted; // about 7
 */
export async function writeUsers(options: UserWriteOptions, tally: UserTally): Promise<Map<number, string>> {
  // One connection: the order of the statements is the order of their commits, hence of the captured changes.
  const connect = () => postgres(options.url, { max: 1, connect_timeout: 5, onnotice: () => {} });
  let sql = connect();
  const ids = new Map<number, string>();
  const started = performance.now();
  const deadline = options.durationMs === undefined ? Number.POSITIVE_INFINITY : started + options.durationMs;
  try {
    for (let n = 0; n < (options.count ?? Number.POSITIVE_INFINITY); n++) {
      if (options.rate > 0) {
        const due = started + (n * 1000) / options.rate;
        if (due >= deadline) break;
        if (due > performance.now()) await Bun.sleep(due - performance.now());
      }
      if (options.signal?.aborted || performance.now() >= deadline) break;
      const change = options.generator.next(options.clock?.(n) ?? Date.now());
      try {
        const answered = await within(
          apply(sql, change, ids, tally).then(() => true),
          STATEMENT_TIMEOUT_MS,
          false,
        );
        if (!answered) {
          // postgres.js can leave a statement pending for good when the server closes the connection as it starts
          // (a restart of PostgreSQL): that connection is given up, unawaited, and the next change opens another.
          const stuck = sql;
          sql = connect();
          void within(stuck.end({ timeout: 0 }), 1_000, undefined).catch(() => {});
          throw new Error(`no answer within ${STATEMENT_TIMEOUT_MS} ms`);
        }
      } catch (error) {
        tally.failed++;
        options.onError?.(change, error as Error);
      }
      tally.elapsedMs = performance.now() - started;
    }
  } finally {
    tally.elapsedMs = performance.now() - started;
    // A connection the server dropped can leave end() pending too: the writer ends either way.
    await within(sql.end({ timeout: 5 }), 10_000, undefined);
  }
  return ids;
}

/** Writes one change; an update or delete of a row without an id (its insert failed) is skipped. */
async function apply(sql: postgres.Sql, change: UserChange, ids: Map<number, string>, tally: UserTally) {
  if (change.op === "insert") {
    const [row] = await sql<{ id: string }[]>`insert into public.users ${sql(change.row)} returning id`;
    if (row) ids.set(change.handle, row.id);
    tally.inserted++;
    return;
  }
  const id = ids.get(change.handle);
  if (id === undefined) {
    tally.skipped++;
    return;
  }
  if (change.op === "update") {
    await sql`update public.users set ${sql(change.row)} where id = ${id}`;
    tally.updated++;
  } else {
    await sql`delete from public.users where id = ${id}`;
    ids.delete(change.handle);
    tally.deleted++;
  }
}
