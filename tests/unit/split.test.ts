import { expect, test } from "bun:test";
import fc from "fast-check";
import type { PendingRow } from "../../persist/postgres/transaction.ts";
import { LOCATIONS, splitByPartition } from "../../persist/postgres.ts";

const row = (topic: string, partition: number, offset: number): PendingRow => ({
  table: LOCATIONS as never,
  record: { topic, partition, offset: BigInt(offset) },
  values: [],
});

test("every partition goes to exactly one part, with all its rows and its position, rows balanced", () => {
  fc.assert(
    fc.property(
      fc.array(fc.nat({ max: 40 }), { minLength: 0, maxLength: 12 }),
      fc.integer({ min: 1, max: 4 }),
      (sizes, parts) => {
        const positions = sizes.map((_, partition) => ({ topic: "t", partition, offset: 100n }));
        const rows = sizes.flatMap((size, partition) => Array.from({ length: size }, (_, i) => row("t", partition, i)));
        const split = splitByPartition(rows, positions, parts);
        expect(split.length).toBe(Math.min(parts, positions.length));
        const seen = split.flatMap((part) => part.positions.map((p) => p.partition)).sort((a, b) => a - b);
        expect(seen).toEqual(positions.map((p) => p.partition));
        for (const part of split) {
          const mine = new Set(part.positions.map((p) => p.partition));
          expect(part.rows.every((r) => mine.has(r.record.partition))).toBe(true);
          // Rows keep their order within a partition.
          for (const p of mine) {
            const offsets = part.rows.filter((r) => r.record.partition === p).map((r) => r.record.offset);
            expect(offsets).toEqual([...offsets].sort((a, b) => (a < b ? -1 : 1)));
          }
        }
        expect(split.reduce((n, part) => n + part.rows.length, 0)).toBe(rows.length);
        // Greedy by size: no part exceeds another by more than the largest partition.
        const totals = split.map((part) => part.rows.length);
        if (totals.length > 1)
          expect(Math.max(...totals) - Math.min(...totals)).toBeLessThanOrEqual(Math.max(...sizes));
      },
    ),
  );
});
