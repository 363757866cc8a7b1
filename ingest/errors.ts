/**
 * The API's error messages, in one place: the routes answer with them, and the OpenAPI document's examples
 * are built from them, so an example cannot drift from what the API says.
 */

/** What each error answer of the event routes says, for the configured limits. */
export const ERRORS = {
  missingKey: "missing bearer token: send Authorization: Bearer <api key>",
  malformedKey: "malformed Authorization header: expected Bearer <api key>",
  unknownKey: "unknown API key",
  /** @example ERRORS.rateLimited(5) // "rate limit of 5 requests per second exceeded" */
  rateLimited: (perSecond: number) => `rate limit of ${perSecond} requests per second exceeded`,
  /** @example ERRORS.bodyTooLarge(1048576) // "body is larger than 1048576 bytes" */
  bodyTooLarge: (limitBytes: number) => `body is larger than ${limitBytes} bytes`,
  /** @example ERRORS.compressed("gzip") */
  compressed: (encoding: string) => `content encoding "${encoding}" is not supported; send the body uncompressed`,
  notAcknowledged: "the broker did not acknowledge the events in time; retry with the same event_ids",
} as const;
