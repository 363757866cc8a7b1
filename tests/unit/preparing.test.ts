import { expect, test } from "bun:test";
import { preparing } from "../../shared/consume.ts";
import type { InRecord } from "../../shared/kafka.ts";

const batch = (n: number) => Array.from({ length: n }, () => ({}) as InRecord);

test("a prepared batch is worked on once; any other batch, or a retry, is worked on in take", () => {
  let calls = 0;
  const work = preparing((records: InRecord[]) => {
    calls++;
    return records.length;
  });
  const first = batch(2);
  work.prepare(first);
  expect(work.take(first)).toBe(2);
  expect(calls).toBe(1);
  // The result is dropped once taken: a retry of the same batch works on it again.
  expect(work.take(first)).toBe(2);
  expect(calls).toBe(2);
  // A batch that was not the last prepared one is worked on in take.
  work.prepare(batch(3));
  expect(work.take(batch(4))).toBe(4);
  expect(calls).toBe(4);
});
