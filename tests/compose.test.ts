/**
 * compose.yaml, Dockerfile and .env.example, checked here without a container engine: against the Compose
 * Specification schema, and against the code they run (topics, stages, environment, ports, imported files).
 * The schema is the Compose Specification's compose-spec.json as shipped by the `dclint` package
 * (node_modules/dclint/schemas/compose.schema.json, JSON Schema draft-07).
 */
import { describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, join, posix, relative } from "node:path";
import Ajv from "ajv";
import { parseConfig } from "../shared/config.ts";
import { topicSpecs } from "../shared/topics.ts";
import { STAGES as STAGE_DEFINITIONS, type StageName } from "../tools/harness.ts";

const ROOT = join(import.meta.dir, "..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

// biome-ignore lint/suspicious/noExplicitAny: compose.yaml is data; each test asserts the shape it reads.
type Any = any;
type Env = Record<string, string>;

/** compose.yaml as written (merge keys resolved by the YAML parser), before interpolation. */
const RAW: Any = Bun.YAML.parse(read("compose.yaml"));

/** Compose's interpolation: `${NAME:-default}`, `${NAME-default}`, `${NAME}` and `$$` (a literal `$`). */
function interpolate(value: unknown, env: Env): unknown {
  if (typeof value === "string") {
    return value.replace(/\$\$|\$\{(\w+)(?:(:?-)([^}]*))?\}/g, (match, name, op, fallback) => {
      if (match === "$$") return "$";
      const set = env[name];
      if (op === ":-") return set ? set : fallback;
      if (op === "-") return set ?? fallback;
      return set ?? "";
    });
  }
  if (Array.isArray(value)) return value.map((item) => interpolate(item, env));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, interpolate(item, env)]));
  }
  return value;
}

/** compose.yaml as Compose runs it when no variable is set: every `${...}` at its default. */
const COMPOSE: Any = interpolate(RAW, {});
const service = (name: string): Any => COMPOSE.services[name];
const rawService = (name: string): Any => RAW.services[name];

/** Every `${...}` expression in the file's values (comments are not values), `$${...}` excluded. */
function expressions(value: unknown): string[] {
  if (typeof value === "string") return [...value.matchAll(/(?<!\$)\$\{([^}]*)\}/g)].map((m) => m[1] ?? "");
  if (Array.isArray(value)) return value.flatMap(expressions);
  if (value && typeof value === "object") return Object.values(value).flatMap(expressions);
  return [];
}

/** The code's defaults: every variable has one, so the empty environment parses. */
const CODE_DEFAULTS = parseConfig({});
/** Settings compose gives other values than the code's defaults, and why: ingest runs behind nginx. */
const COMPOSE_ONLY = { INGEST_BEHIND_PROXY: true };
const CONFIG_KEYS = Object.keys(CODE_DEFAULTS) as (keyof typeof CODE_DEFAULTS)[];
/** Settings that name another service: compose's own addresses, not the host's defaults. */
const SERVICE_ADDRESSES: string[] = [
  "KAFKA_BROKERS",
  "DATABASE_URL",
  "CAPTURE_DATABASE_URL",
  "MYSQL_URL",
  "S3_ENDPOINT",
  "MONGODB_URL",
];

/** The stages: every .ts file at the repository root is one. */
const STAGES = readdirSync(ROOT)
  .filter((name) => /^\w[\w-]*\.ts$/.test(name))
  .map((name) => name.slice(0, -3))
  .sort();

const APP_IMAGE = "event-pipeline";
/** Services that run the app image, and the script each runs (`bun run <script>`). */
const APP_SCRIPTS = Object.entries(COMPOSE.services as Record<string, Any>)
  .filter(([, svc]) => svc.image === APP_IMAGE)
  .map(([name, svc]) => {
    const [bun, run, script] = svc.command as string[];
    expect([bun, run]).toEqual(["bun", "run"]);
    return { name, script: script as string };
  });

// ---------------------------------------------------------------------------------------------------------------
// Imports: what a script needs at run time.

const transpiler = new Bun.Transpiler({ loader: "ts" });
const BUILTINS = new Set(builtinModules);

/** A package specifier's package name: `@scope/name/sub` -> `@scope/name`, `geo-tz/dist/x` -> `geo-tz`. */
const packageOf = (spec: string) =>
  spec
    .split("/")
    .slice(0, spec.startsWith("@") ? 2 : 1)
    .join("/");

/** The repository files `entry` loads, itself included (type-only imports are erased, so not counted). */
function importClosure(entry: string) {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    for (const { path } of transpiler.scanImports(read(file))) {
      if (path.startsWith(".")) {
        const target = posix.normalize(posix.join(posix.dirname(file), path));
        const resolved = [target, `${target}.ts`, `${target}/index.ts`].find((p) => existsSync(join(ROOT, p)));
        if (!resolved) throw new Error(`${file} imports ${path}, which does not exist`);
        visit(resolved);
      } else if (!path.startsWith("bun") && !path.startsWith("node:") && !BUILTINS.has(path)) {
        packages.add(packageOf(path));
      }
    }
  };
  visit(entry);
  return { files, packages };
}

/** Files read at run time besides imports, by the module that reads them. */
const RUNTIME_DATA: Record<string, string> = { "persist/postgres/db.ts": "persist/postgres/migrations" };
/** Files read at run time from a package, by the module that reads them: the image's production install has them. */
const PACKAGE_DATA: Record<string, string> = { "ingest.ts": "@scalar/api-reference" };

// ---------------------------------------------------------------------------------------------------------------
// Dockerfile and .dockerignore.

const DOCKERFILE = read("Dockerfile");
const dockerLines = DOCKERFILE.split("\n")
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith("#"));
/** The lines of the last build stage: the image that runs. */
const finalStage = dockerLines.slice(dockerLines.findLastIndex((line) => line.startsWith("FROM ")));
const instruction = (lines: string[], name: string) =>
  lines.filter((line) => line.startsWith(`${name} `)).map((line) => line.slice(name.length + 1).trim());

const IGNORE = read(".dockerignore")
  .split("\n")
  .map((line) => line.trim())
  .filter((line) => line && !line.startsWith("#"));

/** Whether `.dockerignore` lets `file` into the build context: the last pattern matching it or a parent wins. */
function inContext(file: string): boolean {
  const candidates = file.split("/").map((_, i, parts) => parts.slice(0, i + 1).join("/"));
  let included = true;
  for (const line of IGNORE) {
    const negated = line.startsWith("!");
    const glob = new Bun.Glob(posix.normalize(negated ? line.slice(1) : line).replace(/\/$/, ""));
    if (candidates.some((candidate) => glob.match(candidate))) included = negated;
  }
  return included;
}

/** Where the final stage's `COPY` instructions put repository file `file`, if any. */
function copiedTo(file: string): string | undefined {
  const workdir = instruction(finalStage, "WORKDIR").at(-1) ?? "/";
  for (const args of instruction(finalStage, "COPY")) {
    const parts = args.split(/\s+/).filter((part) => !part.startsWith("--"));
    if (args.includes("--from=")) continue;
    const target = parts.at(-1) ?? "";
    const dest = posix.resolve(workdir, target);
    const sources = parts.slice(0, -1);
    for (const source of sources) {
      const src = posix.normalize(source).replace(/\/$/, "");
      // Docker's rule: into the directory when the target ends with / or the sources are several or a glob.
      const intoDir = target.endsWith("/") || sources.length > 1 || src.includes("*");
      if (new Bun.Glob(src).match(file)) return intoDir ? posix.join(dest, basename(file)) : dest;
      if (file.startsWith(`${src}/`)) return posix.join(dest, file.slice(src.length + 1));
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------

describe("compose.yaml", () => {
  const ajv = new Ajv({ strict: false, allErrors: true });
  const schemaDir = join(dirname(createRequire(import.meta.url).resolve("dclint/package.json")), "schemas");
  const schema = JSON.parse(readFileSync(join(schemaDir, "compose.schema.json"), "utf8"));
  // The file names its draft with an https URL that Ajv does not know; Ajv's draft-07 support applies as is.
  delete schema.$schema;
  const validate = ajv.compile(schema);

  test("is valid under the Compose Specification schema, as written and interpolated", () => {
    for (const document of [RAW, COMPOSE]) {
      const valid = validate(document);
      expect(valid ? [] : ajv.errorsText(validate.errors, { separator: "\n" }).split("\n")).toEqual([]);
    }
  });

  test("every variable has a default, and .env.example documents exactly those defaults", () => {
    const used = new Map<string, string>();
    for (const expression of expressions(RAW)) {
      const match = /^(\w+):-(.*)$/.exec(expression);
      expect(match, `\${${expression}} needs a default: \${NAME:-default}`).not.toBeNull();
      const [, name = "", fallback = ""] = match ?? [];
      if (used.has(name)) expect(fallback, `${name} has two defaults`).toBe(used.get(name) ?? "");
      used.set(name, fallback);
    }
    const documented = new Map(
      read(".env.example")
        .split("\n")
        .filter((line) => /^\w+=/.test(line))
        .map((line) => [line.slice(0, line.indexOf("=")), line.slice(line.indexOf("=") + 1)]),
    );
    expect(Object.fromEntries(documented)).toEqual(Object.fromEntries(used));
  });

  test("images are pinned, and Redpanda is the one the tests' containers use", () => {
    for (const [name, svc] of Object.entries(COMPOSE.services as Record<string, Any>)) {
      if (svc.image === APP_IMAGE) continue;
      expect(svc.image, name).toMatch(/:[\w.-]+$/);
      expect(svc.image, name).not.toMatch(/:latest$/);
    }
    const testImage = /["'](docker\.redpanda\.com\/redpandadata\/redpanda:[^"']+)["']/.exec(
      read("tests/setup.ts"),
    )?.[1];
    expect(service("redpanda").image).toBe(testImage);
    expect(service("topic-init").image).toBe(testImage);
  });

  test("runs one service per stage, scalable, restarted, healthy on its /healthz at the configured port", () => {
    expect(STAGES.filter((stage) => !service(stage))).toEqual([]);
    for (const stage of STAGES) {
      const svc = service(stage);
      expect(svc.command, stage).toEqual(["bun", "run", `${stage}.ts`]);
      expect(svc.build, stage).toBeDefined();
      expect(svc.restart, stage).toBe("unless-stopped");
      // A fixed host port or container name would make `--scale` fail.
      expect(svc.ports, stage).toBeUndefined();
      expect(svc.container_name, stage).toBeUndefined();

      const portKey = `${stage.toUpperCase()}_PORT` as keyof typeof CODE_DEFAULTS;
      expect(CONFIG_KEYS, `shared/config.ts has no ${portKey}`).toContain(portKey);
      const port = parseConfig(svc.environment)[portKey];
      expect(port, `${stage}'s ${portKey}`).toBe(CODE_DEFAULTS[portKey]);
      expect(svc.healthcheck.test.join(" "), stage).toContain(`http://127.0.0.1:${port}/healthz`);
    }
    expect(service("ingest").deploy.replicas).toBeGreaterThan(1);
  });

  test("sets every variable each stage reads, with the code's defaults except where compose differs on purpose", () => {
    for (const stage of STAGES) {
      const env: Env = service(stage).environment;
      const { files } = importClosure(`${stage}.ts`);
      // shared/config.ts names every key; a key that another file of the stage's imports names is one it reads.
      // Transpiled first, so comments and types do not count.
      // The consume loop is among every stage's imports, but only a stage with a consumer group runs it.
      const consumes = STAGE_DEFINITIONS[stage as StageName]?.group !== undefined;
      const sources = [...files]
        .filter((file) => file !== "shared/config.ts" && (consumes || file !== "shared/consume.ts"))
        .map((f) => transpiler.transformSync(read(f)));
      const reads = CONFIG_KEYS.filter((key) => sources.some((text) => new RegExp(`\\b${key}\\b`).test(text)));
      expect(
        reads.filter((key) => !(key in env)),
        `${stage} reads these, compose does not set them`,
      ).toEqual([]);

      const parsed = parseConfig(env);
      for (const key of Object.keys(env) as (keyof typeof parsed)[]) {
        if (key in COMPOSE_ONLY) {
          expect(parsed[key], `${stage}: ${key}`).toEqual(COMPOSE_ONLY[key as keyof typeof COMPOSE_ONLY]);
          continue;
        }
        if (SERVICE_ADDRESSES.includes(key)) continue;
        expect(parsed[key], `${stage}: ${key}`).toEqual(CODE_DEFAULTS[key]);
      }
      // Docker waits stop_grace_period before SIGKILL; the stage needs SHUTDOWN_TIMEOUT_MS to drain.
      expect(Number.parseInt(service(stage).stop_grace_period, 10) * 1000).toBeGreaterThan(parsed.SHUTDOWN_TIMEOUT_MS);
    }
  });

  test("points every stage at the broker's internal listener and persist at the postgres service", () => {
    const redpandaArgs: string[] = service("redpanda").command;
    const advertised = redpandaArgs.find((arg) => arg.startsWith("--advertise-kafka-addr="));
    const internal = /internal:\/\/([^,]+)/.exec(advertised ?? "")?.[1];
    const pg = service("postgres").environment;
    for (const stage of STAGES) {
      const svc = service(stage);
      expect(parseConfig(svc.environment).KAFKA_BROKERS, stage).toEqual([internal ?? "no internal listener"]);
      expect(svc.depends_on.redpanda?.condition, stage).toBe("service_healthy");
      expect(svc.depends_on["topic-init"]?.condition, stage).toBe("service_completed_successfully");
      if (!("DATABASE_URL" in svc.environment)) continue;
      const url = new URL(svc.environment.DATABASE_URL);
      expect([url.hostname, url.port, url.username, url.password, url.pathname]).toEqual([
        "postgres",
        "5432",
        pg.POSTGRES_USER,
        pg.POSTGRES_PASSWORD,
        `/${pg.POSTGRES_DB}`,
      ]);
      expect(svc.depends_on.postgres?.condition, stage).toBe("service_healthy");
    }
  });

  test("runs Redpanda as one dev-container broker, reachable from the host at the code's default address", () => {
    const svc = service("redpanda");
    expect(svc.command.slice(0, 2)).toEqual(["redpanda", "start"]);
    expect(svc.command).toContain("--mode=dev-container");
    expect(svc.command).toContain("--smp=1");
    const flag = (name: string) => svc.command.find((arg: string) => arg.startsWith(`--${name}=`)) ?? "";
    const externalPort = /external:\/\/0\.0\.0\.0:(\d+)/.exec(flag("kafka-addr"))?.[1];
    const advertised = /external:\/\/([^,]+)/.exec(flag("advertise-kafka-addr"))?.[1];
    // Host scripts with no configuration connect to the default KAFKA_BROKERS, then follow the advertised one.
    expect(CODE_DEFAULTS.KAFKA_BROKERS).toEqual([advertised ?? "no external listener"]);
    expect(svc.ports).toContain(`${advertised}:${externalPort}`);
    expect(svc.volumes).toContain("redpanda-data:/var/lib/redpanda/data");
    expect(svc.healthcheck.test.join(" ")).toContain("rpk cluster health");
  });

  test("runs PostgreSQL 15 with credentials from the environment, on the code's default port", () => {
    const svc = service("postgres");
    const raw = rawService("postgres");
    expect(svc.image).toBe("postgres:15");
    for (const key of ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]) {
      expect(raw.environment[key]).toStartWith(`\${${key}:-`);
    }
    // The defaults are the code's DATABASE_URL, so host scripts reach compose's database unconfigured.
    const url = new URL(CODE_DEFAULTS.DATABASE_URL);
    expect([svc.environment.POSTGRES_USER, svc.environment.POSTGRES_PASSWORD]).toEqual([url.username, url.password]);
    expect(`/${svc.environment.POSTGRES_DB}`).toBe(url.pathname);
    expect(svc.ports).toContain(`${url.hostname}:${url.port}:5432`);
    expect(svc.volumes).toContain("postgres-data:/var/lib/postgresql/data");
    expect(svc.healthcheck.test.join(" ")).toContain("pg_isready");
  });

  test("configures Console for the broker's internal listener and Admin API", () => {
    const svc = service("console");
    const mount = svc.volumes.find((volume: string) => volume.startsWith("./redpanda/console.yaml:"));
    expect(mount?.split(":")[1]).toBe(svc.environment.CONFIG_FILEPATH);
    const config: Any = Bun.YAML.parse(read("redpanda/console.yaml"));
    expect(config.kafka.brokers).toEqual(parseConfig(service("enrich").environment).KAFKA_BROKERS);
    expect(config.redpanda.adminApi.urls).toEqual([`http://${service("topic-init").environment.RPK_ADMIN_HOSTS}`]);
    expect(svc.depends_on.redpanda.condition).toBe("service_healthy");
    expect(svc.ports).toHaveLength(1);
  });

  test("balances ingest's replicas with nginx, at the ingest port and body limit", () => {
    const lb = service("ingest-lb");
    const ingest = parseConfig(service("ingest").environment);
    const mount: string = lb.volumes.find((volume: string) => volume.startsWith("./nginx/"));
    const [source = "", target = ""] = mount.split(":");
    expect(target).toMatch(/^\/etc\/nginx\/templates\/[\w.-]+\.conf\.template$/);
    const template = read(source);
    expect(template).toMatch(new RegExp(`server ingest:${ingest.INGEST_PORT} resolve`));
    // The image's envsubst fills ${NAME} from the container's environment: each must be set, as for ingest.
    for (const [, name = ""] of template.matchAll(/\$\{(\w+)\}/g)) {
      expect(lb.environment[name], name).toBe(service("ingest").environment[name]);
    }
    const listen = /listen (\d+);/.exec(template)?.[1];
    expect(lb.ports).toEqual([`127.0.0.1:${CODE_DEFAULTS.INGEST_PORT}:${listen}`]);
    expect(lb.depends_on.ingest.condition).toBe("service_healthy");
  });
});

describe("topic init", () => {
  const plan = service("topic-plan");
  const init = service("topic-init");
  const planFile: string = plan.command.at(-1);

  test("plans in the app image and hands the plan to rpk through a shared volume", () => {
    expect(plan.command).toEqual(["bun", "run", "scripts/topics.ts", planFile]);
    expect(plan.restart).toBeUndefined(); // a one-shot: `unless-stopped` would rerun it forever
    const [volume] = (plan.volumes as string[]).filter((v) =>
      posix.dirname(planFile).startsWith(v.split(":")[1] ?? "-"),
    );
    expect(init.volumes).toContain(`${volume}:ro`);
    expect(init.volumes).toContain("./redpanda/create-topics.sh:/init/create-topics.sh:ro");
    expect(init.entrypoint).toEqual(["/bin/bash", "/init/create-topics.sh", planFile]);
    expect(init.depends_on["topic-plan"].condition).toBe("service_completed_successfully");
    expect(init.depends_on.redpanda.condition).toBe("service_healthy");
  });

  test("sets the batch limit the local stack's broker has", () => {
    const stackLimit = /^message\.max\.bytes=(\d+)$/m.exec(read("stack/kafka.properties"))?.[1];
    expect(init.environment.KAFKA_BATCH_MAX_BYTES).toBe(stackLimit);
  });

  describe("creates every topic of shared/topics.ts with its partitions (rpk replaced by a recorder)", () => {
    const dir = mkdtempSync(join(tmpdir(), "topic-init-"));
    const log = join(dir, "rpk.log");
    // Answers like rpk: a status table, exit 1 when a topic could not be created.
    writeFileSync(
      join(dir, "rpk"),
      `#!/usr/bin/env bash
echo "$*" >> "$RPK_LOG"
if [[ $* == *"topic create $FAIL_TOPIC "* ]]; then printf 'TOPIC STATUS\\n%s %s\\n' "$FAIL_TOPIC" "$FAIL_STATUS"; exit 1; fi
if [[ $* == *"topic create "* ]]; then printf 'TOPIC STATUS\\n%s OK\\n' "\${*##*topic create }"; fi
`,
    );
    chmodSync(join(dir, "rpk"), 0o755);

    /** Runs the topic-plan service's command, then create-topics.sh, each with its service's environment. */
    function runInit(partitions: string, extra: Env = {}) {
      rmSync(log, { force: true });
      const file = join(dir, basename(planFile));
      const planned = Bun.spawnSync(["bun", "run", "scripts/topics.ts", file], {
        cwd: ROOT,
        env: { ...process.env, ...plan.environment, TOPIC_PARTITIONS: partitions },
      });
      expect(planned.exitCode, planned.stderr.toString()).toBe(0);
      const result = Bun.spawnSync(["bash", join(ROOT, "redpanda/create-topics.sh"), file], {
        env: { PATH: `${dir}:${process.env.PATH}`, RPK_LOG: log, ...init.environment, ...extra },
      });
      const calls = existsSync(log) ? readFileSync(log, "utf8").trim().split("\n") : [];
      return { code: result.exitCode, stderr: result.stderr.toString(), calls };
    }

    test("each topic once, from the plan the code computed", () => {
      const { code, stderr, calls } = runInit("4");
      expect(code, stderr).toBe(0);
      const rpk = `-X brokers=${init.environment.RPK_BROKERS} -X admin.hosts=${init.environment.RPK_ADMIN_HOSTS}`;
      const creates = topicSpecs(4).map((s) => `${rpk} topic create ${s.name} --partitions 4 --if-not-exists`);
      expect(calls.filter((call) => call.includes(" topic create "))).toEqual(creates);
      expect(calls).toContain(`${rpk} cluster config set auto_create_topics_enabled false`);
      expect(calls).toContain(
        `${rpk} cluster config set kafka_batch_max_bytes ${init.environment.KAFKA_BATCH_MAX_BYTES}`,
      );
    });

    test("a topic that exists already is fine; any other failure fails the init", () => {
      const [first] = topicSpecs(1);
      const exists = runInit("1", { FAIL_TOPIC: first?.name ?? "", FAIL_STATUS: "TOPIC_ALREADY_EXISTS: exists" });
      expect(exists.code, exists.stderr).toBe(0);
      const denied = runInit("1", { FAIL_TOPIC: first?.name ?? "", FAIL_STATUS: "POLICY_VIOLATION: no" });
      expect(denied.code).not.toBe(0);
      expect(denied.stderr).toContain("POLICY_VIOLATION");
    });
  });
});

describe("Dockerfile", () => {
  test("builds on the official Bun image at package.json's Bun version, production dependencies, non-root", () => {
    const pinned = /"packageManager":\s*"bun@([^"]+)"/.exec(read("package.json"))?.[1];
    expect(instruction(dockerLines, "ARG")).toContain(`BUN_VERSION=${pinned}`);
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the Dockerfile's own ${} syntax, matched literally.
    for (const from of instruction(dockerLines, "FROM")) expect(from).toStartWith("oven/bun:${BUN_VERSION}");
    expect(instruction(dockerLines, "RUN")).toContain("bun install --frozen-lockfile --production");
    expect(instruction(finalStage, "USER").at(-1)).toMatch(/^(?!root$|0$)\w+$/);
  });

  test("copies every file the compose scripts import or read, to the same path under WORKDIR", () => {
    const workdir = instruction(finalStage, "WORKDIR").at(-1);
    for (const { name, script } of APP_SCRIPTS) {
      const { files } = importClosure(script);
      for (const [module, dir] of Object.entries(RUNTIME_DATA)) {
        if (!files.has(module)) continue;
        for (const data of readdirSync(join(ROOT, dir))) files.add(`${dir}/${data}`);
      }
      for (const file of files) {
        expect(inContext(file), `${name}: .dockerignore leaves out ${file}`).toBe(true);
        expect(copiedTo(file), `${name}: ${file}`).toBe(posix.join(workdir ?? "/", file));
      }
    }
  });

  test("knows every file a compose script reads at run time (a new one must be added to RUNTIME_DATA)", () => {
    const readers = new Set<string>();
    for (const { script } of APP_SCRIPTS) {
      for (const file of importClosure(script).files) {
        if (/import\.meta\.(dir|dirname|url|path)\b|process\.cwd\(\)/.test(read(file))) readers.add(file);
      }
    }
    expect([...readers].sort()).toEqual([...Object.keys(RUNTIME_DATA), ...Object.keys(PACKAGE_DATA)].sort());
    const dependencies = Object.keys(JSON.parse(read("package.json")).dependencies ?? {});
    for (const [module, pkg] of Object.entries(PACKAGE_DATA)) expect(dependencies, module).toContain(pkg);
  });

  test("installs every package a compose script imports as a production dependency", () => {
    const dependencies = Object.keys(JSON.parse(read("package.json")).dependencies ?? {});
    for (const { name, script } of APP_SCRIPTS) {
      const missing = [...importClosure(script).packages].filter((pkg) => !dependencies.includes(pkg));
      expect(missing, `${name} imports these, package.json's dependencies lack them`).toEqual([]);
    }
  });

  test("copies only files that exist and that .dockerignore lets into the context", () => {
    for (const args of instruction(dockerLines, "COPY")) {
      if (args.includes("--from=")) continue;
      for (const source of args.split(/\s+/).slice(0, -1)) {
        const matches = [...new Bun.Glob(posix.normalize(source)).scanSync({ cwd: ROOT, onlyFiles: false })];
        expect(matches.length, `COPY ${source} matches nothing`).toBeGreaterThan(0);
        for (const match of matches) expect(inContext(relative(ROOT, join(ROOT, match))), match).toBe(true);
      }
    }
  });
});
