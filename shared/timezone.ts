/** Where and when an event happened, in local terms: IANA timezone, UTC offset at that instant, local time. */
import { find } from "geo-tz/dist/find-1970";
import type { EnrichedLocation, RawLocation } from "./schemas.ts";

const offsetFormats = new Map<string, Intl.DateTimeFormat>();

/** The offset from UTC in minutes of `timeZone` at `epochMs`, so DST is that of the event's own time. */
export function utcOffsetMinutes(timeZone: string, epochMs: number): number {
  let format = offsetFormats.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "longOffset" });
    offsetFormats.set(timeZone, format);
  }
  const name = format.formatToParts(epochMs).find((part) => part.type === "timeZoneName")?.value ?? "GMT";
  const match = /GMT([+-])(\d{2}):(\d{2})/.exec(name);
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

/** Adds the timezone (the first one where geo-tz gives several), UTC offset and local time to a location. */
export function enrichLocation(event: RawLocation): EnrichedLocation {
  const timezone = find(event.lat, event.long)[0] ?? "Etc/UTC";
  const epochMs = Date.parse(event.timestamp);
  const utc_offset_minutes = utcOffsetMinutes(timezone, epochMs);
  return { ...event, timezone, utc_offset_minutes, local_time: localTime(epochMs, utc_offset_minutes) };
}
