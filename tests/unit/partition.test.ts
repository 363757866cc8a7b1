import { describe, expect, test } from "bun:test";
import { partitionFor } from "../../shared/kafka.ts";

/**
 * Known murmur2 values, from Kafka's own test (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java,
 * testMurmur2). The Java default partitioner picks `Utils.toPositive(murmur2(keyBytes)) % numPartitions`, where
 * `toPositive(x) = x & 0x7fffffff` (not Math.abs, not an unsigned shift).
 */
const JAVA_MURMUR2: [string, number[], number][] = [
  ["21", [...Buffer.from("21")], -973932308],
  ["foobar", [...Buffer.from("foobar")], -790332482],
  ["a-little-bit-long-string", [...Buffer.from("a-little-bit-long-string")], -985981536],
  ["a-little-bit-longer-string", [...Buffer.from("a-little-bit-longer-string")], -1486304829],
  [
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
    [...Buffer.from("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8")],
    -58897971,
  ],
  ["bytes [a,b,c]", [0x61, 0x62, 0x63], 479470107],
];

const toPositive = (hash: number) => hash & 0x7fffffff;

/**
 * The partitions those hashes give, worked out by hand from the table above
 * (e.g. "21": -973932308 & 0x7fffffff = 1173551340; 1173551340 % 6 = 0, % 12 = 0, % 7 = 3).
 */
const EXPECTED: Record<string, Record<number, number>> = {
  "21": { 1: 0, 6: 0, 7: 3, 12: 0 },
  foobar: { 1: 0, 6: 0, 7: 0, 12: 6 },
  "a-little-bit-long-string": { 1: 0, 6: 2, 7: 1, 12: 8 },
  "a-little-bit-longer-string": { 1: 0, 6: 5, 7: 0, 12: 11 },
  lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8: { 1: 0, 6: 5, 7: 3, 12: 5 },
  "bytes [a,b,c]": { 1: 0, 6: 3, 7: 4, 12: 3 },
};

/** Kafka's Utils.murmur2, ported line by line from the Java source with 32-bit integer arithmetic. */
function referenceMurmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  const r = 24;
  let h = 0x9747b28c ^ length;
  const length4 = length >> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k =
      ((data[i4] ?? 0) & 0xff) +
      (((data[i4 + 1] ?? 0) & 0xff) << 8) +
      (((data[i4 + 2] ?? 0) & 0xff) << 16) +
      (((data[i4 + 3] ?? 0) & 0xff) << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  // The Java original is a switch that falls through from case 3 to case 1.
  const tail = length & ~3;
  const rest = length % 4;
  if (rest >= 3) h ^= ((data[tail + 2] ?? 0) & 0xff) << 16;
  if (rest >= 2) h ^= ((data[tail + 1] ?? 0) & 0xff) << 8;
  if (rest >= 1) {
    h ^= (data[tail] ?? 0) & 0xff;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

describe("partitionFor matches Kafka's Java default partitioner", () => {
  for (const [name, bytes, hash] of JAVA_MURMUR2) {
    test(`${name} (murmur2 ${hash})`, () => {
      for (const partitions of [1, 6, 7, 12]) {
        const expected = EXPECTED[name]?.[partitions];
        expect(expected).toBe(toPositive(hash) % partitions);
        expect(partitionFor(Buffer.from(bytes), partitions)).toBe(expected as number);
      }
    });
  }

  test("a string key is hashed as its UTF-8 bytes", () => {
    for (const [name, bytes] of JAVA_MURMUR2.slice(0, 5)) {
      expect(partitionFor(name, 12)).toBe(partitionFor(Buffer.from(bytes), 12));
    }
    expect(partitionFor("abc", 6)).toBe(EXPECTED["bytes [a,b,c]"]?.[6] as number);
    expect(partitionFor("usuário-日本", 12)).toBe(partitionFor(Buffer.from("usuário-日本", "utf8"), 12));
    expect(partitionFor("é", 1000)).not.toBe(partitionFor(Buffer.from("é", "latin1"), 1000));
  });

  test("negative hashes are masked with 0x7fffffff, not negated", () => {
    // Math.abs(-973932308) % 6 = 2, but Kafka puts "21" in partition 0 of 6.
    expect(Math.abs(-973932308) % 6).toBe(2);
    expect(partitionFor("21", 6)).toBe(0);
    // (-790332482 >>> 0) % 12 = 2, but Kafka puts "foobar" in partition 6 of 12.
    expect((-790332482 >>> 0) % 12).toBe(2);
    expect(partitionFor("foobar", 12)).toBe(6);
  });
});

describe("the reference port", () => {
  test.each(JAVA_MURMUR2)("reproduces Kafka's value for %s", (_, bytes, hash) => {
    expect(referenceMurmur2(new Uint8Array(bytes))).toBe(hash);
  });
});

describe("partitionFor agrees with the reference port on other keys", () => {
  const keys = [
    "",
    "a",
    "ab",
    "abcd",
    "abcde",
    "user-1",
    "6f1c1e4e-9a51-4a2b-9d0e-3d7c2a4b5e61",
    "018f3c5e-8a2b-7c3d-9e4f-0a1b2c3d4e5f",
    "usuário",
    "日本語のユーザー",
    "emoji-🙂",
    "\u0000\u00ff",
    "x".repeat(1001),
    ...Array.from({ length: 200 }, (_, i) => `user-${i * 7919}`),
  ];

  test("every key, every tail length, several partition counts", () => {
    const tails = new Set<number>();
    for (const key of keys) {
      const bytes = Buffer.from(key, "utf8");
      tails.add(bytes.length % 4);
      const hash = referenceMurmur2(bytes);
      for (const partitions of [1, 3, 6, 12, 1000]) {
        const expected = toPositive(hash) % partitions;
        expect(partitionFor(key, partitions)).toBe(expected);
        expect(partitionFor(bytes, partitions)).toBe(expected);
      }
    }
    expect([...tails].toSorted()).toEqual([0, 1, 2, 3]);
  });

  test("keys spread over every partition and stay in range", () => {
    const seen = new Set<number>();
    for (const key of keys) {
      const partition = partitionFor(key, 6);
      expect(Number.isInteger(partition)).toBe(true);
      expect(partition).toBeGreaterThanOrEqual(0);
      expect(partition).toBeLessThan(6);
      seen.add(partition);
    }
    expect(seen.size).toBe(6);
  });

  test("the same key always lands on the same partition", () => {
    const key = "6f1c1e4e-9a51-4a2b-9d0e-3d7c2a4b5e61";
    const first = partitionFor(key, 6);
    for (let i = 0; i < 50; i++) expect(partitionFor(key, 6)).toBe(first);
    expect(partitionFor(Buffer.from(key), 6)).toBe(first);
  });
});
