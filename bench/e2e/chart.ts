/**
 * The report's chart, drawn as SVG by hand (no chart library, no browser) and turned into a PNG by
 * rsvg-convert (Debian: librsvg2-bin). Left: end-to-end latency p50/p95/p99 against the offered rate, on a
 * log scale, with the goals as dashed lines. Right: events/s each stage took in at each rate.
 */
import type { StepResult } from "./step.ts";

export const RSVG_INSTALL = "apt-get install -y librsvg2-bin";

const WIDTH = 1400;
const HEIGHT = 600;
const PANEL = { top: 70, bottom: 470, left: [90, 790], width: 560 };
const FONT = "DejaVu Sans, Helvetica, Arial, sans-serif";
const COLORS = { p50: "#1b9e77", p95: "#d95f02", p99: "#7570b3", goal: "#c0392b", grid: "#e5e5e5", axis: "#333" };
const STAGE_COLORS = ["#bdbdbd", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
const GOALS = [
  { ms: 50, label: "p50 goal 50 ms" },
  { ms: 250, label: "p99 goal 250 ms" },
];

const esc = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
const text = (x: number, y: number, body: string, attrs = "") =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attrs}>${esc(body)}</text>`;
const line = (x1: number, y1: number, x2: number, y2: number, attrs: string) =>
  `<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" ${attrs}/>`;

/** "12k", "2.5k", "800": short rate labels for axes. */
const short = (n: number) => (n >= 950 ? `${Number((n / 1000).toFixed(1))}k` : String(Math.round(n)));

/** A "nice" step (1, 2 or 5 times a power of ten) giving about `ticks` ticks up to `max`. */
function niceStep(max: number, ticks: number): number {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  return ([1, 2, 5, 10].find((m) => m * power >= raw) ?? 10) * power;
}

/** One step of the chart: its label ("1k", "5k", "max") and its measurements. */
export interface ChartStep {
  label: string;
  step: StepResult;
}

function latencyPanel(steps: ChartStep[]): string {
  const left = PANEL.left[0] as number;
  const { top, bottom, width } = PANEL;
  const points = steps.map(({ label, step }) => ({
    label,
    rate: step.options.rate,
    ...step.latency.locations.endToEnd,
  }));
  const maxRate = Math.max(...points.map((p) => p.rate)) * 1.1;
  const highest = Math.max(
    300,
    ...steps.flatMap(({ step }) => [step.latency.locations.endToEnd.p99, step.latency.locations.pipeline.p99]),
  );
  const lowest = Math.min(...points.map((p) => p.p50));
  // Whole decades around the data: 10 ms .. 1 s, say; never below 1 ms.
  const decades = {
    from: Math.max(0, Math.floor(Math.log10(Math.max(1, lowest / 1.5)))),
    to: Math.ceil(Math.log10(highest)),
  };
  const x = (rate: number) => left + (rate / maxRate) * width;
  const y = (ms: number) =>
    bottom - ((Math.log10(Math.max(1, ms)) - decades.from) / (decades.to - decades.from)) * (bottom - top);
  const parts: string[] = [];
  parts.push(
    text(left, top - 30, "End-to-end latency: HTTP 202 → row in PostgreSQL", 'font-size="18" font-weight="bold"'),
  );
  for (let d = decades.from; d <= decades.to; d++) {
    for (const m of [1, 2, 5]) {
      const ms = m * 10 ** d;
      if (ms > 10 ** decades.to) continue;
      parts.push(line(left, y(ms), left + width, y(ms), `stroke="${COLORS.grid}"`));
      parts.push(
        text(left - 8, y(ms) + 4, ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`, 'font-size="12" text-anchor="end"'),
      );
    }
  }
  const step = niceStep(maxRate, 6);
  for (let r = 0; r <= maxRate; r += step) {
    parts.push(line(x(r), bottom, x(r), bottom + 5, `stroke="${COLORS.axis}"`));
    parts.push(text(x(r), bottom + 20, short(r), 'font-size="12" text-anchor="middle"'));
  }
  parts.push(text(left + width / 2, bottom + 45, "offered rate (events/s)", 'font-size="14" text-anchor="middle"'));
  parts.push(line(left, bottom, left + width, bottom, `stroke="${COLORS.axis}"`));
  parts.push(line(left, top, left, bottom, `stroke="${COLORS.axis}"`));
  for (const goal of GOALS) {
    parts.push(line(left, y(goal.ms), left + width, y(goal.ms), `stroke="${COLORS.goal}" stroke-dasharray="6 4"`));
    parts.push(text(left + 6, y(goal.ms) - 5, goal.label, `font-size="12" fill="${COLORS.goal}"`));
  }
  // Thin dotted: the same percentiles from ingested_at (ingest's stamp) instead of the 202 the client read. Near
  // saturation the 202 reaches a busy client late while the pipeline is already at work, which shrinks 202 -> row.
  for (const key of ["p50", "p99"] as const) {
    const path = steps
      .map(({ step }, i) => {
        const value = step.latency.locations.pipeline[key];
        return `${i ? "L" : "M"}${x(step.options.rate).toFixed(1)},${y(value).toFixed(1)}`;
      })
      .join(" ");
    parts.push(`<path d="${path}" fill="none" stroke="${COLORS[key]}" stroke-width="1.5" stroke-dasharray="2 3"/>`);
  }
  for (const key of ["p50", "p95", "p99"] as const) {
    const path = points.map((p, i) => `${i ? "L" : "M"}${x(p.rate).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
    parts.push(`<path d="${path}" fill="none" stroke="${COLORS[key]}" stroke-width="2.5"/>`);
    for (const p of points) {
      parts.push(`<circle cx="${x(p.rate).toFixed(1)}" cy="${y(p[key]).toFixed(1)}" r="4.5" fill="${COLORS[key]}"/>`);
      parts.push(
        text(
          x(p.rate) + 8,
          y(p[key]) + 4,
          `${Math.round(p[key])}`,
          `font-size="11" fill="${COLORS[key]}" paint-order="stroke" stroke="white" stroke-width="3"`,
        ),
      );
    }
  }
  for (const p of points) {
    const name = p.label === short(p.rate) ? p.label : `${p.label} (${short(p.rate)})`;
    parts.push(text(x(p.rate), top - 8, name, 'font-size="12" text-anchor="middle" fill="#555"'));
  }
  const legend = (["p50", "p95", "p99"] as const).map((key, i) => {
    const lx = left + 12 + i * 80;
    return `${line(lx, top + 16, lx + 22, top + 16, `stroke="${COLORS[key]}" stroke-width="3"`)}${text(lx + 28, top + 20, key, 'font-size="13"')}`;
  });
  parts.push(`<rect x="${left + 4}" y="${top + 4}" width="250" height="24" fill="white" opacity="0.85"/>`, ...legend);
  const notes = [
    "Location events. Red dashed: the goals at 5k events/s.",
    "Thin dotted: p50 and p99 from ingested_at (ingest's stamp) to the row, whenever the client read its 202.",
  ];
  notes.forEach((note, i) => {
    parts.push(text(left, bottom + 68 + i * 17, note, 'font-size="12" fill="#555"'));
  });
  return parts.join("\n");
}

function throughputPanel(steps: ChartStep[]): string {
  const left = PANEL.left[1] as number;
  const { top, bottom, width } = PANEL;
  const series = [
    { name: "offered", value: (s: StepResult) => s.options.rate },
    { name: "ingest (accepted)", value: (s: StepResult) => s.stageRates.ingest },
    { name: "enrich (locations)", value: (s: StepResult) => s.stageRates.enrich },
    { name: "aggregate (logins)", value: (s: StepResult) => s.stageRates.aggregate },
    { name: "persist (all topics)", value: (s: StepResult) => s.stageRates.persist },
  ];
  const highest = Math.max(...steps.flatMap(({ step }) => series.map((s) => s.value(step))));
  const tick = niceStep(highest, 5);
  const top_ = Math.ceil(highest / tick) * tick;
  const y = (v: number) => bottom - (v / top_) * (bottom - top);
  const parts: string[] = [];
  parts.push(text(left, top - 30, "Events/s each stage took in (sending window)", 'font-size="18" font-weight="bold"'));
  for (let v = 0; v <= top_; v += tick) {
    parts.push(line(left, y(v), left + width, y(v), `stroke="${COLORS.grid}"`));
    parts.push(text(left - 8, y(v) + 4, short(v), 'font-size="12" text-anchor="end"'));
  }
  const group = width / steps.length;
  const bar = (group * 0.8) / series.length;
  steps.forEach(({ label, step }, g) => {
    const gx = left + g * group + group * 0.1;
    series.forEach((s, i) => {
      const value = s.value(step);
      const bx = gx + i * bar;
      parts.push(
        `<rect x="${bx.toFixed(1)}" y="${y(value).toFixed(1)}" width="${(bar - 2).toFixed(1)}" height="${(bottom - y(value)).toFixed(1)}" fill="${STAGE_COLORS[i]}"/>`,
      );
      parts.push(text(bx + bar / 2 - 1, y(value) - 4, short(value), 'font-size="10" text-anchor="middle" fill="#444"'));
    });
    parts.push(
      text(
        gx + group * 0.4,
        bottom + 20,
        `${label} (${short(step.options.rate)} offered)`,
        'font-size="13" text-anchor="middle"',
      ),
    );
  });
  parts.push(line(left, bottom, left + width, bottom, `stroke="${COLORS.axis}"`));
  parts.push(line(left, top, left, bottom, `stroke="${COLORS.axis}"`));
  series.forEach((s, i) => {
    const lx = left + 10 + (i % 3) * 185;
    const ly = bottom + 50 + Math.floor(i / 3) * 22;
    parts.push(`<rect x="${lx}" y="${ly - 11}" width="14" height="14" fill="${STAGE_COLORS[i]}"/>`);
    parts.push(text(lx + 20, ly, s.name, 'font-size="13"'));
  });
  return parts.join("\n");
}

/** The chart as an SVG document. */
export function chartSvg(steps: ChartStep[], subtitle: string): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="${FONT}">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    latencyPanel(steps),
    throughputPanel(steps),
    text(WIDTH / 2, HEIGHT - 12, subtitle, 'font-size="12" text-anchor="middle" fill="#666"'),
    "</svg>",
  ].join("\n");
}

/**
 * Writes `<base>.svg` and converts it to `<base>.png` with rsvg-convert. Without rsvg-convert only the SVG is
 * written and `note` says how to install it.
 */
export async function renderChart(steps: ChartStep[], base: string, subtitle: string) {
  const svg = `${base}.svg`;
  await Bun.write(svg, chartSvg(steps, subtitle));
  if (!Bun.which("rsvg-convert")) {
    return { svg, png: undefined, note: `rsvg-convert not found: ${RSVG_INSTALL}, then run the bench again` };
  }
  const png = `${base}.png`;
  const result = Bun.spawnSync(["rsvg-convert", "--format", "png", "--output", png, svg]);
  if (result.exitCode !== 0) return { svg, png: undefined, note: `rsvg-convert failed: ${result.stderr.toString()}` };
  return { svg, png, note: "" };
}
