/** The OpenAPI document without a server: its converted schemas agree with the valibot schemas they come from. */
import { describe, expect, test } from "bun:test";
import Ajv2020 from "ajv/dist/2020.js";
import * as v from "valibot";
import { buildOpenApi, EVENT_ROUTES } from "../../ingest/openapi.ts";
import { parseConfig } from "../../shared/config.ts";

const document = buildOpenApi(parseConfig({}));
const ajv = new Ajv2020({ strict: false, validateFormats: false });
ajv.addSchema(document, "api");

describe("buildOpenApi", () => {
  for (const route of EVENT_ROUTES) {
    test(`${route.name}: the JSON Schema and the valibot schema agree on every example`, () => {
      const validate = ajv.getSchema(`api#/components/schemas/${route.name}`);
      if (!validate) throw new Error(`no ${route.name} in the document`);
      const { object, array, invalid } = route.examples;
      for (const example of [object, ...array]) {
        expect(v.safeParse(route.schema, example).success).toBe(true);
        expect([validate(example), validate.errors]).toEqual([true, null]);
      }
      expect(v.safeParse(route.schema, invalid).success).toBe(false);
      expect(validate(invalid)).toBe(false);
    });
  }

  test("the limits and the bearer scheme follow the configuration", () => {
    const guarded = buildOpenApi(parseConfig({ INGEST_API_KEYS: "k", INGEST_BODY_LIMIT_BYTES: "2048" }));
    const post = (doc: typeof document) =>
      (doc.paths as Record<string, unknown>)["/v1/logins"] as { post: { security: object[]; responses: object } };
    expect(post(guarded).post.security).toEqual([{ bearer: [] }]);
    expect(post(document).post.security).toEqual([{}, { bearer: [] }]);
    expect(JSON.stringify(post(guarded).post.responses)).toContain("body is larger than 2048 bytes");
  });
});
