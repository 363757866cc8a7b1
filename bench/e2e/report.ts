/**
 * bench/results/<date>.md: the machine, the commands, the results table, the goals with a pass or
 * miss each, where the time went (the stages' own histograms) and anything that may have disturbed the run.
 */
import { cpus, freemem, totalmem } from "node:os";
import type { Sql } from "../../persist/postgres/db.ts";
import type { HistogramDelta } from "../../tools/metrics.ts";
import { type ChartStep, RSVG_INSTALL } from "./chart.ts";
import type { Distribution } from "./latency.ts";
import type { Options } from "./options.ts";
import { PIPELINE } from "./pipeline.ts";
import { CRITERIA, verdict } from "./search.ts";
import type { StepResult } from "./step.ts";

/** The end-to-end goals: the rate to sustain, its latency and each stage's memory. */
export const GOALS = { rate: 5_000, p50Ms: 50, p99Ms: 250, rssBytes: 120e6 };

const STAGE_NAMES = PIPELINE;

const ms = (n: number) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
const int = (n: number) => Math.round(n).toLocaleString("en-US");
const mb = (bytes: number) => (bytes / 1e6).toFixed(0);
const mark = (ok: boolean) => (ok ? "pass" : "**miss**");
const row = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
const table = (header: string[], rows: (string | number)[][]) =>
  [row(header), row(header.map(() => "---")), ...rows.map(row)].join("\n");
const dist = (d: Distribution) => `${ms(d.p50)} / ${ms(d.p99)}`;
const hist = (h: HistogramDelta) => (h.count ? `${ms(h.mean * 1000)} / ${ms(h.p99 * 1000)} (${int(h.count)})` : "-");

/** What the report needs besides the steps. */
export interface ReportInput {
  path: string;
  chart: { png: string | undefined; svg: string; note: string };
  options: Options;
  steps: ChartStep[];
  probes: StepResult[];
  interference: string[];
  runId: string;
  /** The exact command line, for "how to reproduce". */
  command: string;
  stageEnv: string;
  sql: Sql;
  startedAt: Date;
  /** Per stage, the VmHWM at the end: the peak since it started, the initial drain included. */
  lifetimePeaks: Map<string, number>;
  startup: Startup;
}

/** The stages before the first step: memory when ready and once drained, and what they had to drain. */
export interface Startup {
  ready: Map<string, { rss: number; anon: number }>;
  drained: Map<string, { rss: number; anon: number }>;
  backlog: { enrich: number; persist: number };
}

/** Facts about the machine and the servers, for the report's header. */
async function machine(sql: Sql) {
  const [pg] = await sql<{ version: string; rows: string }[]>`
    select split_part(version(), ' on ', 1) as version,
      (select reltuples::bigint::text from pg_class where relname = 'locations') as rows`;
  const commit = Bun.spawnSync(["git", "rev-parse", "--short", "HEAD"]).stdout.toString().trim();
  const dirty = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=no"]).stdout.toString().trim();
  return {
    cores: navigator.hardwareConcurrency,
    cpu: cpus()[0]?.model ?? "unknown",
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB (${(freemem() / 2 ** 30).toFixed(1)} GiB free at the end)`,
    kernel: Bun.spawnSync(["uname", "-r"]).stdout.toString().trim(),
    bun: Bun.version,
    postgres: pg?.version ?? "unknown",
    locationsRows: Number(pg?.rows ?? 0),
    commit: `${commit}${dirty ? " (with uncommitted changes)" : ""}`,
  };
}

function resultsTable(steps: ChartStep[]): string {
  return table(
    [
      "step",
      "offered ev/s",
      "sent ev/s",
      "p50 ms",
      "p95 ms",
      "p99 ms",
      "max ms",
      "ingest ev/s",
      "enrich ev/s",
      "aggregate ev/s",
      "persist ev/s",
      "kept up",
    ],
    steps.map(({ label, step }) => {
      const e = step.latency.locations.endToEnd;
      const sent = (step.load.tallies.locations.sent + step.load.tallies.logins.sent) / step.seconds;
      return [
        label,
        int(step.options.rate),
        int(sent),
        ms(e.p50),
        ms(e.p95),
        ms(e.p99),
        ms(e.max),
        int(step.stageRates.ingest),
        int(step.stageRates.enrich),
        int(step.stageRates.aggregate),
        int(step.stageRates.persist),
        verdict(step).ok ? "yes" : "no",
      ];
    }),
  );
}

function memoryTable(steps: ChartStep[], lifetimePeaks: Map<string, number>, startup: Startup): string {
  const at = (sample: Map<string, { rss: number; anon: number }>) =>
    STAGE_NAMES.map((name) => {
      const m = sample.get(name);
      return m ? `${mb(m.rss)} (${mb(m.anon)})` : "-";
    });
  return table(
    ["step", ...STAGE_NAMES.map((s) => `${s} VmRSS peak / avg (private peak) MB`)],
    [
      ["ready, before any record", ...at(startup.ready)],
      ["after draining the backlog", ...at(startup.drained)],
      ...steps.map(({ label, step }) => [
        label,
        ...STAGE_NAMES.map((name) => {
          const m = step.usage.memory.get(name);
          return m ? `${mb(m.peak)} / ${mb(m.average)} (${mb(m.anonPeak)})` : "-";
        }),
      ]),
      ["whole run (VmHWM)", ...STAGE_NAMES.map((name) => `${mb(lifetimePeaks.get(name) ?? 0)} / -`)],
    ],
  );
}

function cpuTable(steps: ChartStep[]): string {
  const names = [...(steps[0]?.step.usage.cores.keys() ?? [])];
  return table(
    ["step", ...names, "anything else", "machine"],
    steps.map(({ label, step }) => {
      const ours = [...step.usage.cores.values()].reduce((a, b) => a + b, 0);
      return [
        label,
        ...names.map((n) => (step.usage.cores.get(n) ?? 0).toFixed(2)),
        Math.max(0, step.usage.machineCores - ours).toFixed(2),
        `${step.usage.machineCores.toFixed(2)} of ${navigator.hardwareConcurrency}`,
      ];
    }),
  );
}

function hopsTable(steps: ChartStep[]): string {
  return table(
    [
      "step",
      "202 → row (e2e)",
      "ingested_at → 202",
      "ingested_at → row",
      "ingest queue: ingested_at → raw record",
      "enrich hop: raw → enriched record",
      "persist hop: enriched record → row",
      "logins 202 → row",
    ],
    steps.map(({ label, step }) => [
      label,
      dist(step.latency.locations.endToEnd),
      dist(step.latency.locations.ack),
      dist(step.latency.locations.pipeline),
      dist(step.hops.ingestQueue),
      dist(step.hops.enrich),
      dist(step.hops.persist),
      step.latency.logins.found ? dist(step.latency.logins.endToEnd) : "-",
    ]),
  );
}

function timingsTable(steps: ChartStep[]): string {
  return table(
    ["step", "ingest produce", "enrich batch", "aggregate batch", "persist batch", "persist write"],
    steps.map(({ label, step }) => [
      label,
      hist(step.timings.ingestProduce),
      hist(step.timings.enrichBatch),
      hist(step.timings.aggregateBatch),
      hist(step.timings.persistBatch),
      hist(step.timings.persistWrite),
    ]),
  );
}

function goalsTable(steps: ChartStep[]): string {
  const rows: string[][] = [];
  const atGoal = steps.find(({ step }) => step.options.rate === GOALS.rate)?.step;
  if (atGoal) {
    const e = atGoal.latency.locations.endToEnd;
    rows.push([`p50 ≤ ${GOALS.p50Ms} ms at 5k events/s`, `${ms(e.p50)} ms`, mark(e.p50 <= GOALS.p50Ms)]);
    rows.push([`p99 ≤ ${GOALS.p99Ms} ms at 5k events/s`, `${ms(e.p99)} ms`, mark(e.p99 <= GOALS.p99Ms)]);
  } else {
    rows.push([`latency at 5k events/s`, "not measured (no 5,000 ev/s step)", "-"]);
  }
  for (const name of STAGE_NAMES) {
    const peaks = steps.map(({ step }) => step.usage.memory.get(name)?.peak ?? 0);
    const peak = Math.max(...peaks);
    const worst = steps[peaks.indexOf(peak)]?.label ?? "";
    rows.push([`${name} RSS ≤ 120 MB (every step)`, `peak ${mb(peak)} MB (at ${worst})`, mark(peak <= GOALS.rssBytes)]);
  }
  return table(["goal", "measured", "result"], rows);
}

function probesTable(probes: StepResult[]): string {
  return table(
    [
      "offered ev/s",
      "s",
      "sent ev/s",
      "p50 ms",
      "p99 ms",
      "p99 first / last third",
      "in flight at end",
      "held",
      "why not",
    ],
    probes.map((p) => {
      const l = p.latency.locations;
      const v = verdict(p);
      return [
        int(p.options.rate),
        (p.options.durationMs / 1000).toFixed(0),
        int((p.load.tallies.locations.sent + p.load.tallies.logins.sent) / p.seconds),
        ms(l.endToEnd.p50),
        ms(l.endToEnd.p99),
        `${ms(l.p99FirstThird)} / ${ms(l.p99LastThird)}`,
        int(l.backlogAtEnd),
        v.ok ? "yes" : "no",
        v.reasons.join("; ") || "-",
      ];
    }),
  );
}

/**
 * Facts the numbers show, computed so that they hold for whatever run wrote the report: the slowest hop of each
 * step, how busy the machine was, what stopped the max-rate search, and how much of each service's RSS is the
 * shared Bun executable.
 */
function findings(steps: ChartStep[], probes: StepResult[]): string[] {
  const out: string[] = [];
  for (const { label, step } of steps) {
    const hops = [
      ["ingest's queue", step.hops.ingestQueue.p50],
      ["enrich", step.hops.enrich.p50],
      ["persist", step.hops.persist.p50],
    ] as const;
    const [slowest, p50] = [...hops].sort((a, b) => b[1] - a[1])[0] ?? ["-", 0];
    const busy = step.usage.machineCores / navigator.hardwareConcurrency;
    const write = step.timings.persistWrite;
    const perBatch = write.count > 0 ? (step.stageRates.persist * step.seconds) / write.count : 0;
    out.push(
      `- ${label}: the slowest hop is ${slowest} (p50 ${ms(p50)} ms of ${ms(step.latency.locations.pipeline.p50)} ms ` +
        `from ingested_at to the row); the machine was ${Math.round(busy * 100)}% busy; persist wrote ` +
        `${int(write.count / step.seconds)} transactions/s of ~${int(perBatch)} records, ${ms(write.mean * 1000)} ms each on average.`,
    );
  }
  const failed = probes.filter((p) => !verdict(p).ok).sort((a, b) => a.options.rate - b.options.rate)[0];
  if (failed)
    out.push(
      `- The lowest rate that did not hold: ${int(failed.options.rate)} ev/s (${verdict(failed).reasons.join("; ")}).`,
    );
  const last = steps.at(-1)?.step;
  if (last) {
    const shared = STAGE_NAMES.map((n) => {
      const m = last.usage.memory.get(n);
      return m ? m.peak - m.anonPeak : 0;
    });
    out.push(
      `- Of each service's VmRSS, ${mb(Math.min(...shared))}-${mb(Math.max(...shared))} MB (at ${steps.at(-1)?.label}) ` +
        "are file-backed pages, mostly the Bun executable, shared by the stages' processes: VmRSS counts them once per process.",
    );
  }
  return out;
}

/** Writes the report; returns its path. */
export async function writeReport(input: ReportInput): Promise<string> {
  const { options, steps } = input;
  const m = await machine(input.sql);
  const requestShape =
    options.batch === 1
      ? "single-event POSTs (`application/json`, one event per request)"
      : `NDJSON POSTs of ${options.batch} events each`;
  const lost = [...steps.map((s) => s.step), ...input.probes].reduce(
    (n, s) => n + s.latency.locations.missing + s.latency.logins.missing,
    0,
  );
  const chartName = input.chart.png ? input.chart.png.split("/").pop() : undefined;
  const lines = [
    `# End-to-end load report, ${input.startedAt.toISOString().slice(0, 10)}`,
    "",
    `Run \`${input.runId}\`, started ${input.startedAt.toISOString()}, commit ${m.commit}. Generated by \`bun run bench:e2e\` (bench/e2e.ts).`,
    "",
    chartName ? `![latency and throughput](${chartName})` : `Chart: ${input.chart.note} (SVG: ${input.chart.svg})`,
    "",
    "## Machine",
    "",
    `- ${m.cores} cores (${m.cpu}), ${m.memory}, Linux ${m.kernel}`,
    `- Bun ${m.bun}; ${m.postgres}; Kafka 4.2.1 (KRaft, single node, from \`bun run stack\`), 6 partitions per topic`,
    `- \`locations\` held ~${int(m.locationsRows)} rows (inserts maintain its primary key and (user_id, event_time) index)`,
    "- Everything on this one machine: the bench client, the stages, the broker and PostgreSQL share the cores.",
    "",
    "## How it was measured",
    "",
    `- Command: \`${input.command}\`${input.stageEnv ? `; stage environment \`${input.stageEnv}\`` : ""}.`,
    `- ${PIPELINE.map((name) => `\`${name}.ts\``).join(", ")} each run as their own process (\`bun run <stage>.ts\`,`,
    "  LOG_LEVEL=warn, free ports), ready once `/readyz` answers 200 and each consumer group has joined. The groups'",
    "  backlog is drained first (committed offsets equal end offsets), then a 5 s warm-up at 1k events/s.",
    `  This run drained ${int(input.startup.backlog.enrich)} records for enrich and ${int(input.startup.backlog.persist)} for persist that other runs had left.`,
    `- Traffic (tools/generators.ts, tools/traffic.ts, seed \`${options.seed}\`): ${requestShape}; ` +
      `${Math.round((1 - options.loginShare) * 100)}% location pings of users moving along paths, ` +
      `${Math.round(options.loginShare * 100)}% logins; paced to the offered rate with enough requests in flight ` +
      "per stream for 40 ms per request (`concurrencyFor` in bench/e2e/load.ts), so pacing, not waiting, sets the rate. " +
      "Every event carries a client `event_id` unique to the run and step.",
    `- Each fixed-rate step offers its rate for ${options.durationMs / 1000} s; the max-rate probes for ${options.probeMs / 1000} s.`,
    "- **Latency** = `persisted_at` of the row − the moment the client had read the request's 202, for every accepted",
    "  location event (no sampling), joined by event_id after the step has drained. Same machine, same clock.",
    "  `persisted_at` is `clock_timestamp()` when the row is inserted inside persist's transaction, so it is slightly",
    "  *before* the row becomes visible at commit: the rest of that transaction (offset update, commit, fsync) is not",
    "  counted. The `persist write` column below (the whole transaction) bounds that gap.",
    "- **Stage throughput** = change of each stage's own counter over the sending window: `ingest_events_total{outcome=accepted}`,",
    "  and `records_in_total` of enrich (locations), aggregate (logins) and persist (locations.enriched + logins.raw + logins.stats).",
    "  /metrics is scraped only at the two ends of a window: prom-client's default metrics cost a stage CPU per scrape.",
    "- **RSS** = VmRSS from /proc/<pid>/status, sampled every 250 ms during the sending window: peak and average. MB = 10^6 bytes.",
    "",
    "## Results",
    "",
    resultsTable(steps),
    "",
    `Latency columns are for location events (HTTP → ingest → locations.raw → enrich → locations.enriched → persist).`,
    `Accepted events without a row after the drain: ${lost} (must be 0).`,
    "",
    "### Goals",
    "",
    goalsTable(steps),
    "",
    "### Resident memory per service",
    "",
    memoryTable(steps, input.lifetimePeaks, input.startup),
    "",
    "Peak and average over each step's sending window; the last row is each process's high-water mark since it",
    "started, which includes draining the backlog other runs had left in the groups before the first step. The goal",
    "is judged on VmRSS. In brackets, the peak of RssAnon, the private part: the rest is RssFile, pages of the",
    "~107 MB Bun executable that the process touched, which the stages share through the page cache.",
    "",
    "### CPU (cores kept busy on average over the sending window)",
    "",
    cpuTable(steps),
    "",
    "### Where the time goes",
    "",
    "Per location event, `p50 / p99 ms`. `ingested_at` is stamped by ingest before producing; the raw and enriched",
    "records' creation times (set by the producing client, read back from locations.raw and locations.enriched)",
    "split the rest into hops (record times have millisecond resolution). Percentiles of hops do not add up to",
    "those of the whole.",
    "",
    hopsTable(steps),
    "",
    "The stages' own histograms over the sending window, `mean / p99 ms (observations)`, p99 interpolated within",
    "Prometheus buckets. A consumer batch is timed from reading it to committing it; persist write is its transaction.",
    "",
    timingsTable(steps),
    "",
    "### Findings",
    "",
    ...findings(steps, input.probes),
    "",
    "## Highest sustainable rate",
    "",
    options.max === "auto"
      ? `Searched by stepping the offered rate up by half from the highest fixed rate that held, then bisecting to within 10%; ${CRITERIA}. The \`max\` step re-runs the best rate for the full ${options.durationMs / 1000} s, a tenth lower each time it does not hold (at most three tries; the failed tries are listed with the probes).`
      : options.max === "off"
        ? "Not searched (--max off)."
        : `Given on the command line: ${options.max} events/s.`,
    "",
    ...(input.probes.length ? [probesTable(input.probes), ""] : []),
    "## Interference",
    "",
    input.interference.length
      ? `Seen while measuring (other sessions share the broker, the database and the machine):\n\n${input.interference.map((l) => `- ${l}`).join("\n")}`
      : "None seen: no other stage, test, bench or wrk process and no other member in the pipeline's consumer groups, before or after any step.",
    "",
    "## Reproduce",
    "",
    "```sh",
    "bun run stack                      # Kafka + PostgreSQL, if not running",
    `${RSVG_INSTALL}    # rsvg-convert, for the PNG (Debian)`,
    `${input.command}`,
    "bun run bench:e2e --help           # rates, durations, batch size, login share...",
    "```",
    "",
  ];
  await Bun.write(input.path, lines.join("\n"));
  return input.path;
}

/** The measurements as JSON (without the per-event maps), so a chart or a comparison can be redone later. */
export function resultsJson(input: Pick<ReportInput, "options" | "steps" | "probes" | "runId" | "startedAt">): string {
  const plain = (step: StepResult) => ({
    ...step,
    load: { ...step.load, acked: undefined },
    usage: {
      ...step.usage,
      memory: Object.fromEntries(step.usage.memory),
      cores: Object.fromEntries(step.usage.cores),
    },
    verdict: verdict(step),
  });
  const tallies = (_key: string, value: unknown) => (value instanceof Map ? Object.fromEntries(value) : value);
  return JSON.stringify(
    {
      runId: input.runId,
      startedAt: input.startedAt,
      options: input.options,
      steps: input.steps.map(({ label, step }) => ({ label, ...plain(step) })),
      probes: input.probes.map(plain),
    },
    tallies,
    2,
  );
}
