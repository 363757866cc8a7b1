/**
 * Kafka's default partitioner: murmur2 of the key bytes, made positive, modulo the partition count, exactly as
 * the Java client, librdkafka's murmur2_random and rpk compute it, so every client agrees where a key lives.
 * Written with Math.imul because the client library's version allocates BigInts, twice per record.
 */

const SEED = 0x9747b28c;
const M = 0x5bd1e995;

/** Kafka's `Utils.murmur2` of `data`, as a signed 32-bit integer. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = SEED ^ length;
  const whole = length - (length % 4);
  for (let i = 0; i < whole; i += 4) {
    let k =
      (data[i] as number) |
      ((data[i + 1] as number) << 8) |
      ((data[i + 2] as number) << 16) |
      ((data[i + 3] as number) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  // The last one to three bytes, mixed in as Java's fall-through switch does.
  const tail = length % 4;
  if (tail === 3) h ^= (data[whole + 2] as number) << 16;
  if (tail >= 2) h ^= (data[whole + 1] as number) << 8;
  if (tail >= 1) h = Math.imul(h ^ (data[whole] as number), M);
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** The key's hash made positive (`Utils.toPositive`); modulo the partition count it is the key's partition. */
export function keyHash(key: Uint8Array): number {
  return murmur2(key) & 0x7fffffff;
}

/** The partition that Kafka's default partitioner gives `key` among `partitions` (0 without a key). */
export function partitionFor(key: string | Uint8Array | undefined, partitions: number): number {
  if (key === undefined) return 0;
  return keyHash(typeof key === "string" ? Buffer.from(key) : key) % partitions;
}
