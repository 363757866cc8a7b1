/**
 * patches/@platformatic%2Fkafka@2.12.1.patch writes a batch's records into one buffer instead of a buffer per
 * field: every record it writes must read back, through the client's own reader, as the message it was.
 */
import { describe, expect, test } from "bun:test";
import { createRecordsBatch, Reader, readRecordsBatch } from "@platformatic/kafka";
import fc from "fast-check";

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((array) => Buffer.from(array));
const message = fc.record({
  key: fc.option(bytes(40), { nil: undefined }),
  value: bytes(2_000),
  headers: fc.array(fc.tuple(bytes(20), bytes(60)), { maxLength: 3 }),
  // Up to ~70 years either side of the first record: deltas past 32 bits included.
  offsetMs: fc.integer({ min: -(2 ** 41), max: 2 ** 41 }),
});

describe("the patched record batch encoder", () => {
  test("every record reads back with its key, value, headers, offset and timestamp deltas", () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 200 }), (drawn) => {
        const first = 1_700_000_000_000n;
        const messages = drawn.map((m, i) => ({
          topic: "t",
          partition: 0,
          key: m.key,
          value: m.value,
          headers: new Map(m.headers),
          timestamp: i === 0 ? first : first + BigInt(m.offsetMs),
        }));
        const batch = readRecordsBatch(Reader.from(createRecordsBatch(messages, { producerId: 7n }).buffer));
        expect(batch.records).toHaveLength(messages.length);
        for (const [i, record] of batch.records.entries()) {
          const sent = messages[i] as (typeof messages)[number];
          expect(record.offsetDelta).toBe(i);
          expect(BigInt(record.timestampDelta)).toBe(sent.timestamp - first);
          expect(record.key ?? undefined).toEqual(sent.key);
          expect(record.value).toEqual(sent.value);
          expect(record.headers).toEqual([...sent.headers]);
        }
      }),
      { numRuns: 200 },
    );
  });
});
