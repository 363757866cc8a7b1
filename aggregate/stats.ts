/**
 * What a login adds to a window's statistics, written once. The aggregate's window fold accumulates with these
 * aggregators, and the end-to-end tests and the fault run check its output against {@link recompute}, so a
 * check and the pipeline can disagree about delivery, never about the rule.
 *
 * Each statistic is an aggregator in the manner of Quix Streams', plus `merge`: `initial()` is the identity of
 * `merge`, and merging two folds gives the fold of both inputs, so windows, partitions and running totals
 * combine in any grouping. Nothing is changed in place: an emitted window shares its histograms with the
 * fold's running totals, and later events must not rewrite what was already sent.
 */
import { OPTIONAL_LOGIN_FIELDS, type OptionalLoginField } from "../shared/schemas.ts";

/**
 * A histogram: how many logins had each key.
 *
 * @example
 * const devices: Counts = { android: 3, ios: 1 };
 */
export type Counts = Record<string, number>;

/**
 * What the statistics read of a login. Structural, so that a raw event, a body as posted and a row of the
 * `logins` table all qualify.
 *
 * @example
 * const login: LoginFields = { device_type: "iOS", locale: null };
 */
export type LoginFields = Partial<Record<OptionalLoginField, string | null>>;

/**
 * One statistic over logins.
 *
 * @example
 * const logins: LoginFields[] = [{ device_type: "web" }, {}];
 * const fold = <A>(agg: Aggregator<A>, events: LoginFields[]) =>
 *   agg.result(events.reduce((acc, event) => agg.add(acc, event), agg.initial()));
 * fold(messageCount, logins); // 2
 */
export interface Aggregator<A> {
  /** The statistic of no logins. */
  initial(): A;
  /** `acc` with one more login, as a new value. */
  add(acc: A, event: LoginFields): A;
  /** The statistic of the logins behind `a` and `b` together. */
  merge(a: A, b: A): A;
  /** What a window reports for `acc`. */
  result(acc: A): A;
}

function sum(a: Counts, b: Counts): Counts {
  const total = { ...a };
  for (const [key, n] of Object.entries(b)) total[key] = (total[key] ?? 0) + n;
  return total;
}

// A client that sends "" or " " has no more told us the value than one that leaves the field out.
const isMissing = (value: string | null | undefined): boolean =>
  value === undefined || value === null || value.trim() === "";

/**
 * The number of logins.
 *
 * @example
 * messageCount.merge(messageCount.add(messageCount.initial(), {}), 2); // 3
 */
export const messageCount: Aggregator<number> = {
  initial: () => 0,
  add: (n) => n + 1,
  merge: (a, b) => a + b,
  result: (n) => n,
};

/**
 * Logins per device type, trimmed and lower-cased because clients disagree on "iOS" and "ios". A login without
 * a device type has no key here; {@link missingFields} counts it.
 *
 * @example
 * deviceTypes.add(deviceTypes.add(deviceTypes.initial(), { device_type: " iOS" }), { device_type: "" });
 * // { ios: 1 }
 */
export const deviceTypes: Aggregator<Counts> = {
  initial: () => ({}),
  add(devices, event) {
    const device = event.device_type?.trim().toLowerCase();
    return device ? { ...devices, [device]: (devices[device] ?? 0) + 1 } : devices;
  },
  merge: sum,
  result: (devices) => devices,
};

/**
 * Logins per optional field that lack it: absent, null, or nothing but whitespace. Every field has a key from
 * the start, so a window reports all of them, zeros included.
 *
 * @example
 * missingFields.add(missingFields.initial(), { app_version: "2.3.0", device_type: " ", ip: null });
 * // { app_version: 0, device_type: 1, ip: 1, locale: 1, device_id: 1 }
 */
export const missingFields: Aggregator<Counts> = {
  initial: () => Object.fromEntries(OPTIONAL_LOGIN_FIELDS.map((field) => [field, 0])),
  add(missing, event) {
    const next = { ...missing };
    for (const field of OPTIONAL_LOGIN_FIELDS) if (isMissing(event[field])) next[field] = (next[field] ?? 0) + 1;
    return next;
  },
  merge: sum,
  result: (missing) => missing,
};

/**
 * The statistics of a window: its logins, their device types and their missing fields.
 *
 * @example
 * const stats: LoginStats = { messages: 1, devices: { web: 1 }, missing: missingFields.initial() };
 */
export interface LoginStats {
  messages: number;
  devices: Counts;
  missing: Counts;
}

/**
 * {@link messageCount}, {@link deviceTypes} and {@link missingFields} side by side, as a window carries them.
 *
 * @example
 * const one = loginStats.add(loginStats.initial(), { device_type: "web" });
 * loginStats.merge(one, one);
 * // { messages: 2, devices: { web: 2 }, missing: { app_version: 2, device_type: 0, ip: 2, locale: 2, device_id: 2 } }
 */
export const loginStats: Aggregator<LoginStats> = {
  initial: () => ({
    messages: messageCount.initial(),
    devices: deviceTypes.initial(),
    missing: missingFields.initial(),
  }),
  add: (stats, event) => ({
    messages: messageCount.add(stats.messages, event),
    devices: deviceTypes.add(stats.devices, event),
    missing: missingFields.add(stats.missing, event),
  }),
  merge: (a, b) => ({
    messages: messageCount.merge(a.messages, b.messages),
    devices: deviceTypes.merge(a.devices, b.devices),
    missing: missingFields.merge(a.missing, b.missing),
  }),
  result: (stats) => ({
    messages: messageCount.result(stats.messages),
    devices: deviceTypes.result(stats.devices),
    missing: missingFields.result(stats.missing),
  }),
};

/**
 * The start of the window of `windowMs` that holds the instant `ms`. Windows are aligned to the epoch, so every
 * partition and every recomputation cuts time at the same instants.
 *
 * @example
 * windowStart(Date.parse("2024-01-15T12:00:07Z"), 5_000) === Date.parse("2024-01-15T12:00:05Z"); // true
 */
export const windowStart = (ms: number, windowMs: number): number => Math.floor(ms / windowMs) * windowMs;

/**
 * A login with its event time: an event's ISO `timestamp`, or a `logins` row's `event_time` selected as one.
 *
 * @example
 * const login: TimedLogin = { timestamp: "2024-01-15T12:00:01Z", device_type: "android" };
 */
export type TimedLogin = LoginFields & { timestamp: string | Date };

/**
 * The statistics each window of `windowMs` must hold for `events`, keyed by window start as `timestamp_start`
 * gives it, earliest first: what tests and the fault run check the pipeline against. Each event counts once, so
 * leave out late events (the pipeline counts those in a later window's `late_messages`) and repeated event_ids.
 *
 * @example
 * recompute([{ timestamp: "2024-01-15T12:00:01Z", device_type: "iOS" }], 10_000);
 * // Map { "2024-01-15T12:00:00.000Z" => { messages: 1, devices: { ios: 1 },
 * //   missing: { app_version: 1, device_type: 0, ip: 1, locale: 1, device_id: 1 } } }
 */
export function recompute(events: Iterable<TimedLogin>, windowMs: number): Map<string, LoginStats> {
  const windows = new Map<number, LoginStats>();
  for (const event of events) {
    const start = windowStart(new Date(event.timestamp).getTime(), windowMs);
    windows.set(start, loginStats.add(windows.get(start) ?? loginStats.initial(), event));
  }
  return new Map(
    [...windows]
      .sort(([a], [b]) => a - b)
      .map(([start, stats]) => [new Date(start).toISOString(), loginStats.result(stats)]),
  );
}
