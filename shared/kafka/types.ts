/**
 * The port every Kafka client implementation provides: records, positions, and the consumer and producer the
 * stages use. Nothing here names a client library, so a second implementation (librdkafka, say) can satisfy the
 * same types and the stages never notice the swap.
 */

/** A consumed record, with the bytes exactly as they were produced. */
export interface InRecord {
  topic: string;
  partition: number;
  offset: bigint;
  key: Buffer | undefined;
  value: Buffer;
  headers: Record<string, string>;
  timestamp: bigint;
}

/** A partition position: the offset of the next record to read. */
export interface Position {
  topic: string;
  partition: number;
  offset: bigint;
}

/** A record to produce. The key picks the partition with Kafka's murmur2, as Java clients and rpk do. */
export interface OutRecord {
  topic: string;
  /** Without a key the record goes to partition 0 (dead letters of keyless records). */
  key: string | Buffer | undefined;
  /** Overrides the key's partition (the aggregate writes each input partition's windows to the same partition). */
  partition?: number;
  /** null is a tombstone: a compacted topic drops the key's earlier records. */
  value: string | Buffer | null;
  headers?: Record<string, string>;
}

/** Where the broker stored a record. */
export interface Delivery {
  topic: string;
  partition: number;
  offset: bigint;
}

/**
 * Where the cluster is and how to prove who we are to it: what every client of the port takes instead of a bare
 * broker list. Built from the configuration by `kafkaConnection`; holds file paths, not their contents.
 */
export interface KafkaConnection {
  /** Bootstrap brokers, `host:port`. */
  brokers: string[];
  /** SASL authentication; without it the client does not authenticate. */
  sasl?: { mechanism: "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"; username: string; password: string };
  /** TLS; without it the connection is plaintext. Without `caFile` the system's trusted CAs apply. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string; checkServerName: boolean };
  /**
   * Prefixes every topic and group name on the broker with `<namespace>.` (namespace.ts); the port's callers
   * keep using the pipeline's own names.
   */
  namespace?: string;
}

export interface ConsumerOptions {
  kafka: KafkaConnection;
  groupId: string;
  clientId: string;
  topics: string[];
  /** Start here instead of at the group's committed offsets (which fall back to the earliest record). */
  startAt?: Position[];
  /**
   * Called with this member's partitions after every rebalance. Each of them is then read again from the group's
   * committed offset, those the member kept through the rebalance too: state built from what was read before it
   * is rebuilt from there.
   */
  onAssign?: (partitions: { topic: string; partition: number }[]) => void;
  /**
   * Every partition of `topics` to one member of the group (the lowest member id), none to the others: for a
   * stage whose state spans all partitions. Extra members stand by and take over when the active one leaves.
   */
  exclusive?: boolean;
  /** Called every few seconds with each assigned partition's lag (latest offset minus committed offset). */
  onLag?: (lag: { topic: string; partition: number; lag: number }[]) => void;
}

/** A consumer group member that reads in batches and commits only when told to. */
export interface KafkaConsumer {
  /** Yields records as they arrive, at most `maxRecords` at a time: whatever is ready, without waiting for more. */
  batches(maxRecords?: number): AsyncGenerator<InRecord[]>;
  /** Commits `positions` (the next offset to read, per partition) for the group. Callers commit one at a time. */
  commit(positions: Position[]): Promise<void>;
  /** Stops fetching until `resume`; records already read stay available. */
  pause(): void;
  resume(): void;
  /** Leaves the group, so its partitions move to the other members at once. */
  close(): Promise<void>;
}

export interface ProducerOptions {
  kafka: KafkaConnection;
  clientId: string;
  /** How long a produce call or a connection attempt may take (default 5 s). */
  timeoutMs?: number;
}

/** An idempotent (acks=all) producer. */
export interface KafkaProducer {
  /** Produces `records`; resolves with one {@link Delivery} per record once the broker has acknowledged all. */
  send(records: OutRecord[]): Promise<Delivery[]>;
  /** True when the broker answers a metadata request within `timeoutMs`. */
  ping(timeoutMs?: number): Promise<boolean>;
  /** Waits for queued records, then closes the connections. */
  close(): Promise<void>;
}
