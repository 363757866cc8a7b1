/**
 * A real HTTP API for poll.ts to poll, on an ephemeral port: it serves whatever page the test sets, with an
 * ETag it honours (304 for a matching If-None-Match), and answers a queued status (429, 503) with Retry-After
 * when told to. Every request it gets is recorded with its time and headers.
 */

export interface PolledRequest {
  at: number;
  status: number;
  headers: Headers;
}

/**
 * Starts the API; `stop()` ends it.
 *
 * @example
 * const api = startPolledApi();
 * api.setPage({ data: { items: [{ id: "1", user_id: "u1", timestamp: 1694479551, lat: 1, long: 2 }] } });
 * api.throttleNext(429, "2"); // the next request gets 429 and Retry-After: 2
 */
export function startPolledApi() {
  let body = "[]";
  let version = 0;
  const throttles: { status: number; retryAfter: string }[] = [];
  const requests: PolledRequest[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch(request) {
      const answer = (status: number, text: string | null, headers: Record<string, string> = {}) => {
        requests.push({ at: Date.now(), status, headers: request.headers });
        return new Response(text, { status, headers });
      };
      const throttle = throttles.shift();
      if (throttle) return answer(throttle.status, "slow down", { "retry-after": throttle.retryAfter });
      const etag = `"v${version}"`;
      if (request.headers.get("if-none-match") === etag) return answer(304, null, { etag });
      return answer(200, body, { etag, "content-type": "application/json" });
    },
  });
  return {
    url: `http://127.0.0.1:${server.port}`,
    requests,
    /** Serves `page` from now on, as JSON, under a new ETag. */
    setPage(page: unknown) {
      body = JSON.stringify(page);
      version++;
    },
    /** Serves `text` as it is (malformed JSON, say), under a new ETag. */
    setRaw(text: string) {
      body = text;
      version++;
    },
    /** The next request is answered `status` with `Retry-After: retryAfter`. */
    throttleNext(status: 429 | 503, retryAfter: string) {
      throttles.push({ status, retryAfter });
    },
    stop: () => server.stop(true),
  };
}

export type PolledApi = ReturnType<typeof startPolledApi>;
