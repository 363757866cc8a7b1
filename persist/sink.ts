/**
 * The sink contract: what persist needs from a store. persist owns the loop: it reads a batch, decodes each
 * record with its topic's schema (poison records go to the DLQ), hands the rows to `write` with the positions
 * the batch ends at, retries a failed write with backoff while reporting not-ready, and commits to Kafka only
 * after `write` returned. A sink owns only the store.
 *
 * Exactly once in effect, by the kind of store:
 * - a transactional store (PostgreSQL) writes the rows and the consumer positions in one transaction, and
 *   skips records below the positions it already holds, so a replay writes nothing twice;
 * - an idempotent store (object storage, a document store) writes every row under a key that depends only on
 *   the record (its event_id, or its topic, partition and offsets), then records the positions; a replay writes
 *   the same keys with the same content. A sink that gathers records into objects commits only what its
 *   uploaded objects hold (`WriteResult.positions`, `flush`).
 */
import type { Config } from "../shared/config.ts";
import type { Position } from "../shared/kafka.ts";
import type { Logger } from "../shared/log.ts";

/** A decoded record on its way into a store, with the coordinates of the record it came from. */
export interface SinkRow<T = unknown> {
  topic: string;
  partition: number;
  offset: bigint;
  /** The record's key, for a store that keys rows by it (a captured row's primary key). */
  key?: Buffer;
  /** The record's headers, for a store that reads them (a cdc record's source position). */
  headers?: Record<string, string>;
  value: T;
}

/** What one write did, per table (or collection, or key prefix); persist turns it into the same metrics for every store. */
export interface WriteResult {
  /** Rows inserted or updated, per table. */
  written: Record<string, number>;
  /** Rows the store turned away because their key was already there (a replay of a stored event), per table. */
  conflicts: Record<string, number>;
  /** Records below the positions the store holds, dropped before writing. */
  replayed: number;
  /**
   * What may be committed to Kafka, when it is less than the whole batch: a sink that holds records back until
   * they fill an object says how far its uploads reach. Absent: the batch's positions.
   */
  positions?: Position[];
}

/** A store, as persist drives it. */
export interface Sink {
  /**
   * The topics the sink stores; persist decodes each record by its topic's rule (shared/records.ts) and hands
   * over no row for a tombstone (a cdc topic's null value after a delete).
   */
  topics: string[];
  /** Connects and prepares the store (migrations, indexes); throwing stops persist with that message. */
  open: () => Promise<void>;
  /**
   * Makes `rows` durable and records `positions` (per partition, the offset after the batch's last record),
   * by the rule of its kind of store. Throwing means nothing of the batch may be taken as written: persist
   * retries the same batch.
   */
  write: (rows: SinkRow[], positions: Position[]) => Promise<WriteResult>;
  /**
   * Called every second between batches by a sink that holds records back: writes what is due (an object old
   * enough to close); its `positions` are what may now be committed.
   */
  flush?: () => Promise<WriteResult>;
  /** Whether the store answers now, for `/readyz`. */
  ready: () => Promise<boolean>;
  /** Closes the connections; every batch has been written or abandoned by then. */
  close: () => Promise<void>;
}

/** What a sink is built from. */
export interface SinkContext {
  env: Config;
  log: Logger;
  /** The consumer group persist reads in for this sink: the name a store keeps its positions under. */
  group: string;
}

/** Builds a sink; connects to nothing until `open`. */
export type SinkFactory = (context: SinkContext) => Sink;
