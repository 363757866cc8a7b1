/**
 * Seeded event generators: the traffic of the reference designs, as bodies the HTTP API accepts.
 * - logins: a user population with device, app-version and locale mixes, and a configurable share
 *   of missing optional fields (absent, `null` or `""`, the three forms the aggregate counts as missing);
 * - locations: users moving along paths, each ping a great-circle step from the previous one;
 * - fleet: N vehicles reporting in turn, driving along street-like paths at a varying speed, each report with
 *   its speed, heading and a little metadata.
 *
 * Pure: no I/O, no clock, no global randomness. Every choice comes from a mulberry32 PRNG seeded by the caller
 * and the event time is passed in, so the same seed and the same times give the same events.
 */
import { OPTIONAL_LOGIN_FIELDS } from "../shared/schemas.ts";

/** A PRNG: uniform numbers in [0, 1). */
export type Rng = () => number;

/** mulberry32: 32 bits of state, fast, and good enough for traffic (not for cryptography). */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A 32-bit seed from any text (FNV-1a), so seeds can be words and streams can derive their own. */
export function seedOf(text: string | number): number {
  let hash = 0x811c9dc5;
  for (const char of String(text)) hash = Math.imul(hash ^ (char.codePointAt(0) ?? 0), 0x01000193);
  return hash >>> 0;
}

/** A whole number in [min, max]. */
export const between = (rng: Rng, min: number, max: number): number => min + Math.floor(rng() * (max - min + 1));

/** One item of `items`, uniformly. */
export function pick<T>(rng: Rng, items: readonly T[]): T {
  const item = items[Math.floor(rng() * items.length)];
  if (item === undefined) throw new Error("pick from an empty list");
  return item;
}

/** One value of a `[value, weight]` table, in proportion to the weights. */
export function weighted<T>(rng: Rng, table: readonly (readonly [T, number])[]): T {
  const total = table.reduce((sum, [, weight]) => sum + weight, 0);
  let r = rng() * total;
  for (const [value, weight] of table) {
    r -= weight;
    if (r < 0) return value;
  }
  return (table[table.length - 1] as readonly [T, number])[0];
}

/** The kinds of traffic; `fleet` is vehicle reports. */
export const KINDS = ["logins", "locations", "fleet"] as const;
export type Kind = (typeof KINDS)[number];

/** The API route of each kind. */
export const ROUTES: Record<Kind, string> = {
  logins: "/v1/logins",
  locations: "/v1/locations",
  fleet: "/v1/vehicles",
};

/** A login body, as a login producer sends it. */
export interface LoginBody {
  event_id?: string;
  user_id: string;
  timestamp: string | number;
  app_version?: string | null;
  device_type?: string | null;
  ip?: string | null;
  locale?: string | null;
  device_id?: string | null;
}

/** A location body, as a mobile client sends it. */
export interface LocationBody {
  event_id?: string;
  user_id: string;
  timestamp: string | number;
  lat: number;
  long: number;
}

/** A vehicle report, as a fleet's tracker sends it. */
export interface VehicleBody {
  event_id?: string;
  vehicle_id: string;
  timestamp: string | number;
  lat: number;
  long: number;
  /** km/h. */
  speed: number;
  /** Degrees clockwise from north; absent while the vehicle stands. */
  heading?: number;
  metadata?: Record<string, string | number>;
}

export type EventBody = LoginBody | LocationBody | VehicleBody;

export interface GeneratorOptions {
  seed: number;
  /** Prepended to every user (or vehicle) id, so one run's events can be told apart from others'. */
  userPrefix?: string;
  /** When set, events carry client event_ids `<prefix>-<n>`, n counting from 0 (retries then deduplicate). */
  eventIdPrefix?: string;
  /** Users (logins, locations) or vehicles (fleet). */
  population?: number;
  /** logins: the share of optional fields that are missing, 0 to 1. */
  missingShare?: number;
  /** locations, fleet: simulated seconds of movement between two reports of the same user or vehicle. */
  intervalSeconds?: number;
  /**
   * locations, fleet: where users (or vehicles) start. "city" (the default): within ~20 km of a city centre.
   * "scattered": as many distinct places as a timezone lookup meets in production, most of them a few hundred
   * km around a city (across into neighbouring zones and out to sea), the rest anywhere on Earth.
   */
  placement?: "city" | "scattered";
}

/** Makes one event for event time `now` (ms since the epoch) each call. */
export interface EventGenerator {
  readonly kind: Kind;
  next(now: number): EventBody;
}

// ---- time ---------------------------------------------------------------------------------------------------

/**
 * The timestamp forms the API accepts, in the mix clients send: seed data's epoch seconds as a string most of
 * the time, then ISO-8601 and epoch milliseconds.
 */
const TIMESTAMP_FORMS: readonly (readonly [(ms: number) => string | number, number])[] = [
  [(ms) => String(Math.floor(ms / 1000)), 5],
  [(ms) => new Date(ms).toISOString(), 3],
  [(ms) => Math.floor(ms), 2],
];

function timestamp(rng: Rng, ms: number): string | number {
  return weighted(rng, TIMESTAMP_FORMS)(ms);
}

// ---- logins -------------------------------------------------------------------------------------------------

/** Device types with realistic shares, and the sloppy spellings real clients send (the aggregate normalises). */
const DEVICES = [
  ["android", 50],
  ["ios", 33],
  ["web", 10],
  ["Android", 3],
  [" iOS ", 1],
  ["tablet", 3],
] as const;

/** A staged rollout: most users on the current release, a tail on old ones, a few on the beta. */
const APP_VERSIONS = [
  ["2.4.0-beta.1", 3],
  ["2.3.0", 45],
  ["2.2.1", 25],
  ["2.1.0", 15],
  ["1.9.7", 12],
] as const;

/** Login producers send two-letter region codes. */
const LOCALES = [
  ["US", 30],
  ["IN", 12],
  ["BR", 9],
  ["RU", 8],
  ["DE", 7],
  ["GB", 7],
  ["JP", 6],
  ["MX", 6],
  ["FR", 5],
  ["NG", 4],
  ["AR", 3],
  ["AU", 3],
] as const;

interface User {
  id: string;
  device: string;
  deviceId: string;
  appVersion: string;
  locale: string;
  ip: string;
}

/** A UUID-shaped id from the PRNG (login producers use UUIDs for user ids). */
function uuid(rng: Rng): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(rng() * 16).toString(16)).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

function publicIp(rng: Rng): string {
  // Skips 0, 10, 127 and the multicast/reserved tail; the rest is plausible enough for traffic.
  const first = pick(rng, [23, 31, 45, 62, 77, 88, 103, 142, 151, 176, 185, 199, 203]);
  return [first, between(rng, 0, 255), between(rng, 0, 255), between(rng, 1, 254)].join(".");
}

function makeUser(rng: Rng, prefix: string): User {
  return {
    id: `${prefix}${uuid(rng)}`,
    device: weighted(rng, DEVICES),
    // Login producers' device ids look like "593-47-5928".
    deviceId: `${between(rng, 100, 999)}-${between(rng, 10, 99)}-${between(rng, 1000, 9999)}`,
    appVersion: weighted(rng, APP_VERSIONS),
    locale: weighted(rng, LOCALES),
    ip: publicIp(rng),
  };
}

/** A skewed pick: a few users are far more active than most, as in real traffic. */
const activeUser = (rng: Rng, count: number): number => Math.floor(count * rng() ** 2);

const MISSING_FORMS = ["absent", "null", "empty"] as const;

/** Logins of a user population; each optional field is missing with probability `missingShare`. */
export function loginGenerator(options: GeneratorOptions): EventGenerator {
  const rng = mulberry32(options.seed);
  const prefix = options.userPrefix ?? "";
  const users = Array.from({ length: Math.max(1, options.population ?? 1000) }, () => makeUser(rng, prefix));
  const missingShare = options.missingShare ?? 0.1;
  let n = 0;
  return {
    kind: "logins",
    next(now) {
      const user = users[activeUser(rng, users.length)] as User;
      const event: LoginBody = {
        ...(options.eventIdPrefix !== undefined && { event_id: `${options.eventIdPrefix}-${n}` }),
        user_id: user.id,
        timestamp: timestamp(rng, now),
      };
      n++;
      const values = {
        app_version: user.appVersion,
        device_type: user.device,
        ip: user.ip,
        locale: user.locale,
        device_id: user.deviceId,
      };
      for (const field of OPTIONAL_LOGIN_FIELDS) {
        if (rng() >= missingShare) {
          event[field] = values[field];
          continue;
        }
        const form = pick(rng, MISSING_FORMS);
        if (form !== "absent") event[field] = form === "null" ? null : "";
      }
      return event;
    },
  };
}

// ---- movement -----------------------------------------------------------------------------------------------

const EARTH_RADIUS_M = 6_371_000;
const rad = (deg: number) => (deg * Math.PI) / 180;
const deg = (r: number) => (r * 180) / Math.PI;

/** Rounds to 6 decimals (~0.1 m), as GPS receivers report. */
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** Longitude folded into [-180, 180]. */
export function normaliseLongitude(long: number): number {
  const folded = ((((long + 180) % 360) + 360) % 360) - 180;
  return Object.is(folded, -0) ? 0 : folded;
}

/**
 * The point `distance` metres from (lat, long) along the great circle with initial bearing `bearing` (degrees
 * clockwise from north). Latitude stays within [-90, 90] by construction (asin); longitude is folded.
 */
export function destination(lat: number, long: number, bearing: number, distance: number): [number, number] {
  const angular = distance / EARTH_RADIUS_M;
  const φ1 = rad(lat);
  const θ = rad(bearing);
  const sinφ2 = Math.sin(φ1) * Math.cos(angular) + Math.cos(φ1) * Math.sin(angular) * Math.cos(θ);
  const φ2 = Math.asin(Math.max(-1, Math.min(1, sinφ2)));
  const λ2 =
    rad(long) +
    Math.atan2(Math.sin(θ) * Math.sin(angular) * Math.cos(φ1), Math.cos(angular) - Math.sin(φ1) * Math.sin(φ2));
  return [deg(φ2), normaliseLongitude(deg(λ2))];
}

/** Great-circle distance in metres (haversine). */
export function distanceMetres(a: [number, number], b: [number, number]): number {
  const dφ = rad(b[0] - a[0]);
  const dλ = rad(b[1] - a[1]);
  const h = Math.sin(dφ / 2) ** 2 + Math.cos(rad(a[0])) * Math.cos(rad(b[0])) * Math.sin(dλ / 2) ** 2;
  return 2 * EARTH_RADIUS_M * Math.asin(Math.min(1, Math.sqrt(h)));
}

/** Where paths start: large cities on every continent, many of them near timezone borders, and a few extremes. */
const ORIGINS: readonly [number, number][] = [
  [40.71, -74.01], // New York
  [41.88, -87.63], // Chicago
  [34.05, -118.24], // Los Angeles
  [19.43, -99.13], // Mexico City
  [4.71, -74.07], // Bogotá
  [-23.55, -46.63], // São Paulo
  [-34.6, -58.38], // Buenos Aires
  [-31.42, -64.18], // Córdoba
  [51.51, -0.13], // London
  [48.86, 2.35], // Paris
  [52.52, 13.4], // Berlin
  [41.9, 12.5], // Rome
  [50.45, 30.52], // Kyiv
  [55.76, 37.62], // Moscow
  [41.01, 28.98], // Istanbul
  [30.04, 31.24], // Cairo
  [6.52, 3.38], // Lagos
  [-1.29, 36.82], // Nairobi
  [-26.2, 28.05], // Johannesburg
  [25.2, 55.27], // Dubai
  [19.08, 72.88], // Mumbai
  [28.61, 77.21], // Delhi
  [23.81, 90.41], // Dhaka
  [13.76, 100.5], // Bangkok
  [1.35, 103.82], // Singapore
  [-6.21, 106.85], // Jakarta
  [31.23, 121.47], // Shanghai
  [39.9, 116.4], // Beijing
  [37.57, 126.98], // Seoul
  [35.68, 139.65], // Tokyo
  [14.6, 120.98], // Manila
  [-33.87, 151.21], // Sydney
  [-36.85, 174.76], // Auckland
  [64.15, -21.94], // Reykjavík
  [-54.8, -68.3], // Ushuaia
  [71.29, -156.79], // Utqiaġvik, near the pole
  [-17.71, 178.07], // Fiji, across the antimeridian
];

/** Share of "scattered" starts anywhere on Earth (mostly sea, the rest sparse land); the others are around a city. */
const UNIFORM_SHARE = 0.3;
/** Spread of "scattered" starts around a city per axis (1.5° of latitude): they cross into neighbouring zones. */
const CITY_SPREAD_M = 167_000;

interface Mover {
  id: string;
  lat: number;
  long: number;
  bearing: number;
  /** Metres per second. */
  speed: number;
}

function startAt(rng: Rng, id: string, speed: number, placement: GeneratorOptions["placement"]): Mover {
  if (placement === "scattered" && rng() < UNIFORM_SHARE) {
    // Uniform over the sphere's area, not over the lat/long rectangle, which would crowd the poles.
    return { id, lat: deg(Math.asin(2 * rng() - 1)), long: rng() * 360 - 180, bearing: rng() * 360, speed };
  }
  const [lat, long] = pick(rng, ORIGINS);
  const heading = rng() * 360;
  // Within ~20 km of the centre; "scattered": a Rayleigh distance, i.e. a 2-D normal spread around it.
  const distance = placement === "scattered" ? CITY_SPREAD_M * Math.sqrt(-2 * Math.log(1 - rng())) : rng() * 20_000;
  const [jLat, jLong] = destination(lat, long, heading, distance);
  return { id, lat: jLat, long: jLong, bearing: rng() * 360, speed };
}

function report(mover: Mover, rng: Rng, now: number, eventId: string | undefined): LocationBody {
  return {
    ...(eventId !== undefined && { event_id: eventId }),
    user_id: mover.id,
    timestamp: timestamp(rng, now),
    lat: round6(mover.lat),
    long: round6(mover.long),
  };
}

/** How people move: walking, cycling, driving (metres per second). */
const MODES = [
  [1.4, 60],
  [5, 15],
  [13, 25],
] as const;

/**
 * Users moving along random-walk paths: each ping moves its user `intervalSeconds` of travel along a great
 * circle, the heading drifting a little every step and sometimes turning; now and then a user stands still.
 */
export function locationGenerator(options: GeneratorOptions): EventGenerator {
  const rng = mulberry32(options.seed);
  const prefix = options.userPrefix ?? "";
  const interval = options.intervalSeconds ?? 5;
  const users = Array.from({ length: Math.max(1, options.population ?? 1000) }, (_, i) =>
    startAt(rng, `${prefix}user-${i}`, weighted(rng, MODES), options.placement),
  );
  let n = 0;
  return {
    kind: "locations",
    next(now) {
      const user = users[activeUser(rng, users.length)] as Mover;
      user.bearing = (user.bearing + (rng() - 0.5) * 40 + (rng() < 0.05 ? pick(rng, [-90, 90]) : 0) + 360) % 360;
      const moving = rng() >= 0.1;
      if (moving) [user.lat, user.long] = destination(user.lat, user.long, user.bearing, user.speed * interval);
      const eventId = options.eventIdPrefix === undefined ? undefined : `${options.eventIdPrefix}-${n}`;
      n++;
      return report(user, rng, now, eventId);
    },
  };
}

/** Highway speed limit: vehicles never go faster (m/s, ~130 km/h). */
export const MAX_VEHICLE_SPEED = 36;

/** A delivery fleet's vans and pick-ups, sent in each report's metadata. */
const MODELS = ["Sprinter", "Transit", "Ducato", "Master", "Hilux"] as const;

interface Vehicle extends Mover {
  model: string;
  depot: string;
  odometerKm: number;
}

/** Rounds to 1 decimal, as trackers report speed and heading. */
const round1 = (x: number) => Math.round(x * 10) / 10;

/**
 * A vehicle fleet: `population` vehicles reporting in turn (vehicle 0, 1, ..., N-1, 0, ...), each report
 * `intervalSeconds` of driving after its previous one. Speed changes smoothly (accelerate, cruise, brake, stop
 * at lights) and headings follow a street grid with turns at intersections. A report is what a tracker sends
 * to /v1/vehicles: the position, the speed it was driven there at (km/h), the heading with a GPS's couple of
 * degrees of noise (none while standing: a receiver has no course then), and the vehicle's model, depot and
 * odometer as metadata.
 */
export function fleetGenerator(options: GeneratorOptions): EventGenerator {
  const rng = mulberry32(options.seed);
  const prefix = options.userPrefix ?? "";
  const interval = options.intervalSeconds ?? 1;
  const vehicles = Array.from({ length: Math.max(1, options.population ?? 50) }, (_, i): Vehicle => {
    const mover = startAt(rng, `${prefix}vehicle-${String(i).padStart(4, "0")}`, rng() * 15, options.placement);
    return {
      ...mover,
      bearing: pick(rng, [0, 90, 180, 270]),
      model: pick(rng, MODELS),
      depot: `depot-${between(rng, 1, 12)}`,
      odometerKm: between(rng, 1_000, 250_000),
    };
  });
  let n = 0;
  return {
    kind: "fleet",
    next(now) {
      const vehicle = vehicles[n % vehicles.length] as Vehicle;
      // Accelerate or brake by up to 3 m/s², stop at a red light now and then.
      const target = rng() < 0.03 ? 0 : vehicle.speed + (rng() - 0.45) * 3 * interval;
      vehicle.speed = Math.min(MAX_VEHICLE_SPEED, Math.max(0, target));
      if (rng() < 0.08) vehicle.bearing = (vehicle.bearing + pick(rng, [90, 270])) % 360;
      const metres = vehicle.speed * interval;
      [vehicle.lat, vehicle.long] = destination(vehicle.lat, vehicle.long, vehicle.bearing, metres);
      vehicle.odometerKm += metres / 1000;
      const speed = round1(vehicle.speed * 3.6);
      // Rounding 359.96 gives 360, which is north again: the API takes headings below 360.
      const heading = round1((vehicle.bearing + (rng() - 0.5) * 4 + 360) % 360) % 360;
      const body: VehicleBody = {
        ...(options.eventIdPrefix !== undefined && { event_id: `${options.eventIdPrefix}-${n}` }),
        vehicle_id: vehicle.id,
        timestamp: timestamp(rng, now),
        lat: round6(vehicle.lat),
        long: round6(vehicle.long),
        speed,
        ...(speed > 0 && { heading }),
        metadata: { model: vehicle.model, depot: vehicle.depot, odometer_km: round1(vehicle.odometerKm) },
      };
      n++;
      return body;
    },
  };
}

/** The generator of `kind`. */
export function createGenerator(kind: Kind, options: GeneratorOptions): EventGenerator {
  if (kind === "logins") return loginGenerator(options);
  if (kind === "locations") return locationGenerator(options);
  return fleetGenerator(options);
}

/**
 * An invalid copy of `event`, one mistake at a time, to exercise the API's all-or-nothing 400 path: a request
 * holding it must be rejected whole, so none of its events may ever reach a table.
 *
 * @example
 * corrupt({ user_id: "u1", timestamp: 1694479551 }, mulberry32(1)); // e.g. { user_id: "", timestamp: 1694479551 }
 */
export function corrupt(event: EventBody, rng: Rng): Record<string, unknown> {
  const copy: Record<string, unknown> = { ...event };
  const owner = "vehicle_id" in event ? "vehicle_id" : "user_id";
  const mistakes: (() => void)[] = [
    () => {
      copy.timestamp = "yesterday";
    },
    () => {
      copy[owner] = "";
    },
    () => {
      copy.altitude = 540; // a tracker's field, which our API does not take
    },
  ];
  if ("lat" in event) {
    mistakes.push(() => {
      copy.lat = 90 + between(rng, 1, 90);
    });
  } else {
    mistakes.push(() => {
      copy.device_type = 7;
    });
  }
  if ("speed" in event) {
    mistakes.push(
      () => {
        copy.speed = 500 + between(rng, 1, 500);
      },
      () => {
        copy.metadata = { ...event.metadata, trailer: { id: "t-1" } };
      },
    );
  }
  pick(rng, mistakes)();
  return copy;
}

// ---- users (source table rows for change data capture) -------------------------------------------------------

/** A row of the source database's `users` table (stack/source.sql), as the users generator writes it. */
export interface UserRow {
  name: string;
  username: string;
  email: string;
  address: string;
  job: string;
  company: string;
  /** `YYYY-MM-DD`. */
  birthdate: string;
  /** ISO-8601: when the row was last written, in event time. */
  timestamp: string;
}

/**
 * One write to the users table. Rows are named by handle, the count of inserts before theirs (the first insert is
 * handle 0), because the database assigns the ids: the writer maps handles to them.
 */
export type UserChange =
  | { op: "insert"; handle: number; row: UserRow }
  | { op: "update"; handle: number; row: Pick<UserRow, "address" | "job" | "company" | "timestamp"> }
  | { op: "delete"; handle: number };

export interface UserChangeOptions {
  seed: number;
  /** Share of changes that update a live row, 0 to 1. */
  updateShare: number;
  /** Share of changes that delete a live row, 0 to 1; updates and deletes together at most 1. */
  deleteShare: number;
  /** Put into every email (`jane.doe17+<tag>@example.com`), so one run's rows can be told apart from others'. */
  emailTag?: string;
}

// biome-ignore format: a table of words, not one per line
const FIRST_NAMES = [
  "Aiko", "Amara", "Ana", "Ben", "Carlos", "Chen", "Dmitri", "Elif", "Fatima", "Grace", "Hugo", "Ines", "Jamal",
  "Jane", "Kofi", "Lena", "Luca", "Maya", "Noah", "Olga", "Priya", "Rafael", "Sara", "Tomás", "Yuki", "Zoe",
] as const;
// biome-ignore format: a table of words, not one per line
const LAST_NAMES = [
  "Ahmed", "Andersen", "Costa", "Dubois", "Fischer", "García", "Ivanova", "Kim", "Kowalski", "Mensah", "Müller",
  "Nakamura", "Novak", "Okafor", "Patel", "Rossi", "Santos", "Schmidt", "Silva", "Smith", "Tanaka", "Wang", "Yilmaz",
] as const;
const STREETS = ["Main St", "Oak Ave", "Station Rd", "Harbour Way", "Mill Lane", "Park Blvd", "Elm St", "Hill Rd"];
const CITIES = ["Springfield", "Riverton", "Lakeside", "Fairview", "Brookfield", "Greenville", "Kingston", "Salem"];
// biome-ignore format: a table of words, not one per line
const JOBS = [
  "Accountant", "Architect", "Barista", "Data analyst", "Electrician", "Graphic designer", "Nurse", "Pharmacist",
  "Software engineer", "Teacher", "Translator", "Veterinarian",
] as const;
const COMPANY_WORDS = ["Acme", "Blue", "Delta", "Globex", "Initech", "Northwind", "Orbit", "Summit", "Vertex"];
const COMPANY_SUFFIXES = ["Inc", "Ltd", "GmbH", "LLC", "and Sons", "Group"];

const address = (rng: Rng) =>
  `${between(rng, 1, 999)} ${pick(rng, STREETS)}, ${between(rng, 10_000, 99_999)} ${pick(rng, CITIES)}`;
const company = (rng: Rng) => `${pick(rng, COMPANY_WORDS)} ${pick(rng, COMPANY_SUFFIXES)}`;

/** Removes accents and anything else an email's local part should not hold: "Tomás" to "tomas". */
const ascii = (text: string) =>
  text
    .normalize("NFD")
    .replace(/[^A-Za-z]/g, "")
    .toLowerCase();

/**
 * Writes to the source `users` table: inserts of fake people, and `updateShare` updates (a move, a new job) and
 * `deleteShare` deletes of rows inserted before and not yet deleted (an insert while there are none). Pure: the
 * same seed and times give the same changes.
 *
 * @example
 * const users = userChangeGenerator({ seed: 1, updateShare: 0.2, deleteShare: 0.1, emailTag: "run-7" });
 * users.next(Date.now()); // { op: "insert", handle: 0, row: { name: "Maya Novak", email: "maya.novak0+run-7@example.com", ... } }
 */
export function userChangeGenerator(options: UserChangeOptions): { next(now: number): UserChange } {
  const rng = mulberry32(options.seed);
  const tag = options.emailTag === undefined ? "" : `+${options.emailTag}`;
  /** Handles of the rows inserted and not deleted. */
  const live: number[] = [];
  let inserts = 0;
  return {
    next(now) {
      const r = rng();
      const timestamp = new Date(now).toISOString();
      if (live.length > 0 && r < options.updateShare + options.deleteShare) {
        const index = Math.floor(rng() * live.length);
        const handle = live[index] as number;
        if (r >= options.updateShare) {
          // Swap-remove: order among live rows does not matter, and it keeps deletes O(1).
          live[index] = live[live.length - 1] as number;
          live.pop();
          return { op: "delete", handle };
        }
        return {
          op: "update",
          handle,
          row: { address: address(rng), job: pick(rng, JOBS), company: company(rng), timestamp },
        };
      }
      const first = pick(rng, FIRST_NAMES);
      const last = pick(rng, LAST_NAMES);
      const handle = inserts++;
      const username = `${ascii(first)}.${ascii(last)}${handle}`;
      live.push(handle);
      const birth = new Date(Date.UTC(between(rng, 1950, 2006), between(rng, 0, 11), between(rng, 1, 28)));
      return {
        op: "insert",
        handle,
        row: {
          name: `${first} ${last}`,
          username,
          email: `${username}${tag}@example.com`,
          address: address(rng),
          job: pick(rng, JOBS),
          company: company(rng),
          birthdate: birth.toISOString().slice(0, 10),
          timestamp,
        },
      };
    },
  };
}
