/**
 * The local S3 server for persist's `s3` sink: versitygw with its posix backend, where a bucket is a directory
 * under the stack's home. Built once with `go install` (about two minutes) into the stack's home, never into
 * the work tree; reused when something already answers on the port of S3_ENDPOINT.
 */
import { closeSync, existsSync, mkdirSync, openSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { $ } from "bun";
import { portAnswers, stopServer } from "./process.ts";

export const VERSITYGW_VERSION = "v1.8.0";
const GO = "/usr/local/go/bin/go";
const START_TIMEOUT_MS = 15_000;

/** Where the stack's versitygw keeps its binary, buckets, pid and log. */
export const versityPaths = (stackHome: string) => {
  const home = join(stackHome, "versitygw");
  return {
    home,
    binary: join(home, VERSITYGW_VERSION, "versitygw"),
    root: join(home, "buckets"),
    pidFile: join(home, "versitygw.pid"),
    log: join(home, "versitygw.log"),
  };
};

export type VersityPaths = ReturnType<typeof versityPaths>;

/** The S3 settings the server is started with: the gateway's root account is the pipeline's (local only). */
export interface S3Settings {
  S3_ENDPOINT: string;
  S3_BUCKET: string;
  S3_ACCESS_KEY_ID: string;
  S3_SECRET_ACCESS_KEY: string;
  S3_REGION: string;
}

async function ensureBinary(paths: VersityPaths): Promise<void> {
  if (existsSync(paths.binary)) return;
  const go = Bun.which("go") ?? (existsSync(GO) ? GO : undefined);
  if (!go) throw new Error(`versitygw needs Go to build (looked for go on PATH and ${GO})`);
  console.log(`versitygw: building ${VERSITYGW_VERSION} with go install (once, about two minutes)`);
  const partial = `${paths.binary}.partial-${process.pid}`;
  mkdirSync(partial, { recursive: true });
  const build = await $`${go} install github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION}`
    .env({ ...process.env, GOBIN: partial, GOFLAGS: "-mod=mod" })
    .cwd(paths.home)
    .nothrow()
    .quiet();
  if (build.exitCode !== 0) throw new Error(`go install of versitygw failed:\n${build.stderr.toString().trim()}`);
  renameSync(join(partial, "versitygw"), paths.binary);
}

/**
 * Makes S3_ENDPOINT answer with S3_BUCKET in it: reuses a server on its port, else builds (once) and starts
 * versitygw; the bucket is a directory of the posix backend's root, created here.
 *
 * @example
 * await versityUp(config(), versityPaths(STACK_HOME));
 */
export async function versityUp(settings: S3Settings, paths: VersityPaths): Promise<void> {
  const url = new URL(settings.S3_ENDPOINT);
  const port = Number(url.port || 80);
  mkdirSync(join(paths.root, settings.S3_BUCKET), { recursive: true });
  if (await portAnswers(url.hostname, port)) {
    console.log(`versitygw: reusing the S3 server answering on ${url.host}`);
    return;
  }
  mkdirSync(join(paths.home, VERSITYGW_VERSION), { recursive: true });
  await ensureBinary(paths);
  const log = openSync(paths.log, "a");
  const server = Bun.spawn([paths.binary, "--port", `${url.hostname}:${port}`, "posix", paths.root], {
    // The credentials go by environment, not argv, so `ps` does not show the secret.
    env: {
      ...process.env,
      ROOT_ACCESS_KEY_ID: settings.S3_ACCESS_KEY_ID,
      ROOT_SECRET_ACCESS_KEY: settings.S3_SECRET_ACCESS_KEY,
    },
    detached: true,
    stdio: ["ignore", log, log],
  });
  closeSync(log);
  server.unref();
  writeFileSync(paths.pidFile, `${server.pid}\n`);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await portAnswers(url.hostname, port))) {
    if (server.exitCode !== null || Date.now() > deadline)
      throw new Error(`versitygw did not start on ${url.host}; see ${paths.log}`);
    await Bun.sleep(100);
  }
  console.log(`versitygw: started pid ${server.pid} on ${url.host}, buckets under ${paths.root}`);
}

/** Stops the versitygw this stack started (none else). */
export const versityDown = (paths: VersityPaths) => stopServer("versitygw", paths.pidFile, "versitygw", 10_000);
