/**
 * One request to the polled API: conditional when the last good page came with validators (`ETag`,
 * `Last-Modified`), bounded by a timeout, and classified so the loop knows what to do next: publish a page,
 * wait for the next tick (unchanged), wait as long as the server asked (429/503 with `Retry-After`), or back off.
 */
import { fetchText } from "../shared/deadline.ts";

/** What the server sent with the last page it served whole, to ask next time whether anything changed. */
export interface Validators {
  etag?: string;
  lastModified?: string;
}

/** Why a request gave no page; the `reason` label of `poll_errors_total`. */
export type FailureKind = "timeout" | "network" | "http" | "not_json";

export type Fetched =
  | { kind: "page"; body: unknown; validators: Validators }
  | { kind: "unchanged" }
  | { kind: "throttled"; status: number; retryAfterMs: number | undefined }
  | { kind: "failed"; failure: FailureKind; reason: string };

export interface RequestOptions {
  url: string;
  /** POLL_HEADERS: an API key, say. Sent, never logged. */
  headers: Record<string, string>;
  validators: Validators;
  timeoutMs: number;
  /** Aborts the request when the stage stops: nothing has been received, so nothing is lost. */
  signal: AbortSignal;
}

/** The longest `Retry-After` honoured: a server asking for more is asked again after this. */
const MAX_RETRY_AFTER_MS = 3_600_000;

/**
 * The wait a `Retry-After` value asks for: delay-seconds or an HTTP date; undefined when absent or unreadable.
 *
 * @example
 * retryAfterMs("120"); // 120000
 * retryAfterMs("Wed, 21 Oct 2015 07:28:00 GMT", Date.parse("2015-10-21T07:27:00Z")); // 60000
 */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const text = value.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : Date.parse(text) - now;
  return Number.isFinite(ms) ? Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms)) : undefined;
}

/**
 * Requests the page once.
 *
 * @example
 * const fetched = await fetchPage({ url, headers: {}, validators: {}, timeoutMs: 10_000, signal });
 * if (fetched.kind === "page") use(fetched.body, fetched.validators);
 */
export async function fetchPage(options: RequestOptions): Promise<Fetched> {
  const headers = new Headers({ accept: "application/json", ...options.headers });
  if (options.validators.etag) headers.set("if-none-match", options.validators.etag);
  if (options.validators.lastModified) headers.set("if-modified-since", options.validators.lastModified);
  let response: Response;
  let text: string;
  try {
    ({ response, text } = await fetchText(
      options.url,
      { headers, signal: options.signal, redirect: "follow" },
      options.timeoutMs,
    ));
  } catch (error) {
    const timedOut = (error as Error).name === "TimeoutError";
    return timedOut
      ? { kind: "failed", failure: "timeout", reason: `no answer within ${options.timeoutMs} ms` }
      : { kind: "failed", failure: "network", reason: (error as Error).message };
  }
  if (response.status === 304) return { kind: "unchanged" };
  if (response.status === 429 || response.status === 503)
    return {
      kind: "throttled",
      status: response.status,
      retryAfterMs: retryAfterMs(response.headers.get("retry-after")),
    };
  if (!response.ok) return { kind: "failed", failure: "http", reason: `HTTP ${response.status}` };
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (error) {
    return { kind: "failed", failure: "not_json", reason: `the response is not JSON: ${(error as Error).message}` };
  }
  const etag = response.headers.get("etag") ?? undefined;
  const lastModified = response.headers.get("last-modified") ?? undefined;
  return { kind: "page", body, validators: { ...(etag && { etag }), ...(lastModified && { lastModified }) } };
}
