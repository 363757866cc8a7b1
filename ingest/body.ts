/**
 * Turns a request body into validated events, all or nothing. Pure: no I/O, so every rule is unit-tested
 * without a server.
 */
import * as v from "valibot";
import { compiled, INVALID } from "../shared/compiled.ts";

/** Content types ingest takes; anything else is a 415. */
export const JSON_TYPE = "application/json";
export const NDJSON_TYPES = ["application/x-ndjson", "application/ndjson"];

/** At most this many issues are listed in a 400, so a bad 10,000-event body gets a readable answer. */
const MAX_LISTED_ISSUES = 100;

export interface EventIssue {
  index: number;
  path: string;
  message: string;
}

export type Parsed<T> =
  | { ok: true; events: T[] }
  | { ok: false; status: 400 | 413 | 415; error: string; issues?: EventIssue[]; issue_count?: number };

const fail = (status: 400 | 413 | 415, error: string): Parsed<never> => ({ ok: false, status, error });

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

function mediaType(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
}

/** Decodes the body into raw JSON values: one object, an array, or one value per NDJSON line. */
function decode(type: string, bytes: Uint8Array): unknown[] | Parsed<never> {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return fail(400, "body is not valid UTF-8");
  }
  if (text.trim() === "") return fail(400, "body is empty");

  if (type === JSON_TYPE) {
    try {
      const value: unknown = JSON.parse(text);
      return Array.isArray(value) ? value : [value];
    } catch (error) {
      return fail(400, `body is not valid JSON: ${(error as Error).message}`);
    }
  }

  const values: unknown[] = [];
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    try {
      values.push(JSON.parse(line));
    } catch (error) {
      return fail(400, `line ${i + 1} is not valid JSON: ${(error as Error).message}`);
    }
  }
  return values;
}

/**
 * Parses and validates a body of `contentType` against `schema`. Any bad event fails the whole body with a
 * 400 that lists each bad event by index with the field path and message.
 */
export function parseEvents<S extends v.GenericSchema>(
  schema: S,
  contentType: string | undefined,
  bytes: Uint8Array,
  maxEvents: number,
): Parsed<v.InferOutput<S>> {
  const type = mediaType(contentType);
  if (type !== JSON_TYPE && !NDJSON_TYPES.includes(type)) {
    return fail(415, `content type must be ${JSON_TYPE} or ${NDJSON_TYPES.join(" or ")}, got "${type || "none"}"`);
  }
  const values = decode(type, bytes);
  if (!Array.isArray(values)) return values;
  if (values.length === 0) return fail(400, "body holds no events");
  if (values.length > maxEvents) return fail(413, `body holds ${values.length} events, more than ${maxEvents}`);

  const events: v.InferOutput<S>[] = [];
  const issues: EventIssue[] = [];
  let issueCount = 0;
  const check = compiled(schema);
  for (const [index, value] of values.entries()) {
    // The compiled schema gives the verdict; valibot runs only on a rejection, for the messages.
    const event = hasPrototypeKey(value) ? INVALID : check(value);
    if (event !== INVALID) {
      events.push(event);
      continue;
    }
    if (hasPrototypeKey(value)) {
      issueCount++;
      if (issues.length < MAX_LISTED_ISSUES) issues.push({ index, path: "__proto__", message: "is not a known field" });
      continue;
    }
    const result = v.safeParse(schema, value, { abortPipeEarly: true });
    if (result.success) {
      events.push(result.output);
      continue;
    }
    issueCount += result.issues.length;
    for (const issue of result.issues) {
      if (issues.length < MAX_LISTED_ISSUES) issues.push(describe(index, issue));
    }
  }
  if (issueCount === 0) return { ok: true, events };
  const error = `${issueCount} invalid field(s); nothing was accepted`;
  return { ok: false, status: 400, error, issues, issue_count: issueCount };
}

/** JSON.parse keeps `__proto__` as an own key, and valibot's strict objects let it through unreported. */
function hasPrototypeKey(value: unknown): boolean {
  return typeof value === "object" && value !== null && Object.hasOwn(value, "__proto__");
}

function describe(index: number, issue: v.BaseIssue<unknown>): EventIssue {
  // A field issue has a path, possibly "" (a key that is the empty string); the event itself has none.
  return { index, path: v.getDotPath(issue) ?? "", message: issue.message };
}
