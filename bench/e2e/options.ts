/** The command line of `bun run bench:e2e`, each option also readable from the environment. */
import { join } from "node:path";
import { parseArgs } from "node:util";

export const USAGE = `Usage: bun run bench:e2e [options]
End-to-end load report: every stage as its own process on the local stack (bun run stack), fixed offered rates,
latency from each HTTP 202 to its row's persisted_at, events/s per stage, RSS per service.

  --rates LIST          fixed rates, events/s, comma-separated (E2E_RATES, default 1000,5000)
  --max auto|N|off      also the highest sustainable rate: search for it (auto), take N, or skip (E2E_MAX, auto)
  --duration S          seconds per fixed-rate step (E2E_DURATION_S, default 20)
  --probe-duration S    seconds per probe of the max-rate search (E2E_PROBE_S, default 10)
  --batch N             events per request: 1 = single-event JSON POSTs, more = NDJSON (E2E_BATCH, default 1)
  --login-share X       share of login events, 0 to 1 (E2E_LOGIN_SHARE, default 0.1)
  --drain-timeout S     how long a backlog may take to drain (E2E_DRAIN_TIMEOUT_S, default 300)
  --foreign-wait S      wait up to S seconds for other pipeline work to finish (E2E_FOREIGN_WAIT_S, default 900)
  --ignore-foreign      measure even while other pipeline work runs (the report lists what it saw)
  --keep-rows           keep the bench's rows in locations and logins (deleted by default)
  --out DIR             where the report and chart go (E2E_OUT, default bench/results)
  --seed TEXT           traffic seed (E2E_SEED, default e2e)
BENCH_STAGE_ENV="NAME=value ..." and BENCH_STAGE_FLAGS="..." apply to all four stages (e.g. BATCH_MAX_RECORDS=500).`;

export interface Options {
  rates: number[];
  max: "auto" | "off" | number;
  durationMs: number;
  probeMs: number;
  batch: number;
  loginShare: number;
  drainTimeoutMs: number;
  foreignWaitMs: number;
  ignoreForeign: boolean;
  keepRows: boolean;
  out: string;
  seed: string;
}

/** Parses argv and the environment; throws with a readable message on a bad value. */
export function parseOptions(argv = process.argv.slice(2), env = process.env): Options | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      rates: { type: "string" },
      max: { type: "string" },
      duration: { type: "string" },
      "probe-duration": { type: "string" },
      batch: { type: "string" },
      "login-share": { type: "string" },
      "drain-timeout": { type: "string" },
      "foreign-wait": { type: "string" },
      "ignore-foreign": { type: "boolean", default: false },
      "keep-rows": { type: "boolean", default: false },
      out: { type: "string" },
      seed: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return "help";
  const number = (flag: string, raw: string | undefined, fallback: number, min: number, max = Infinity) => {
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isFinite(value) || value < min || value > max)
      throw new Error(`--${flag} must be a number from ${min} to ${max}, got "${raw}"`);
    return value;
  };
  const rates = (values.rates ?? env.E2E_RATES ?? "1000,5000")
    .split(",")
    .filter(Boolean)
    .map((r) => number("rates", r, 0, 1));
  const maxRaw = values.max ?? env.E2E_MAX ?? "auto";
  return {
    rates,
    max: maxRaw === "auto" || maxRaw === "off" ? maxRaw : number("max", maxRaw, 0, 1),
    durationMs: number("duration", values.duration ?? env.E2E_DURATION_S, 20, 1) * 1000,
    probeMs: number("probe-duration", values["probe-duration"] ?? env.E2E_PROBE_S, 10, 1) * 1000,
    batch: Math.round(number("batch", values.batch ?? env.E2E_BATCH, 1, 1, 10_000)),
    loginShare: number("login-share", values["login-share"] ?? env.E2E_LOGIN_SHARE, 0.1, 0, 1),
    drainTimeoutMs: number("drain-timeout", values["drain-timeout"] ?? env.E2E_DRAIN_TIMEOUT_S, 300, 1) * 1000,
    foreignWaitMs: number("foreign-wait", values["foreign-wait"] ?? env.E2E_FOREIGN_WAIT_S, 900, 0) * 1000,
    ignoreForeign: values["ignore-foreign"] === true,
    keepRows: values["keep-rows"] === true,
    out: values.out ?? env.E2E_OUT ?? join(import.meta.dir, "..", "results"),
    seed: values.seed ?? env.E2E_SEED ?? "e2e",
  };
}
