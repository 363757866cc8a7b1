import { afterAll, describe, expect, test } from "bun:test";
import { fetchText, within } from "../../shared/deadline.ts";

/** A server that answers `/ok`, never answers `/silent`, and sends `/stalled`'s headers but never ends its body. */
const server = Bun.serve({
  port: 0,
  fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/ok") return new Response("fine");
    if (path === "/stalled")
      return new Response(
        new ReadableStream({
          start: (controller) => controller.enqueue(new TextEncoder().encode("partial")),
        }),
      );
    return new Promise<Response>(() => {});
  },
});
const base = `http://127.0.0.1:${server.port}`;
afterAll(() => server.stop(true));

/** The error `work` rejects with. */
async function failure(work: Promise<unknown>): Promise<unknown> {
  try {
    await work;
  } catch (error) {
    return error;
  }
  throw new Error("expected a rejection");
}

describe("fetchText", () => {
  test("gives the answer and its body", async () => {
    const { response, text } = await fetchText(`${base}/ok`, {}, 2_000);
    expect(response.status).toBe(200);
    expect(text).toBe("fine");
  });

  for (const path of ["/silent", "/stalled"])
    test(`rejects with a TimeoutError at its deadline when ${path.slice(1)}`, async () => {
      // Without the deadline the request would wait for the test's own timeout and fail it.
      const error = await failure(fetchText(`${base}${path}`, {}, 300));
      expect((error as DOMException).name).toBe("TimeoutError");
      expect((error as Error).message).toBe("no answer within 300 ms");
    });

  test("the caller's signal aborts it too", async () => {
    const caller = new AbortController();
    const pending = failure(fetchText(`${base}/silent`, { signal: caller.signal }, 10_000));
    caller.abort();
    expect(((await pending) as Error).name).toBe("AbortError");
  });
});

describe("within", () => {
  test("the work's result when it settles in time, the fallback when not", async () => {
    expect(await within(Promise.resolve("done"), 1_000, "late")).toBe("done");
    expect(await within(new Promise<string>(() => {}), 50, "late")).toBe("late");
  });
});
