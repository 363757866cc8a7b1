import { describe, expect, test } from "bun:test";
import { type CoalesceOptions, createCoalescer } from "../../shared/kafka/coalesce.ts";

/** One flush call the coalescer made, completed by the test when it chooses. */
interface Call<T, R> {
  items: T[];
  resolve: (results: R[]) => void;
  reject: (error: unknown) => void;
  settled: boolean;
}

/** A flush function that records each call and leaves it in flight until the test settles it. */
function recordingFlush<T, R>() {
  const calls: Call<T, R>[] = [];
  let active = 0;
  let maxActive = 0;
  const flush = (items: T[]): Promise<R[]> => {
    const { promise, resolve, reject } = Promise.withResolvers<R[]>();
    const call: Call<T, R> = { items: [...items], resolve, reject, settled: false };
    calls.push(call);
    active++;
    maxActive = Math.max(maxActive, active);
    return promise.finally(() => {
      call.settled = true;
      active--;
    });
  };
  return {
    flush,
    calls,
    pending: () => calls.filter((call) => !call.settled),
    get active() {
      return active;
    },
    get maxActive() {
      return maxActive;
    },
  };
}

/** A promise's state, readable synchronously. */
function track<T>(promise: Promise<T>) {
  const state: { status: "pending" | "resolved" | "rejected"; value?: T; error?: unknown } = { status: "pending" };
  promise.then(
    (value) => {
      state.status = "resolved";
      state.value = value;
    },
    (error: unknown) => {
      state.status = "rejected";
      state.error = error;
    },
  );
  return state;
}

/** Lets every pending microtask and the next macrotask turn run (the coalescer schedules with setImmediate). */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Waits until `condition` holds, turn by turn, failing after `timeoutMs`. */
async function until(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await turn();
  }
}

type Options<T, R> = Partial<CoalesceOptions<T, R>> & Pick<CoalesceOptions<T, R>, "flush">;
const coalescer = <T, R>(options: Options<T, R>) =>
  createCoalescer<T, R>({ sizeOf: () => 1, maxItems: 1_000, maxBytes: 1_000_000, maxInFlight: 4, ...options });

const double = (items: number[]) => items.map((item) => item * 2);

describe("coalescing", () => {
  test("submits made in the same turn leave in one flush", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    const a = c.submit([1, 2]);
    const b = c.submit([3]);
    const d = c.submit([4, 5, 6]);
    await until("a flush", () => rec.calls.length > 0);
    await turn();
    expect(rec.calls.map((call) => call.items)).toEqual([[1, 2, 3, 4, 5, 6]]);
    rec.calls[0]?.resolve(double([1, 2, 3, 4, 5, 6]));
    expect(await a).toEqual([2, 4]);
    expect(await b).toEqual([6]);
    expect(await d).toEqual([8, 10, 12]);
    expect(rec.calls).toHaveLength(1);
  });

  test("a lone submit on an idle coalescer is flushed without waiting for company", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    const a = c.submit([7]);
    await until("a flush", () => rec.calls.length === 1);
    rec.calls[0]?.resolve([70]);
    expect(await a).toEqual([70]);
  });

  test("submits that arrive while a flush is busy wait and leave together", async () => {
    const rec = recordingFlush<string, string>();
    const c = coalescer({ flush: rec.flush, maxInFlight: 1 });
    const first = c.submit(["a"]);
    await until("the first flush", () => rec.calls.length === 1);
    const b = c.submit(["b"]);
    await turn();
    const cd = c.submit(["c", "d"]);
    await turn();
    const e = c.submit(["e"]);
    await turn();
    expect(rec.calls).toHaveLength(1);

    rec.calls[0]?.resolve(["A"]);
    expect(await first).toEqual(["A"]);
    await until("the second flush", () => rec.calls.length === 2);
    expect(rec.calls[1]?.items).toEqual(["b", "c", "d", "e"]);
    rec.calls[1]?.resolve(["B", "C", "D", "E"]);
    expect(await b).toEqual(["B"]);
    expect(await cd).toEqual(["C", "D"]);
    expect(await e).toEqual(["E"]);
    await c.drained();
    expect(rec.calls).toHaveLength(2);
  });

  test("results go back to the right caller, in order, whatever order the chunks finish in", async () => {
    const rec = recordingFlush<number, string>();
    const c = coalescer({ flush: rec.flush, maxItems: 3 });
    const a = c.submit([1, 2]);
    const b = c.submit([3, 4]);
    const d = c.submit([5]);
    await until("two flushes", () => rec.calls.length === 2);
    expect(rec.calls.map((call) => call.items)).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    rec.calls[1]?.resolve(["r4", "r5"]);
    rec.calls[0]?.resolve(["r1", "r2", "r3"]);
    expect(await a).toEqual(["r1", "r2"]);
    expect(await b).toEqual(["r3", "r4"]);
    expect(await d).toEqual(["r5"]);
  });

  test("an empty submit resolves at once and flushes nothing", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    expect(await c.submit([])).toEqual([]);
    await turn();
    expect(rec.calls).toHaveLength(0);
  });
});

describe("chunking", () => {
  test("chunks hold at most maxItems items", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush, maxItems: 3, maxInFlight: 10 });
    const all = c.submit([1, 2, 3, 4, 5, 6, 7]);
    await until("three flushes", () => rec.calls.length === 3);
    expect(rec.calls.map((call) => call.items)).toEqual([[1, 2, 3], [4, 5, 6], [7]]);
    for (const call of rec.calls) call.resolve(double(call.items));
    expect(await all).toEqual(double([1, 2, 3, 4, 5, 6, 7]));
  });

  test("a chunk is cut before it passes maxBytes; an exact fit stays together", async () => {
    const rec = recordingFlush<string, number>();
    const c = coalescer({ flush: rec.flush, sizeOf: (s: string) => s.length, maxBytes: 10, maxInFlight: 10 });
    const all = c.submit(["aaaa", "bbbb", "cccc", "dd", "eeeee", "fffff"]);
    await until("three flushes", () => rec.calls.length === 3);
    expect(rec.calls.map((call) => call.items)).toEqual([
      ["aaaa", "bbbb"],
      ["cccc", "dd"],
      ["eeeee", "fffff"],
    ]);
    for (const call of rec.calls) call.resolve(call.items.map((s) => s.length));
    expect(await all).toEqual([4, 4, 4, 2, 5, 5]);
  });

  test("an item larger than maxBytes goes alone", async () => {
    const rec = recordingFlush<string, number>();
    const c = coalescer({ flush: rec.flush, sizeOf: (s: string) => s.length, maxBytes: 10, maxInFlight: 10 });
    const big = "x".repeat(25);
    const all = c.submit(["ab", big, "cd", big, big]);
    await until("five flushes", () => rec.calls.length === 5);
    expect(rec.calls.map((call) => call.items)).toEqual([["ab"], [big], ["cd"], [big], [big]]);
    for (const call of rec.calls) call.resolve(call.items.map((s) => s.length));
    expect(await all).toEqual([2, 25, 2, 25, 25]);
  });

  test("chunks are greedy, in order, and respect both limits (deterministic random sizes)", async () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const items = Array.from({ length: 400 }, (_, id) => ({ id, size: 1 + Math.floor(random() * 120) }));
    const maxItems = 7;
    const maxBytes = 300;
    const rec = recordingFlush<{ id: number; size: number }, number>();
    const c = coalescer({ flush: rec.flush, sizeOf: (item) => item.size, maxItems, maxBytes, maxInFlight: 1_000 });
    // Three submitters in one turn, so chunks also cut across submits.
    const parts = [items.slice(0, 150), items.slice(150, 151), items.slice(151)].map((part) => c.submit(part));
    await until("every item flushed", () => rec.calls.reduce((n, call) => n + call.items.length, 0) === items.length);

    const chunks = rec.calls.map((call) => call.items);
    expect(chunks.flat().map((item) => item.id)).toEqual(items.map((item) => item.id));
    const bytes = (chunk: { size: number }[]) => chunk.reduce((n, item) => n + item.size, 0);
    for (const [i, chunk] of chunks.entries()) {
      expect(chunk.length).toBeGreaterThan(0);
      expect(chunk.length).toBeLessThanOrEqual(maxItems);
      if (chunk.length > 1) expect(bytes(chunk)).toBeLessThanOrEqual(maxBytes);
      const next = chunks[i + 1]?.[0];
      // Greedy: the next chunk's first item did not fit in this one.
      if (next) expect(chunk.length === maxItems || bytes(chunk) + next.size > maxBytes).toBe(true);
    }
    for (const call of rec.calls) call.resolve(call.items.map((item) => item.id));
    const results = await Promise.all(parts);
    expect(results.flat()).toEqual(items.map((item) => item.id));
  });
});

describe("concurrency", () => {
  test("maxInFlight is reached and never exceeded", async () => {
    const rec = recordingFlush<number, number>();
    const maxInFlight = 3;
    const c = coalescer({ flush: rec.flush, maxItems: 1, maxInFlight });
    const submits = Array.from({ length: 12 }, (_, i) => c.submit([i]));
    await until("the first flushes", () => rec.calls.length === maxInFlight);
    await turn();
    expect(rec.calls).toHaveLength(maxInFlight);

    // Finish flushes in a scrambled order, submitting more as we go.
    const later: Promise<number[]>[] = [];
    for (let done = 0; done < 20; done++) {
      await until("a flush in flight", () => rec.pending().length > 0);
      expect(rec.active).toBeLessThanOrEqual(maxInFlight);
      const pending = rec.pending();
      const call = pending[done % pending.length] as Call<number, number>;
      call.resolve(double(call.items));
      if (done < 8) later.push(c.submit([100 + done]));
      await turn();
    }
    await c.drained();
    expect(rec.maxActive).toBe(maxInFlight);
    expect(rec.calls).toHaveLength(20);
    expect(await Promise.all(submits)).toEqual(Array.from({ length: 12 }, (_, i) => [i * 2]));
    expect(await Promise.all(later)).toEqual(Array.from({ length: 8 }, (_, i) => [(100 + i) * 2]));
  });

  test("maxInFlight 1 keeps flushes strictly one at a time", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush, maxItems: 2, maxInFlight: 1 });
    const all = c.submit([1, 2, 3, 4, 5]);
    for (let i = 0; i < 3; i++) {
      await until(`flush ${i + 1}`, () => rec.calls.length === i + 1);
      await turn();
      expect(rec.pending()).toHaveLength(1);
      const call = rec.calls[i] as Call<number, number>;
      call.resolve(double(call.items));
    }
    expect(await all).toEqual(double([1, 2, 3, 4, 5]));
    expect(rec.maxActive).toBe(1);
  });
});

describe("failures", () => {
  test("a failing chunk rejects only the submits that had items in it", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush, maxItems: 2 });
    const a = track(c.submit([1, 2]));
    const b = track(c.submit([3, 4]));
    const d = track(c.submit([5]));
    await until("three flushes", () => rec.calls.length === 3);
    const boom = new Error("broker said no");
    rec.calls[1]?.reject(boom);
    rec.calls[0]?.resolve([10, 20]);
    rec.calls[2]?.resolve([50]);
    await c.drained();
    await turn();
    expect(a).toEqual({ status: "resolved", value: [10, 20] });
    expect(b.status).toBe("rejected");
    expect(b.error).toBe(boom);
    expect(d).toEqual({ status: "resolved", value: [50] });
  });

  test("a submit that shares a failing chunk with another is rejected, the other's other chunk is not", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush, maxItems: 2 });
    const a = track(c.submit([1, 2, 3]));
    const b = track(c.submit([4]));
    await until("two flushes", () => rec.calls.length === 2);
    expect(rec.calls.map((call) => call.items)).toEqual([
      [1, 2],
      [3, 4],
    ]);
    rec.calls[0]?.reject(new Error("first chunk failed"));
    rec.calls[1]?.resolve([30, 40]);
    await c.drained();
    await turn();
    expect(a.status).toBe("rejected");
    expect(b).toEqual({ status: "resolved", value: [40] });
  });

  test("the coalescer keeps working after a failed flush", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    const failed = c.submit([1]);
    await until("a flush", () => rec.calls.length === 1);
    rec.calls[0]?.reject(new Error("transient"));
    await expect(failed).rejects.toThrow("transient");
    const next = c.submit([2]);
    await until("a second flush", () => rec.calls.length === 2);
    rec.calls[1]?.resolve([4]);
    expect(await next).toEqual([4]);
  });
});

describe("a submit spanning two chunks", () => {
  async function spanning() {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush, maxItems: 2 });
    const a = track(c.submit([1, 2, 3]));
    await until("two flushes", () => rec.calls.length === 2);
    expect(rec.calls.map((call) => call.items)).toEqual([[1, 2], [3]]);
    return { rec, c, a, first: rec.calls[0] as Call<number, number>, second: rec.calls[1] as Call<number, number> };
  }

  test("resolves only when both chunks are done", async () => {
    const { c, a, first, second } = await spanning();
    first.resolve([10, 20]);
    await turn();
    await turn();
    expect(a.status).toBe("pending");
    second.resolve([30]);
    await c.drained();
    await turn();
    expect(a).toEqual({ status: "resolved", value: [10, 20, 30] });
  });

  test("resolves in item order when the later chunk finishes first", async () => {
    const { c, a, first, second } = await spanning();
    second.resolve([30]);
    await turn();
    expect(a.status).toBe("pending");
    first.resolve([10, 20]);
    await c.drained();
    await turn();
    expect(a).toEqual({ status: "resolved", value: [10, 20, 30] });
  });

  test("rejects when the second chunk fails after the first succeeded", async () => {
    const { c, a, first, second } = await spanning();
    const boom = new Error("second failed");
    first.resolve([10, 20]);
    await turn();
    second.reject(boom);
    await c.drained();
    await turn();
    expect(a.status).toBe("rejected");
    expect(a.error).toBe(boom);
  });

  test("rejects when the first chunk fails after the second succeeded", async () => {
    const { c, a, first, second } = await spanning();
    const boom = new Error("first failed");
    second.resolve([30]);
    await turn();
    first.reject(boom);
    await c.drained();
    await turn();
    expect(a.status).toBe("rejected");
    expect(a.error).toBe(boom);
  });
});

describe("drained", () => {
  test("resolves at once when idle", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    const idle = track(c.drained());
    await turn();
    expect(idle.status).toBe("resolved");
  });

  test("waits for queued and in-flight work, failures included", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush, maxItems: 1, maxInFlight: 2 });
    const submits = [track(c.submit([1])), track(c.submit([2])), track(c.submit([3]))];
    const drained = track(c.drained());
    const second = track(c.drained());
    await until("two flushes", () => rec.calls.length === 2);
    await turn();
    expect(drained.status).toBe("pending");

    rec.calls[0]?.resolve([10]);
    await until("the queued flush", () => rec.calls.length === 3);
    expect(drained.status).toBe("pending");

    rec.calls[2]?.reject(new Error("late failure"));
    await turn();
    await turn();
    expect(drained.status).toBe("pending");

    rec.calls[1]?.resolve([20]);
    await until("drained", () => drained.status === "resolved");
    expect(second.status).toBe("resolved");
    expect(submits.map((s) => s.status)).toEqual(["resolved", "resolved", "rejected"]);
  });

  test("a drained() called before the first flush starts still waits for it", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    const submit = track(c.submit([1]));
    const drained = track(c.drained());
    await until("a flush", () => rec.calls.length === 1);
    await turn();
    expect(drained.status).toBe("pending");
    rec.calls[0]?.resolve([2]);
    await until("drained", () => drained.status === "resolved");
    expect(submit).toEqual({ status: "resolved", value: [2] });
  });

  test("is idle again after draining", async () => {
    const rec = recordingFlush<number, number>();
    const c = coalescer({ flush: rec.flush });
    const first = c.submit([1]);
    await until("a flush", () => rec.calls.length === 1);
    rec.calls[0]?.resolve([1]);
    await first;
    await c.drained();
    const again = track(c.submit([2]));
    const drained = track(c.drained());
    await until("a second flush", () => rec.calls.length === 2);
    await turn();
    expect(drained.status).toBe("pending");
    rec.calls[1]?.resolve([2]);
    await until("drained", () => drained.status === "resolved");
    expect(again.status).toBe("resolved");
  });
});
