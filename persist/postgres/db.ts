/**
 * PostgreSQL: the postgres.js pool and the migrations. Migrations are the numbered files in `migrations/`,
 * applied in order inside one transaction under an advisory lock, so instances that start together apply each
 * file exactly once and none of them sees a half-migrated schema.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { ConnectionOptions as TlsOptions } from "node:tls";
import postgres from "postgres";
import { type Config, type SslMode, sslModeOf } from "../../shared/config.ts";
import { within } from "../../shared/deadline.ts";

const MIGRATIONS_DIR = join(import.meta.dir, "migrations");
/** Any constant works; it only has to be the same for every instance. */
const MIGRATION_LOCK = 7_140_911;

/**
 * postgres.js under Bun can write to a socket it has just dropped when the server goes away mid-query: a
 * TypeError thrown from a setImmediate inside the library, which would kill the process during a database
 * outage. The query itself still fails with CONNECTION_CLOSED and is retried, so only that error is swallowed;
 * any other uncaught error still ends the process. A stage installs it with process.on("uncaughtException").
 */
export function ignoreWriteAfterClose(error: Error): void {
  const known = error instanceof TypeError && /socket\.write/.test(error.message);
  if (known && error.stack?.includes("postgres/src/connection.js")) return;
  console.error(error);
  process.exit(1);
}

/** The settings a pool is made from: the URL (with its `sslmode`) and the CA that signed the server's certificate. */
export type DatabaseSettings = Pick<Config, "DATABASE_URL" | "DATABASE_TLS_CA_FILE">;

/**
 * postgres.js's `ssl` option for libpq's `sslmode` in the URL, with DATABASE_TLS_CA_FILE as libpq's `sslrootcert`:
 * `require` checks nothing unless a CA is given (then it checks the chain, as libpq does), `verify-ca` checks the
 * chain, `verify-full` the chain and the host name. Without a CA file the system's trusted CAs apply. No sslmode:
 * no TLS, as postgres.js has always done here.
 *
 * @example
 * tlsOf({ DATABASE_URL: "postgres://u@db/x?sslmode=verify-full", DATABASE_TLS_CA_FILE: "/ca.pem" }); // { ca, ... }
 */
export function tlsOf(settings: DatabaseSettings): boolean | "prefer" | "require" | TlsOptions {
  const mode = (sslModeOf(settings.DATABASE_URL) ?? "disable") as SslMode;
  const caFile = settings.DATABASE_TLS_CA_FILE;
  const verified = (checkHost: boolean): TlsOptions => ({
    ...(caFile && { ca: readFileSync(caFile) }),
    rejectUnauthorized: true,
    ...(!checkHost && { checkServerIdentity: () => undefined }),
  });
  if (mode === "disable") return false;
  if (mode === "allow" || mode === "prefer") return "prefer";
  if (mode === "require") return caFile ? verified(false) : "require";
  return verified(mode === "verify-full");
}

/**
 * A pool for the database of `settings`. Notices are dropped: `create ... if not exists` would log one per start.
 *
 * @example
 * const sql = createDb(config(), 2);
 */
export function createDb(settings: DatabaseSettings, max = 4) {
  return postgres(settings.DATABASE_URL, {
    max,
    connect_timeout: 5,
    idle_timeout: 60,
    ssl: tlsOf(settings),
    onnotice: () => {},
  });
}

export type Sql = ReturnType<typeof createDb>;

/** Applies the migrations not yet recorded in `schema_migrations`; returns the names it applied. */
export async function migrate(sql: Sql, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = readdirSync(dir)
    .filter((name) => /^\d+_[\w-]+\.sql$/.test(name))
    .sort();
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx`create table if not exists schema_migrations (
      version text primary key,
      applied_at timestamptz not null default now()
    )`;
    const done = new Set(
      (await tx<{ version: string }[]>`select version from schema_migrations`).map((r) => r.version),
    );
    const pending = files.filter((name) => !done.has(name));
    for (const name of pending) {
      await tx.unsafe(readFileSync(join(dir, name), "utf8"));
      await tx`insert into schema_migrations (version) values (${name})`;
    }
    return pending;
  });
}

/** True when the database answers within `timeoutMs`. */
export function databaseAnswers(sql: Sql, timeoutMs = 1000): Promise<boolean> {
  return within(
    sql`select 1`.then(
      () => true,
      () => false,
    ),
    timeoutMs,
    false,
  );
}
