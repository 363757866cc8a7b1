/**
 * Reading the stages' `/metrics`: just enough of the Prometheus text format for tests, benchmarks and the fault
 * run to read counters and histograms, and the difference between two scrapes of a measured window.
 */
import { fetchText } from "../shared/deadline.ts";

/** The `/metrics` text of the stage at `url`, or undefined when it does not answer within `timeoutMs`. */
export async function scrape(url: string, timeoutMs = 3_000): Promise<string | undefined> {
  try {
    const { response, text } = await fetchText(`${url}/metrics`, {}, timeoutMs);
    return response.ok ? text : undefined;
  } catch {
    return undefined;
  }
}

/** One sample: metric name, labels, value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** The samples of an exposition (comments and blank lines skipped). */
export function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const match = LINE.exec(line);
    if (!match) continue;
    const labels: Record<string, string> = {};
    for (const [, key, value] of (match[2] ?? "").matchAll(LABEL)) labels[key as string] = value as string;
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of `name` over the samples whose labels include `where`. */
export function sumOf(samples: Sample[], name: string, where: Record<string, string> = {}): number {
  let sum = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(where).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

/**
 * The sum of every sample of `name` in an exposition whose labels include `where` (0 when absent).
 *
 * @example
 * metricSum(await scrape(url) ?? "", "records_in_total", { topic: "logins.raw" });
 */
export function metricSum(exposition: string, name: string, where: Record<string, string> = {}): number {
  return sumOf(parseExposition(exposition), name, where);
}

/** A histogram's change between two scrapes: observations, their mean, and bucket-interpolated quantiles. */
export interface HistogramDelta {
  count: number;
  /** Seconds. */
  mean: number;
  /** Seconds, interpolated within the bucket as Prometheus' histogram_quantile does. */
  p50: number;
  p99: number;
}

/** The change of histogram `name` from `before` to `after` (its `_bucket`, `_sum` and `_count` series). */
export function histogramDelta(before: Sample[], after: Sample[], name: string): HistogramDelta {
  const count = sumOf(after, `${name}_count`) - sumOf(before, `${name}_count`);
  const sum = sumOf(after, `${name}_sum`) - sumOf(before, `${name}_sum`);
  const bounds = [...new Set(after.filter((s) => s.name === `${name}_bucket`).map((s) => s.labels.le ?? "+Inf"))]
    .map((le) => (le === "+Inf" ? Infinity : Number(le)))
    .sort((a, b) => a - b);
  const cumulative = bounds.map((le) => {
    const at = (samples: Sample[]) => sumOf(samples, `${name}_bucket`, { le: le === Infinity ? "+Inf" : String(le) });
    return { le, n: at(after) - at(before) };
  });
  const quantile = (q: number) => {
    if (count === 0) return 0;
    const rank = q * count;
    let lower = 0;
    let below = 0;
    for (const { le, n } of cumulative) {
      if (n >= rank) {
        if (le === Infinity) return lower; // beyond the last bound: its lower edge is all we know
        return lower + ((le - lower) * (rank - below)) / Math.max(1, n - below);
      }
      lower = le;
      below = n;
    }
    return lower;
  };
  return { count, mean: count > 0 ? sum / count : 0, p50: quantile(0.5), p99: quantile(0.99) };
}
