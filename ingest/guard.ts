/**
 * Who may post and how often: bearer API keys (off when none are configured) and a per-key request rate (off at
 * 0). Both answer in the same JSON error shape as the rest of the API.
 */
import type { Context, MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { getConnInfo } from "hono/bun";
import { rateLimiter } from "hono-rate-limiter";
import { ERRORS } from "./errors.ts";

export interface GuardOptions {
  apiKeys: string[];
  ratePerSecond: number;
  /** Behind a proxy that appends the client's address to X-Forwarded-For (nginx in compose). */
  behindProxy: boolean;
}

const unauthorized = (message: string) => ({ message: { error: message } });

/**
 * The client a rate applies to: its API key when keys are on, else its address. Behind a proxy the address is
 * the last X-Forwarded-For entry, the one the proxy added; earlier entries come from the client and can be forged.
 */
function clientKey(c: Context, behindProxy: boolean): string {
  const token = c.req.header("authorization")?.replace(/^Bearer\s+/i, "");
  if (token) return token;
  const forwarded = behindProxy ? c.req.header("x-forwarded-for")?.split(",").pop()?.trim() : undefined;
  return forwarded || getConnInfo(c).remote.address || "unknown";
}

/** Middleware for the event routes: authentication first, so a rate is only counted for a known key. */
export function guard({ apiKeys, ratePerSecond, behindProxy }: GuardOptions): MiddlewareHandler[] {
  const handlers: MiddlewareHandler[] = [];
  if (apiKeys.length > 0) {
    handlers.push(
      bearerAuth({
        token: apiKeys,
        noAuthenticationHeader: unauthorized(ERRORS.missingKey),
        invalidAuthenticationHeader: unauthorized(ERRORS.malformedKey),
        invalidToken: unauthorized(ERRORS.unknownKey),
      }),
    );
  }
  if (ratePerSecond > 0) {
    handlers.push(
      rateLimiter({
        windowMs: 1000,
        limit: ratePerSecond,
        keyGenerator: (c) => clientKey(c, behindProxy),
        message: { error: ERRORS.rateLimited(ratePerSecond) },
      }),
    );
  }
  return handlers;
}
