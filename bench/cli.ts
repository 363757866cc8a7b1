/**
 * The stage benches' command line: number options in (each a flag or an environment variable), and out the
 * figures of a run, each beside its ratio to the ceiling measured in the same run (absolute numbers drift
 * between runs and machines; the ratio is what the targets are about).
 */
import { parseArgs } from "node:util";

/** A failure with a message meant for the person running the bench; no stack trace needed. */
export class BenchError extends Error {}

/** Runs a bench's `main` and exits with its code; a {@link BenchError} is printed as its message alone. */
export async function runBench(main: () => Promise<number>): Promise<never> {
  process.exit(
    await main().catch((error: unknown) => {
      console.error(error instanceof BenchError ? error.message : error);
      return 1;
    }),
  );
}

/** Whole-number command-line flags, each also readable from the environment, with a fallback and a minimum (0). */
export function numberOptions<K extends string>(spec: Record<K, { env: string; fallback: number; min?: number }>) {
  const { values } = parseArgs({
    options: Object.fromEntries(Object.keys(spec).map((flag) => [flag, { type: "string" as const }])),
  });
  const result = {} as Record<K, number>;
  for (const flag of Object.keys(spec) as K[]) {
    const { env, fallback, min = 0 } = spec[flag];
    const raw = (values as Record<string, string | undefined>)[flag] ?? process.env[env];
    const value = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(value) || value < min)
      throw new BenchError(`--${flag} / ${env} must be a whole number of at least ${min}, got "${raw}"`);
    result[flag] = value;
  }
  return result;
}

/**
 * The options of a bench that times a consumer stage through a backlog: `--events` / BENCH_EVENTS, how many
 * events, and `--timeout` / BENCH_TIMEOUT_S, how long each wait (a drain, the measured run) may take.
 */
export function backlogOptions(fallbackEvents: number): { count: number; timeoutMs: number } {
  const { events, timeout } = numberOptions({
    events: { env: "BENCH_EVENTS", fallback: fallbackEvents, min: 1 },
    timeout: { env: "BENCH_TIMEOUT_S", fallback: 300, min: 1 },
  });
  return { count: events, timeoutMs: timeout * 1000 };
}

/** Thousands separators, no decimals. */
export const int = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "-");

/** Bytes as MiB with one decimal. */
export const mib = (bytes: number): string => `${(bytes / 1_048_576).toFixed(1)} MiB`;

/** Prints `rows` as an aligned table; the first row is the header, the first column is left-aligned. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]?.map((_, col) => Math.max(...rows.map((row) => row[col]?.length ?? 0))) ?? [];
  for (const [i, row] of rows.entries()) {
    console.log(
      row.map((cell, col) => (col === 0 ? cell.padEnd(widths[col] ?? 0) : cell.padStart(widths[col] ?? 0))).join("  "),
    );
    if (i === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "));
  }
}

/** One figure of a bench: a rate, and where it has one, its target and whether the run met it. */
export interface Figure {
  name: string;
  rate: number;
  target?: string;
  result?: string;
}

/**
 * Prints `figures` as a table, blank lines around it, each beside its ratio to the first one, the ceiling.
 * `what` names what they were measured on (e.g. "points"), `unit` their rate (e.g. "events/s").
 */
export function printFigures(what: string, unit: string, [ceiling, ...others]: [Figure, ...Figure[]]): void {
  const row = ({ name, rate, target = "-", result = "-" }: Figure) => [
    name,
    int(rate),
    `${(rate / ceiling.rate).toFixed(2)}x`,
    target,
    result,
  ];
  console.log();
  printTable([
    [`figure (same ${what}, same run)`, unit, "/ ceiling", "target", "result"],
    row({ ...ceiling, name: `ceiling: ${ceiling.name}` }),
    ...others.map(row),
  ]);
  console.log();
}
