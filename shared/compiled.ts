/**
 * A valibot schema compiled into plain closures, for the hot path of every consumer and of ingest. valibot
 * allocates a dataset per schema node and an issue list on the way; the compiled form checks the same rules
 * (read off the schema itself: its requirements, checks and transforms are the very functions and values valibot
 * calls) and allocates only the output. It answers only the verdict and the output; for why a value is
 * rejected, run valibot, which stays the one source of truth (tests/unit/compiled.test.ts proves both agree on
 * random valid and invalid inputs).
 *
 * Nodes it has no rule for (and defaults and fallbacks, which valibot computes lazily) run valibot's own
 * `~run`, so a schema that gains a new kind of node stays correct, only slower.
 */
import type * as v from "valibot";

/** What a compiled validator returns for a value its schema rejects. */
export const INVALID: unique symbol = Symbol("invalid");

/** A compiled schema: the output valibot's `safeParse` would give, or {@link INVALID}. */
export type Compiled<T> = (input: unknown) => T | typeof INVALID;

type Node = (input: unknown) => unknown;

/** The config valibot's safeParse runs with in this pipeline (consumers and ingest both abort pipes early). */
const CONFIG = { abortPipeEarly: true } as const;

// valibot's node shapes, as far as the compiler reads them; every node also has its own `~run`.
interface Dataset {
  value: unknown;
  typed?: boolean;
  issues?: unknown[];
}
interface AnyNode {
  kind: "schema" | "validation" | "transformation" | "metadata";
  type: string;
  "~run": (dataset: Dataset, config: typeof CONFIG) => Dataset;
  pipe?: AnyNode[];
  requirement?: unknown;
  operation?: (value: unknown) => unknown;
  check?: (value: unknown) => boolean;
  options?: AnyNode[];
  wrapped?: AnyNode;
  entries?: Record<string, AnyNode>;
  key?: AnyNode;
  value?: AnyNode;
  default?: unknown;
  fallback?: unknown;
}

/** valibot itself on one schema node: the fallback for nodes without a rule here. */
function viaValibot(node: AnyNode): Node {
  return (input) => {
    const dataset = node["~run"]({ value: input }, CONFIG);
    return dataset.issues ? INVALID : dataset.value;
  };
}

/** valibot itself on one pipe action, which runs on a value already typed by the pipe's schema. */
function actionViaValibot(node: AnyNode): Node {
  return (input) => {
    const dataset = node["~run"]({ value: input, typed: true }, CONFIG);
    return dataset.issues ? INVALID : dataset.value;
  };
}

const OPTIONAL_TYPES = new Set(["optional", "nullish", "exact_optional"]);

/** Whether valibot would fill in an absent entry (a default) or a failing one (a fallback): left to valibot. */
const computesValues = (node: AnyNode) => node.default !== undefined || node.fallback !== undefined;

function compileAction(node: AnyNode): Node {
  const requirement = node.requirement;
  switch (node.type) {
    case "min_length": {
      const min = requirement as number;
      return (input) => ((input as string).length >= min ? input : INVALID);
    }
    case "max_length": {
      const max = requirement as number;
      return (input) => ((input as string).length <= max ? input : INVALID);
    }
    case "min_value": {
      const min = requirement as number;
      return (input) => ((input as number) >= min ? input : INVALID);
    }
    case "max_value": {
      const max = requirement as number;
      return (input) => ((input as number) <= max ? input : INVALID);
    }
    case "lt_value": {
      const below = requirement as number;
      return (input) => ((input as number) < below ? input : INVALID);
    }
    case "regex":
    case "iso_timestamp": {
      const pattern = requirement as RegExp;
      return (input) => (pattern.test(input as string) ? input : INVALID);
    }
    case "check":
    case "integer":
    case "finite": {
      const holds = requirement as (value: unknown) => boolean;
      return (input) => (holds(input) ? input : INVALID);
    }
    case "trim":
      return (input) => (input as string).trim();
    case "transform": {
      const operation = node.operation as (value: unknown) => unknown;
      return (input) => operation(input);
    }
    default:
      return actionViaValibot(node);
  }
}

function compilePipe(items: AnyNode[]): Node {
  const [first, ...rest] = items;
  const steps = [
    compileNode(first as AnyNode),
    ...rest.filter((item) => item.kind !== "metadata").map((item) => compileStep(item)),
  ];
  return (input) => {
    let value = input;
    for (const step of steps) {
      value = step(value);
      if (value === INVALID) return INVALID;
    }
    return value;
  };
}

/** A pipe item after the first: a schema (runs on the value as it is by then) or an action. */
const compileStep = (item: AnyNode): Node => (item.kind === "schema" ? compileNode(item) : compileAction(item));

function compileStrictObject(node: AnyNode): Node {
  const entries = node.entries as Record<string, AnyNode>;
  if (Object.values(entries).some(computesValues)) return viaValibot(node);
  const fields = Object.entries(entries).map(([key, schema]) => ({
    key,
    check: compileNode(schema),
    required: !OPTIONAL_TYPES.has(schema.type),
  }));
  const known = (key: string) => Object.hasOwn(entries, key);
  return (input) => {
    if (!input || typeof input !== "object") return INVALID;
    const source = input as Record<string, unknown>;
    const output: Record<string, unknown> = {};
    for (const { key, check, required } of fields) {
      // `in`, not hasOwn: valibot reads entries the same way.
      if (key in source) {
        const value = check(source[key]);
        if (value === INVALID) return INVALID;
        output[key] = value;
      } else if (required) return INVALID;
    }
    for (const key in source) if (!known(key)) return INVALID;
    return output;
  };
}

/** Keys valibot's records skip: not their own, or able to reach a prototype. */
const validRecordKey = (object: object, key: string) =>
  Object.hasOwn(object, key) && key !== "__proto__" && key !== "prototype" && key !== "constructor";

function compileRecord(node: AnyNode): Node {
  const checkKey = compileNode(node.key as AnyNode);
  const checkValue = compileNode(node.value as AnyNode);
  return (input) => {
    if (!input || typeof input !== "object") return INVALID;
    const source = input as Record<string, unknown>;
    const output: Record<string, unknown> = {};
    for (const entryKey in source) {
      if (!validRecordKey(source, entryKey)) continue;
      const key = checkKey(entryKey);
      if (key === INVALID) return INVALID;
      const value = checkValue(source[entryKey]);
      if (value === INVALID) return INVALID;
      output[key as string] = value;
    }
    return output;
  };
}

function compileNode(node: AnyNode): Node {
  if (node.pipe) return compilePipe(node.pipe);
  if (computesValues(node)) return viaValibot(node);
  switch (node.type) {
    case "string":
      return (input) => (typeof input === "string" ? input : INVALID);
    case "number":
      return (input) => (typeof input === "number" && !Number.isNaN(input) ? input : INVALID);
    case "custom": {
      const holds = node.check as (value: unknown) => boolean;
      return (input) => (holds(input) ? input : INVALID);
    }
    case "optional": {
      const wrapped = compileNode(node.wrapped as AnyNode);
      return (input) => (input === undefined ? input : wrapped(input));
    }
    case "nullish": {
      const wrapped = compileNode(node.wrapped as AnyNode);
      return (input) => (input === undefined || input === null ? input : wrapped(input));
    }
    case "union": {
      // valibot's union gives the output of the first option that accepts the value.
      const options = (node.options as AnyNode[]).map(compileNode);
      return (input) => {
        for (const option of options) {
          const value = option(input);
          if (value !== INVALID) return value;
        }
        return INVALID;
      };
    }
    case "strict_object":
      return compileStrictObject(node);
    case "record":
      return compileRecord(node);
    default:
      return viaValibot(node);
  }
}

/**
 * Compiles `schema` (synchronous valibot schemas only).
 *
 * @example
 * const check = compileSchema(RawLocation);
 * const value = check(JSON.parse(text));
 * if (value === INVALID) v.parse(RawLocation, JSON.parse(text)); // valibot throws, saying why
 */
export function compileSchema<S extends v.GenericSchema>(schema: S): Compiled<v.InferOutput<S>> {
  return compileNode(schema as unknown as AnyNode) as Compiled<v.InferOutput<S>>;
}

const compiledSchemas = new WeakMap<v.GenericSchema, Compiled<unknown>>();

/**
 * The compiled form of `schema`, compiled on first use and kept as long as the schema is.
 *
 * @example
 * compiled(RawLogin)(JSON.parse(text)); // the normalised login, or INVALID
 */
export function compiled<S extends v.GenericSchema>(schema: S): Compiled<v.InferOutput<S>> {
  let check = compiledSchemas.get(schema);
  if (!check) {
    check = compileSchema(schema);
    compiledSchemas.set(schema, check);
  }
  return check as Compiled<v.InferOutput<S>>;
}
