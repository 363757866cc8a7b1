/** Where and when an event happened, in local terms: IANA timezone, UTC offset at that instant, local time. */
import { find, setCache } from "geo-tz/dist/find-1970";
import { LRUCache } from "lru-cache";
import type { EnrichedLocation } from "../shared/schemas.ts";

/**
 * Bounds geo-tz's cache of decoded boundary tiles to `tiles` (by default it keeps every tile it reads, forever:
 * hundreds of MB once events cover the globe). A tile read again after it was dropped is read from its file and
 * decoded again: the cost of a lookup that misses.
 */
export function boundTileCache(tiles: number): void {
  setCache({ store: new LRUCache<string, object>({ max: tiles }) });
}

// Bounded from the start for every importer; the enrich stage sets its own budget (ENRICH_TZ_CACHE_TILES).
boundTileCache(500);

const offsetFormats = new Map<string, Intl.DateTimeFormat>();

// Every offset in the tz database is a multiple of 15 minutes and changes only on a quarter hour, so the offset is
// constant within each 15-minute slice of UTC time; formatToParts costs ~2 µs, a cache hit ~0.1 µs.
const QUARTER_HOUR_MS = 15 * 60_000;
const offsets = new LRUCache<string, number>({ max: 100_000 });

/** The offset from UTC in minutes of `timeZone` at `epochMs`, so DST is that of the event's own time. */
export function utcOffsetMinutes(timeZone: string, epochMs: number): number {
  const slot = `${timeZone}@${Math.floor(epochMs / QUARTER_HOUR_MS)}`;
  const cached = offsets.get(slot);
  if (cached !== undefined) return cached;
  const minutes = formattedOffset(timeZone, epochMs);
  offsets.set(slot, minutes);
  return minutes;
}

function formattedOffset(timeZone: string, epochMs: number): number {
  let format = offsetFormats.get(timeZone);
  if (!format) {
    // The hour alone beside the zone name: format() of that is ~1.6x as fast as formatToParts, and the name is
    // the only "GMT" in it.
    format = new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "longOffset", hour: "numeric" });
    offsetFormats.set(timeZone, format);
  }
  const match = /GMT([+-])(\d{2}):(\d{2})/.exec(format.format(epochMs));
  if (!match) return 0; // "GMT" alone is UTC itself
  const minutes = Number(match[2]) * 60 + Number(match[3]);
  return match[1] === "-" ? -minutes : minutes;
}

/** ISO-8601 local time with its offset, e.g. `2023-09-11T21:45:51.000-03:00`. */
export function localTime(epochMs: number, offsetMinutes: number): string {
  const local = new Date(epochMs + offsetMinutes * 60_000).toISOString().slice(0, -1);
  const sign = offsetMinutes < 0 ? "-" : "+";
  const abs = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}:${String(abs % 60).padStart(2, "0")}`;
}

/** What enrichment adds to an event: the same three fields on every enriched topic. */
export type Enrichment = Pick<EnrichedLocation, "timezone" | "utc_offset_minutes" | "local_time">;

/** What enrichment reads: where and when the event happened (a location, a vehicle position). */
export interface Located {
  lat: number;
  long: number;
  timestamp: string;
}

/**
 * Adds the timezone (the first one where geo-tz gives several), UTC offset and local time to an event that has a
 * place and a time, keeping every field it has.
 *
 * @example
 * enrichLocation({ lat: -31.68, long: -65.03, timestamp: "2023-09-12T00:45:51.000Z", vehicle_id: "v1" });
 * // { ..., vehicle_id: "v1", timezone: "America/Argentina/Cordoba", utc_offset_minutes: -180,
 * //   local_time: "2023-09-11T21:45:51.000-03:00" }
 */
export function enrichLocation<E extends Located>(event: E): E & Enrichment {
  const timezone = find(event.lat, event.long)[0] ?? "Etc/UTC";
  const epochMs = Date.parse(event.timestamp);
  const utc_offset_minutes = utcOffsetMinutes(timezone, epochMs);
  return { ...event, timezone, utc_offset_minutes, local_time: localTime(epochMs, utc_offset_minutes) };
}
