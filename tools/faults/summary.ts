/** The one summary a fault run prints, and its exit status. */
import { table } from "../report.ts";
import { type Check, type Contamination, resultOf } from "./checks.ts";
import { FATES, type Ledger } from "./ledger.ts";
import { type Stream, statuses } from "./load.ts";
import type { Crash } from "./pipeline.ts";

export interface SummaryInput {
  title: string;
  streams: Stream[];
  ledger: Ledger;
  timeline: { at: string; fault: string; result: string }[];
  starts: Map<string, number>;
  crashes: Crash[];
  checks: Check[];
  contamination: Contamination;
  /** Problems of the harness itself (a failed run, a fault it could not inject). */
  problems: { text: string; fatal: boolean }[];
  details: string[];
  otherMembers: string[];
  logDir: string;
}

/** Prints the summary; returns the exit status: 0 pass, 1 a violation, 3 only inconclusive checks. */
export function printSummary(input: SummaryInput): number {
  const rule = "=".repeat(110);
  const out: string[] = [rule, input.title, ""];
  out.push(
    table([
      ["stream", "sent", "accepted", "rejected", "unanswered", "requests", "events/s"],
      ...input.streams.map((s) => [
        s.kind,
        s.tally.sent,
        s.tally.accepted,
        s.tally.rejected,
        s.tally.indeterminate,
        s.tally.requests,
        s.tally.sent / Math.max(1, s.tally.elapsedMs / 1000),
      ]),
    ]),
    "",
    table([
      ["fate", "requests", "events"],
      ...FATES.map((f) => [f, input.ledger.requests.get(f) ?? 0, input.ledger.events(f)]),
    ]),
    "",
    `requests by status: ${[...statuses(input.streams)].map(([k, n]) => `${k} × ${n}`).join(", ")}`,
    "",
    table([["at (s)", "fault", "result"], ...input.timeline.map((t) => [t.at, t.fault, t.result])]),
    "",
    `process starts: ${[...input.starts].map(([instance, n]) => `${instance} ×${n}`).join(", ")}`,
    `crashes (exits the run did not cause; restarted): ${input.crashes.length === 0 ? "none" : ""}`,
    ...input.crashes.map(
      (c) =>
        `  ${c.instance} lifetime ${c.lifetime} exited ${c.exit} at ${new Date(c.at).toISOString()}: ` +
        `${c.reason ?? "no error logged"} (${c.log})`,
    ),
    `other traffic during the run: ${input.contamination.otherLocations} location, ` +
      `${input.contamination.otherVehicles} vehicle and ${input.contamination.otherLogins} login records of others, ` +
      `${input.contamination.otherMembers} sightings of other members in the stages' groups`,
  );
  const rows = input.checks.map((c) => [c.name, String(c.value), c.expected, resultOf(c, input.contamination)]);
  for (const p of input.problems) rows.push(["harness", p.text, "", p.fatal ? "FAIL" : ""]);
  out.push("", table([["check", "value", "expected", "result"], ...rows]));
  if (input.details.length > 0) out.push("", ...input.details);
  if (input.otherMembers.length > 0)
    out.push("", "other members seen:", ...input.otherMembers.slice(0, 10).map((m) => `  ${m}`));
  const failed = rows.some((row) => row[3] === "FAIL");
  const inconclusive = rows.some((row) => row[3] === "INCONCLUSIVE");
  const verdict = failed ? "FAIL" : inconclusive ? "INCONCLUSIVE (other traffic shared the pipeline)" : "PASS";
  out.push("", `${verdict}; logs in ${input.logDir}`, rule);
  console.log(`\n${out.join("\n")}`);
  return failed ? 1 : inconclusive ? 3 : 0;
}
