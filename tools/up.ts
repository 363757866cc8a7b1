/**
 * `./pipeline up [stage...]`: every stage (or the named ones) as its own process on its configured port, under
 * one supervisor. Each log line is prefixed with its stage (and shown readably, not as raw JSON, on a
 * terminal); a stage that crashes is started again with backoff; Ctrl-C or SIGTERM stops the stages in pipeline
 * order, intake first, each finishing its batch.
 */
import { parseConfig } from "../shared/config.ts";
import { handleSignalsYourself, type ProcessHandle, STAGES, type StageName, startStage } from "./harness.ts";

const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
/** A stage that ran this long before it crashed starts over at the shortest backoff. */
const HEALTHY_AFTER_MS = 60_000;

const env = parseConfig(process.env);
const names = Object.keys(STAGES) as StageName[];
const wanted = process.argv.slice(2);
const unknown = wanted.filter((name) => !names.includes(name as StageName));
if (unknown.length > 0) {
  console.error(`unknown stage(s): ${unknown.join(", ")}; the stages are ${names.join(", ")}`);
  process.exit(2);
}
// poll needs an API to poll: run by default only when POLL_URL names one.
const chosen = names.filter((name) =>
  wanted.length === 0 ? name !== "poll" || env.POLL_URL !== undefined : wanted.includes(name),
);
if (wanted.length === 0 && env.POLL_URL === undefined) console.log("poll is not started: POLL_URL is unset");
const pretty = process.stdout.isTTY === true;
const width = Math.max(...chosen.map((name) => name.length));
const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };

/** One log line of a stage: pino's JSON made readable on a terminal, as it is otherwise (for log shippers). */
function formatLine(stage: string, line: string, readable: boolean): string {
  const prefix = `${stage.padEnd(width)} |`;
  if (!readable) return `${prefix} ${line}`;
  try {
    const { level, time, msg, service: _, ...rest } = JSON.parse(line) as Record<string, unknown>;
    const clock = typeof time === "string" ? time.slice(11, 19) : "";
    const extra = Object.entries(rest)
      .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
      .join(" ");
    return `${prefix} ${clock} ${(LEVELS[level as number] ?? "").padEnd(5)} ${msg ?? ""} ${extra}`.trimEnd();
  } catch {
    return `${prefix} ${line}`;
  }
}

/** Copies a stage's output to ours, a line at a time, each prefixed. */
async function relay(stage: string, stream: ReadableStream<Uint8Array>): Promise<void> {
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of stream) {
    const lines = (pending + decoder.decode(chunk, { stream: true })).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) if (line) console.log(formatLine(stage, line, pretty));
  }
  if (pending) console.log(formatLine(stage, pending, pretty));
}

const running = new Map<StageName, ProcessHandle>();
let stopping = false;

/** Starts `name`, and again after each crash, waiting longer after each quick one. */
async function supervise(name: StageName, attempt = 0): Promise<void> {
  const port = env[STAGES[name].port];
  const started = Date.now();
  let handle: ProcessHandle;
  try {
    handle = await startStage(name, { mode: "process", port, output: "pipe", env: { LOG_LEVEL: env.LOG_LEVEL } });
  } catch (error) {
    if (stopping) return;
    return restart(name, attempt, `could not start: ${(error as Error).message}`);
  }
  running.set(name, handle);
  const { child } = handle;
  void relay(name, child.stdout as ReadableStream<Uint8Array>);
  void relay(name, child.stderr as ReadableStream<Uint8Array>);
  const code = await child.exited;
  running.delete(name);
  if (stopping) return;
  const next = Date.now() - started > HEALTHY_AFTER_MS ? 0 : attempt + 1;
  return restart(name, next, `exited with ${child.signalCode ?? code}`);
}

async function restart(name: StageName, attempt: number, why: string): Promise<void> {
  const wait = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
  console.log(formatLine(name, `supervisor: ${why}; starting it again in ${wait / 1000} s`, false));
  await Bun.sleep(wait);
  if (!stopping) return supervise(name, attempt);
}

/** Stops the stages one by one in pipeline order: intake first, so nothing arrives at a stage already gone. */
async function stopAll(signal: string): Promise<never> {
  if (stopping) process.exit(1); // a second Ctrl-C: stop waiting
  stopping = true;
  console.log(`\n${signal}: stopping ${chosen.join(", ")} in order (Ctrl-C again to stop waiting)`);
  for (const name of chosen) await running.get(name)?.stop("SIGTERM");
  process.exit(0);
}
handleSignalsYourself();
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => void stopAll(signal));

const database = new URL(env.DATABASE_URL);
database.password = database.password ? "****" : "";
console.log(`Starting ${chosen.join(", ")}.
  API          http://127.0.0.1:${env.INGEST_PORT}/v1/locations, /v1/logins, /v1/vehicles (POST)
  reference    http://127.0.0.1:${env.INGEST_PORT}/docs (and /openapi.json); status page http://127.0.0.1:${env.INGEST_PORT}/
  health       ${chosen.map((name) => `${name} http://127.0.0.1:${env[STAGES[name].port]}/readyz`).join("\n               ")}
  metrics      the same ports, /metrics
  broker       ${env.KAFKA_BROKERS.join(",")}   topics: bun run kafka topics --list
               a topic's records: bun run kafka console-consumer --topic locations.enriched --from-beginning
  database     ${database}   (psql with the same URL and its password)
Ctrl-C stops everything in order.
`);
await Promise.all(chosen.map((name) => supervise(name)));
