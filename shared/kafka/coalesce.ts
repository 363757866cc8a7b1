/**
 * Group commit for concurrent callers: items submitted while earlier flushes are in flight wait in one queue and
 * leave together, so a thousand single-event requests become a few large produce calls instead of a thousand
 * small ones. No linger timer: the batch is whatever arrived while the previous flush was busy, so an idle
 * system pays no added latency.
 */

export interface CoalesceOptions<T, R> {
  /** Sends one chunk and returns one result per item, in order. */
  flush: (items: T[]) => Promise<R[]>;
  /** Bytes an item adds to a chunk; a chunk is cut before it passes `maxBytes`. */
  sizeOf: (item: T) => number;
  maxItems: number;
  maxBytes: number;
  maxInFlight: number;
}

interface Ticket<R> {
  results: R[];
  remaining: number;
  settled: boolean;
  resolve: (results: R[]) => void;
  reject: (error: unknown) => void;
}

interface Entry<T, R> {
  item: T;
  ticket: Ticket<R>;
  index: number;
}

/** A queue of items, flushed in chunks with at most `maxInFlight` flushes at once. */
export function createCoalescer<T, R>(options: CoalesceOptions<T, R>) {
  const queue: Entry<T, R>[] = [];
  let inFlight = 0;
  let scheduled = false;
  const idleWaiters: (() => void)[] = [];

  function takeChunk(): Entry<T, R>[] {
    let bytes = 0;
    let count = 0;
    while (count < queue.length && count < options.maxItems) {
      const size = options.sizeOf((queue[count] as Entry<T, R>).item);
      if (count > 0 && bytes + size > options.maxBytes) break;
      bytes += size;
      count++;
    }
    return queue.splice(0, count);
  }

  function settle(chunk: Entry<T, R>[], results: R[] | undefined, error?: unknown) {
    for (const [i, entry] of chunk.entries()) {
      const { ticket } = entry;
      if (ticket.settled) continue;
      if (!results) {
        ticket.settled = true;
        ticket.reject(error);
        continue;
      }
      ticket.results[entry.index] = results[i] as R;
      if (--ticket.remaining === 0) {
        ticket.settled = true;
        ticket.resolve(ticket.results);
      }
    }
  }

  function pump() {
    scheduled = false;
    while (inFlight < options.maxInFlight && queue.length > 0) {
      const chunk = takeChunk();
      inFlight++;
      // Through a promise constructor, so a flush that throws instead of rejecting fails its callers too.
      new Promise<R[]>((resolve) => resolve(options.flush(chunk.map((entry) => entry.item))))
        .then(
          (results) => settle(chunk, results),
          (error: unknown) => settle(chunk, undefined, error),
        )
        .finally(() => {
          inFlight--;
          if (queue.length > 0) pump();
          else if (inFlight === 0) for (const wake of idleWaiters.splice(0)) wake();
        });
    }
  }

  return {
    /** Resolves with one result per item once every item is flushed; rejects if any of its chunks fails. */
    submit(items: T[]): Promise<R[]> {
      if (items.length === 0) return Promise.resolve([]);
      return new Promise<R[]>((resolve, reject) => {
        const ticket: Ticket<R> = { results: [], remaining: items.length, settled: false, resolve, reject };
        for (const [index, item] of items.entries()) queue.push({ item, ticket, index });
        // Defer to the next turn so that requests arriving in the same turn share a chunk.
        if (!scheduled) {
          scheduled = true;
          setImmediate(pump);
        }
      });
    },

    /** Resolves when nothing is queued or in flight. */
    drained(): Promise<void> {
      if (queue.length === 0 && inFlight === 0) return Promise.resolve();
      return new Promise((resolve) => {
        idleWaiters.push(resolve);
      });
    },
  };
}
