/**
 * Who may post and how often: bearer API keys (off when none are configured) and a per-key request rate (off at
 * 0). Both answer in the same JSON error shape as the rest of the API.
 */
import type { MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { getConnInfo } from "hono/bun";
import { rateLimiter } from "hono-rate-limiter";

export interface GuardOptions {
  apiKeys: string[];
  ratePerSecond: number;
}

const unauthorized = (message: string) => ({ message: { error: message } });

/** The client a rate applies to: its API key when keys are on, else its address. */
function clientKey(c: Parameters<MiddlewareHandler>[0]): string {
  const token = c.req.header("authorization")?.replace(/^Bearer\s+/i, "");
  return token || getConnInfo(c).remote.address || "unknown";
}

/** Middleware for the event routes: authentication first, so a rate is only counted for a known key. */
export function guard({ apiKeys, ratePerSecond }: GuardOptions): MiddlewareHandler[] {
  const handlers: MiddlewareHandler[] = [];
  if (apiKeys.length > 0) {
    handlers.push(
      bearerAuth({
        token: apiKeys,
        noAuthenticationHeader: unauthorized("missing bearer token: send Authorization: Bearer <api key>"),
        invalidAuthenticationHeader: unauthorized("malformed Authorization header: expected Bearer <api key>"),
        invalidToken: unauthorized("unknown API key"),
      }),
    );
  }
  if (ratePerSecond > 0) {
    handlers.push(
      rateLimiter({
        windowMs: 1000,
        limit: ratePerSecond,
        keyGenerator: clientKey,
        message: { error: `rate limit of ${ratePerSecond} requests per second exceeded` },
      }),
    );
  }
  return handlers;
}
