/**
 * What the client knows: every event_id it sent and what became of its request. The fault run's verdict
 * compares this with what PostgreSQL holds in the end.
 */
import type { RequestResult } from "../traffic.ts";

/**
 * - ok: 2xx, the broker acknowledged every event: each must end up stored;
 * - rejected: 4xx, nothing was produced (validation is all or nothing): none may be stored;
 * - unacknowledged: 5xx; the API documents a 503 as "some events may have been written, retry with the same
 *   event_ids", so either way is allowed;
 * - indeterminate: no answer (timeout, connection error): either way is allowed.
 */
export type Fate = "ok" | "rejected" | "unacknowledged" | "indeterminate";
export const FATES: Fate[] = ["ok", "rejected", "unacknowledged", "indeterminate"];

/** The table an event ends up in. */
export type Table = "locations" | "vehicle_positions" | "logins";

/** The fate of a request's events. */
export function fateOf(result: Pick<RequestResult, "outcome" | "status">): Fate {
  if (result.outcome === "ok") return "ok";
  if (result.outcome === "indeterminate") return "indeterminate";
  return (result.status ?? 500) >= 500 ? "unacknowledged" : "rejected";
}

/** Every event_id the client sent, by table, with its fate; an id is sent once (nothing is retried). */
export class Ledger {
  readonly fates: Record<Table, Map<string, Fate>> = {
    locations: new Map(),
    vehicle_positions: new Map(),
    logins: new Map(),
  };
  /** Requests per fate. */
  readonly requests = new Map<Fate, number>();

  record(table: Table, result: RequestResult): void {
    const fate = fateOf(result);
    this.requests.set(fate, (this.requests.get(fate) ?? 0) + 1);
    for (const id of result.eventIds) {
      if (this.fates[table].has(id)) throw new Error(`event_id ${id} was sent twice; the ledger assumes once`);
      this.fates[table].set(id, fate);
    }
  }

  /** Events per fate, over every table. */
  events(fate: Fate): number {
    let n = 0;
    for (const table of Object.values(this.fates)) for (const f of table.values()) if (f === fate) n++;
    return n;
  }
}
