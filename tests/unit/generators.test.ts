import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { LocationEvent, LoginEvent, OPTIONAL_LOGIN_FIELDS, VehicleEvent } from "../../shared/schemas.ts";
import {
  corrupt,
  createGenerator,
  destination,
  distanceMetres,
  type EventBody,
  type GeneratorOptions,
  KINDS,
  type Kind,
  type LocationBody,
  type LoginBody,
  MAX_VEHICLE_SPEED,
  mulberry32,
  normaliseLongitude,
  seedOf,
  type UserChange,
  type UserChangeOptions,
  userChangeGenerator,
  type VehicleBody,
} from "../../tools/generators.ts";
import { type DriveOptions, drive, type RequestResult } from "../../tools/traffic.ts";

const T0 = Date.UTC(2024, 0, 15, 12, 0, 0);

/** `n` events of `kind`, one second of event time apart. */
function take(kind: Kind, n: number, options: Partial<GeneratorOptions> = {}): EventBody[] {
  const generator = createGenerator(kind, { seed: 7, ...options });
  return Array.from({ length: n }, (_, i) => generator.next(T0 + i * 1000));
}

const SCHEMAS = { logins: LoginEvent, locations: LocationEvent, fleet: VehicleEvent };

/** Whose event it is: a user's, or a vehicle's. */
const ownerOf = (event: EventBody) => ("vehicle_id" in event ? event.vehicle_id : event.user_id);

describe("mulberry32", () => {
  test("is deterministic by seed and uniform enough", () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const draws = Array.from({ length: 10_000 }, () => a());
    expect(draws.slice(0, 100)).toEqual(Array.from({ length: 100 }, () => b()));
    expect(draws.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = draws.reduce((s, x) => s + x, 0) / draws.length;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    expect(mulberry32(43)()).not.toBe(mulberry32(42)());
  });

  test("seeds can be words", () => {
    expect(seedOf("run-1")).toBe(seedOf("run-1"));
    expect(seedOf("run-1")).not.toBe(seedOf("run-2"));
  });
});

describe.each(KINDS)("%s generator", (kind) => {
  test("the same seed and times give the same events; another seed gives others", () => {
    expect(take(kind, 500)).toEqual(take(kind, 500));
    expect(take(kind, 50, { seed: 8 })).not.toEqual(take(kind, 50));
  });

  test("every event is valid for the API", () => {
    const schema = SCHEMAS[kind];
    for (const event of take(kind, 3_000, { missingShare: 0.3, eventIdPrefix: "run-x" })) {
      const result = v.safeParse(schema, event);
      if (!result.success) throw new Error(`${JSON.stringify(event)}: ${v.summarize(result.issues)}`);
    }
  });

  test("event_ids are sent only when asked for, numbered in order", () => {
    expect(take(kind, 3).every((event) => event.event_id === undefined)).toBe(true);
    expect(take(kind, 3, { eventIdPrefix: "p" }).map((event) => event.event_id)).toEqual(["p-0", "p-1", "p-2"]);
  });

  test("user and vehicle ids carry the prefix", () => {
    expect(take(kind, 100, { userPrefix: "run42-" }).every((event) => ownerOf(event).startsWith("run42-"))).toBe(true);
  });

  test("a corrupted event is rejected by the API's schema", () => {
    const rng = mulberry32(1);
    const schema = SCHEMAS[kind];
    for (const event of take(kind, 200)) expect(v.safeParse(schema, corrupt(event, rng)).success).toBe(false);
  });
});

describe("logins", () => {
  test.each([0, 0.1, 0.5])("about %p of the optional fields are missing, in all three forms", (share) => {
    const events = take("logins", 4_000, { missingShare: share }) as LoginBody[];
    const forms = { absent: 0, null: 0, empty: 0 };
    for (const event of events) {
      for (const field of OPTIONAL_LOGIN_FIELDS) {
        if (!(field in event)) forms.absent++;
        else if (event[field] === null) forms.null++;
        else if (event[field] === "") forms.empty++;
      }
    }
    const missing = forms.absent + forms.null + forms.empty;
    const measured = missing / (events.length * OPTIONAL_LOGIN_FIELDS.length);
    expect(Math.abs(measured - share)).toBeLessThan(0.02);
    if (share > 0) for (const n of Object.values(forms)) expect(n / missing).toBeGreaterThan(0.25);
  });

  test("devices, versions and locales come in mixes, with android the most common device", () => {
    const events = take("logins", 5_000, { missingShare: 0 }) as LoginBody[];
    const devices = new Map<string, number>();
    for (const event of events) {
      const device = event.device_type?.trim().toLowerCase() ?? "";
      devices.set(device, (devices.get(device) ?? 0) + 1);
    }
    expect(devices.size).toBeGreaterThanOrEqual(4);
    expect([...devices].sort((a, b) => b[1] - a[1])[0]?.[0]).toBe("android");
    expect(new Set(events.map((e) => e.app_version)).size).toBeGreaterThanOrEqual(4);
    expect(new Set(events.map((e) => e.locale)).size).toBeGreaterThanOrEqual(8);
    // A population: users come back, and a few come back far more often than most.
    expect(new Set(events.map((e) => e.user_id)).size).toBeLessThan(1000);
  });
});

describe("paths", () => {
  test("destination steps the right distance and keeps coordinates in range, even over poles and the antimeridian", () => {
    const rng = mulberry32(3);
    for (let i = 0; i < 5_000; i++) {
      const from: [number, number] = [rng() * 180 - 90, rng() * 360 - 180];
      const metres = rng() * 50_000;
      const to = destination(from[0], from[1], rng() * 360, metres);
      expect(to[0]).toBeGreaterThanOrEqual(-90);
      expect(to[0]).toBeLessThanOrEqual(90);
      expect(to[1]).toBeGreaterThanOrEqual(-180);
      expect(to[1]).toBeLessThanOrEqual(180);
      expect(Math.abs(distanceMetres(from, to) - metres)).toBeLessThan(1);
    }
    expect(normaliseLongitude(190)).toBe(-170);
    expect(normaliseLongitude(-540)).toBe(-180);
    expect(normaliseLongitude(-360)).toBe(0);
  });

  test("a user's consecutive pings are at most one step apart", () => {
    const events = take("locations", 5_000, { population: 20, intervalSeconds: 10 }) as LocationBody[];
    const last = new Map<string, [number, number]>();
    for (const event of events) {
      const here: [number, number] = [event.lat, event.long];
      const before = last.get(event.user_id);
      // Driving is the fastest mode: 13 m/s for 10 s, plus rounding to 6 decimals.
      if (before) expect(distanceMetres(before, here)).toBeLessThan(13 * 10 + 1);
      last.set(event.user_id, here);
    }
    expect(last.size).toBeGreaterThan(10);
  });

  test("scattered users start in many more places than city users, some far from every city, all valid", () => {
    const cells = (events: LocationBody[]) =>
      new Set(events.map((e) => `${Math.floor(e.lat)}:${Math.floor(e.long)}`)).size;
    const options = { population: 3_000, intervalSeconds: 1 };
    const city = take("locations", 3_000, options) as LocationBody[];
    const scattered = take("locations", 3_000, { ...options, placement: "scattered" }) as LocationBody[];
    // Each city start is within ~20 km of a centre: a couple of 1° cells per city at most.
    expect(cells(city)).toBeLessThan(100);
    expect(cells(scattered)).toBeGreaterThan(500);
    // No city lies beyond 72° of latitude, but the sphere does: only users placed anywhere on Earth get there.
    const polar = (events: LocationBody[]) => events.filter((e) => Math.abs(e.lat) > 75).length;
    expect(polar(city)).toBe(0);
    expect(polar(scattered)).toBeGreaterThan(5);
    for (const event of scattered) expect(v.safeParse(LocationEvent, event).success).toBe(true);
  });

  test("a fleet reports each vehicle in turn, at the speed it drove, never faster than the speed limit", () => {
    const vehicles = 7;
    const interval = 2;
    const events = take("fleet", vehicles * 300, { population: vehicles, intervalSeconds: interval }) as VehicleBody[];
    const ids = events.slice(0, vehicles).map((e) => e.vehicle_id);
    expect(new Set(ids).size).toBe(vehicles);
    events.forEach((event, i) => {
      expect(event.vehicle_id).toBe(ids[i % vehicles] as string);
      expect(event.speed).toBeLessThanOrEqual(MAX_VEHICLE_SPEED * 3.6);
      const previous = events[i - vehicles];
      if (!previous) return;
      // The reported speed (km/h) is the one driven since the previous report: distance = speed x interval,
      // give or take the rounding of speed (0.05 km/h) and of the coordinates (6 decimals).
      const metres = distanceMetres([previous.lat, previous.long], [event.lat, event.long]);
      expect(Math.abs(metres - (event.speed / 3.6) * interval)).toBeLessThan(0.5);
    });
    // The fleet moves: most vehicles end far from where they started.
    const moved = ids.filter((_, v) => {
      const first = events[v] as VehicleBody;
      const lastReport = events[events.length - vehicles + v] as VehicleBody;
      return distanceMetres([first.lat, first.long], [lastReport.lat, lastReport.long]) > 500;
    });
    expect(moved.length).toBeGreaterThan(vehicles / 2);
  });

  test("a vehicle's heading follows its street grid while it drives, and is absent while it stands", () => {
    const events = take("fleet", 5_000, { population: 10 }) as VehicleBody[];
    const standing = events.filter((e) => e.speed === 0);
    expect(standing.length).toBeGreaterThan(0);
    expect(standing.every((e) => e.heading === undefined)).toBe(true);
    const driving = events.filter((e) => e.speed > 0);
    for (const { heading } of driving) {
      // Within a GPS's two degrees of one of the grid's four directions (359 is next to 0).
      const offGrid = Math.min(...[0, 90, 180, 270, 360].map((d) => Math.abs((heading as number) - d)));
      expect(offGrid).toBeLessThanOrEqual(2);
    }
    expect(new Set(driving.map((e) => Math.round((e.heading as number) / 90) % 4)).size).toBe(4);
  });

  test("a vehicle's metadata is its model and depot, and an odometer that only goes up", () => {
    const events = take("fleet", 3_000, { population: 5 }) as VehicleBody[];
    const last = new Map<string, VehicleBody>();
    for (const event of events) {
      const before = last.get(event.vehicle_id);
      expect(Object.keys(event.metadata ?? {}).sort()).toEqual(["depot", "model", "odometer_km"]);
      if (before) {
        expect(event.metadata?.model).toBe(before.metadata?.model as string);
        expect(event.metadata?.depot).toBe(before.metadata?.depot as string);
        expect(event.metadata?.odometer_km as number).toBeGreaterThanOrEqual(before.metadata?.odometer_km as number);
      }
      last.set(event.vehicle_id, event);
    }
  });
});

describe("drive", () => {
  /** A stand-in for ingest: 202 with the event_ids, 400 for an event the API would reject, or silence. */
  function stubIngest(mode: "answer" | "silent" = "answer") {
    const bodies: { type: string; body: string }[] = [];
    const server = Bun.serve({
      port: 0,
      async fetch(request) {
        const body = await request.text();
        bodies.push({ type: request.headers.get("content-type") ?? "", body });
        if (mode === "silent") return new Promise<Response>(() => {});
        const events = body.split("\n").map((line) => JSON.parse(line) as Record<string, unknown>);
        const schema = request.url.endsWith("/v1/logins") ? LoginEvent : LocationEvent;
        if (!events.every((event) => v.safeParse(schema, event).success))
          return Response.json({ error: "invalid" }, { status: 400 });
        return Response.json({ accepted: events.length, event_ids: events.map((e) => e.event_id) }, { status: 202 });
      },
    });
    return { url: `http://127.0.0.1:${server.port}`, bodies, stop: () => server.stop(true) };
  }

  const run = (url: string, overrides: Partial<DriveOptions> = {}) =>
    drive({
      url,
      generator: createGenerator("logins", { seed: 5, eventIdPrefix: "e" }),
      clock: (before) => T0 + before * 10,
      rate: 0,
      count: 300,
      concurrency: 4,
      batch: [1, 10],
      timeoutMs: 2_000,
      rng: mulberry32(9),
      ...overrides,
    });

  test("sends exactly the events asked for, one per JSON body or several as NDJSON, all accepted", async () => {
    const ingest = stubIngest();
    try {
      const tally = await run(ingest.url);
      expect(tally).toMatchObject({ sent: 300, accepted: 300, rejected: 0, indeterminate: 0 });
      const events = ingest.bodies.flatMap(({ body }) => body.split("\n"));
      expect(new Set(events.map((line) => JSON.parse(line).event_id)).size).toBe(300);
      for (const { type, body } of ingest.bodies)
        expect(type).toBe(body.includes("\n") ? "application/x-ndjson" : "application/json");
    } finally {
      ingest.stop();
    }
  });

  test("the same seed sends the same requests, whatever the concurrency", async () => {
    const a = stubIngest();
    const b = stubIngest();
    try {
      await run(a.url, { concurrency: 1 });
      await run(b.url, { concurrency: 8 });
      expect(b.bodies.map((x) => x.body).sort()).toEqual(a.bodies.map((x) => x.body).sort());
    } finally {
      a.stop();
      b.stop();
    }
  });

  test("invalid requests are rejected whole; silence and refused connections are indeterminate", async () => {
    const ingest = stubIngest();
    const silent = stubIngest("silent");
    const outcomes: RequestResult[] = [];
    try {
      const rejected = await run(ingest.url, { invalidShare: 1, count: 50, onResult: (r) => outcomes.push(r) });
      expect(rejected).toMatchObject({ sent: 50, accepted: 0, rejected: 50, invalidRequests: rejected.requests });
      expect(outcomes.every((r) => r.outcome === "failed" && r.status === 400 && r.eventIds.length > 0)).toBe(true);
      const unanswered = await run(silent.url, { count: 5, timeoutMs: 100 });
      expect(unanswered).toMatchObject({ indeterminate: 5, accepted: 0 });
      expect([...unanswered.statuses.keys()]).toEqual(["timeout"]);
      silent.stop();
      const refused = await run(silent.url, { count: 5 });
      expect(refused).toMatchObject({ indeterminate: 5, accepted: 0 });
    } finally {
      ingest.stop();
      silent.stop();
    }
  });

  test("a rate paces the requests", async () => {
    const ingest = stubIngest();
    try {
      const started = performance.now();
      await run(ingest.url, { rate: 500, count: 200, batch: 10 });
      // 200 events at 500/s: the last request goes out 0.36 s after the first, never much sooner.
      expect(performance.now() - started).toBeGreaterThan(300);
    } finally {
      ingest.stop();
    }
  });
});

describe("users generator", () => {
  /** `n` changes, one second of event time apart. */
  function changes(n: number, options: Partial<UserChangeOptions> = {}): UserChange[] {
    const generator = userChangeGenerator({ seed: 7, updateShare: 0.3, deleteShare: 0.2, ...options });
    return Array.from({ length: n }, (_, i) => generator.next(T0 + i * 1000));
  }

  test("the same seed and times give the same changes; another seed gives others", () => {
    expect(changes(1000)).toEqual(changes(1000));
    expect(changes(50, { seed: 8 })).not.toEqual(changes(50));
  });

  test("updates and deletes come in their shares, and only of rows inserted before and not deleted", () => {
    const all = changes(20_000);
    const live = new Set<number>();
    let inserts = 0;
    for (const change of all) {
      if (change.op === "insert") {
        expect(change.handle).toBe(inserts++);
        live.add(change.handle);
        continue;
      }
      expect(live.has(change.handle)).toBe(true);
      if (change.op === "delete") live.delete(change.handle);
    }
    const share = (op: UserChange["op"]) => all.filter((change) => change.op === op).length / all.length;
    expect(Math.abs(share("update") - 0.3)).toBeLessThan(0.02);
    expect(Math.abs(share("delete") - 0.2)).toBeLessThan(0.02);
  });

  test("without update and delete shares every change is an insert", () => {
    expect(changes(500, { updateShare: 0, deleteShare: 0 }).every((change) => change.op === "insert")).toBe(true);
  });

  test("rows have every column, plausible values, the event time and the run's tag in the email", () => {
    const all = changes(2000, { emailTag: "run-42" });
    const inserts = all.flatMap((change) => (change.op === "insert" ? [change.row] : []));
    expect(new Set(inserts.map((row) => row.username)).size).toBe(inserts.length);
    for (const row of inserts) {
      expect(row.email).toBe(`${row.username}+run-42@example.com`);
      expect(row.username).toMatch(/^[a-z]+\.[a-z]+\d+$/);
      expect(row.name).toMatch(/^\S+ \S+$/);
      expect(row.address).toMatch(/^\d+ .+, \d{5} .+$/);
      expect(row.job.length).toBeGreaterThan(0);
      expect(row.company.length).toBeGreaterThan(0);
      const birth = Date.parse(`${row.birthdate}T00:00:00Z`);
      expect(new Date(birth).toISOString().slice(0, 10)).toBe(row.birthdate);
      expect(birth).toBeGreaterThanOrEqual(Date.UTC(1950, 0, 1));
      expect(birth).toBeLessThan(Date.UTC(2007, 0, 1));
    }
    all.forEach((change, i) => {
      if (change.op !== "delete") expect(change.row.timestamp).toBe(new Date(T0 + i * 1000).toISOString());
    });
    for (const change of changes(10, { updateShare: 0, deleteShare: 0 }))
      if (change.op === "insert") expect(change.row.email).toBe(`${change.row.username}@example.com`);
  });
});
