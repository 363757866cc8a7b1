/**
 * Terminal output the tools share: a progress bar redrawn in place on a TTY (plain lines every few seconds
 * otherwise, so CI logs stay readable) and aligned text tables.
 */
import type { Tally } from "./traffic.ts";

const BAR_WIDTH = 24;
const TTY_REDRAW_MS = 200;
const LOG_EVERY_MS = 5_000;

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

/** One status line of a tally: counts and the rate so far. */
export function statusLine(tally: Tally): string {
  const seconds = Math.max(tally.elapsedMs, 1) / 1000;
  return (
    `${fmt(tally.sent)} sent, ${fmt(tally.accepted)} accepted, ${fmt(tally.rejected)} rejected, ` +
    `${fmt(tally.indeterminate)} indeterminate, ${fmt(tally.sent / seconds)} ev/s`
  );
}

/**
 * Shows progress towards `total()` (0 to 1, or undefined when there is no end but a signal) with the status
 * `line()`: a bar redrawn with `\r` when `tty`, else a log line every 5 s.
 *
 * @example
 * const progress = startProgress(() => statusLine(tally), () => tally.sent / 1000, process.stdout.isTTY === true);
 * progress.stop(); // when done
 */
export function startProgress(line: () => string, total: () => number | undefined, tty: boolean, write = printOut) {
  let lastLog = performance.now();
  const draw = () => {
    const fraction = total();
    if (tty) {
      const filled = fraction === undefined ? 0 : Math.round(Math.min(1, fraction) * BAR_WIDTH);
      const bar = fraction === undefined ? "" : `[${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] `;
      const percent = fraction === undefined ? "" : `${Math.floor(Math.min(1, fraction) * 100)}% `;
      // \x1b[2K clears the line, so a shorter line leaves no tail of the previous one.
      write(`\r\x1b[2K${bar}${percent}${line()}`);
    } else if (performance.now() - lastLog >= LOG_EVERY_MS) {
      lastLog = performance.now();
      write(`${new Date().toISOString()} ${line()}\n`);
    }
  };
  const timer = setInterval(draw, tty ? TTY_REDRAW_MS : 500);
  return {
    /** Stops redrawing; on a TTY, draws once more and ends the line. */
    stop() {
      clearInterval(timer);
      if (tty) {
        draw();
        write("\n");
      }
    },
  };
}

function printOut(text: string): void {
  process.stdout.write(text);
}

/** Rows as an aligned text table; numbers are right-aligned, the first row is the header. */
export function table(rows: (string | number)[][]): string {
  const cells = rows.map((row) => row.map((cell) => (typeof cell === "number" ? fmt(cell) : cell)));
  const widths = cells[0]?.map((_, i) => Math.max(...cells.map((row) => (row[i] ?? "").length))) ?? [];
  const numeric = (rows[1] ?? []).map((cell) => typeof cell === "number");
  const line = (row: string[]) =>
    row
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const [header, ...body] = cells;
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header ?? []), rule, ...body.map(line)].join("\n");
}

/** The summary of a drive: events by outcome, then requests by status code. */
export function tallyTable(tally: Tally): string {
  const seconds = tally.elapsedMs / 1000;
  const events = table([
    ["events", "count"],
    ["sent", tally.sent],
    ["accepted (2xx)", tally.accepted],
    ["rejected (4xx/5xx)", tally.rejected],
    ["indeterminate (no answer)", tally.indeterminate],
    ["rate (events/s)", seconds > 0 ? tally.sent / seconds : 0],
  ]);
  const statuses = table([
    ["status", "requests"],
    ...[...tally.statuses].sort(([a], [b]) => a.localeCompare(b)).map(([status, n]) => [status, n]),
  ]);
  const invalid = tally.invalidRequests > 0 ? `\n${fmt(tally.invalidRequests)} requests were invalid on purpose` : "";
  return `${events}\n\n${statuses}\n\n${fmt(tally.requests)} requests in ${seconds.toFixed(1)} s${invalid}`;
}
