/**
 * The monitoring of compose.yaml (monitoring/): Prometheus' configuration passes promtool and scrapes every
 * stage where compose runs it; Grafana's provisioned datasource is that Prometheus; every query of the dashboard
 * names a metric the stages export, read from their /metrics (the stages run in this process, so this file runs
 * under the servers' lock: `flock /tmp/pipeline-servers.lock bun test --timeout 60000 tests/monitoring.test.ts`).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, posix } from "node:path";
import { STAGES, type StageHandle, type StageName, startStage } from "../tools/harness.ts";
import { ownCapture } from "./capture.ts";

const ROOT = join(import.meta.dir, "..");
const read = (path: string) => readFileSync(join(ROOT, path), "utf8");

// biome-ignore lint/suspicious/noExplicitAny: configuration files are data; each test asserts the shape it reads.
type Any = any;

// As written: the values read here (container ports, mount paths, stage ports) are literals, never `${...}`.
const COMPOSE: Any = Bun.YAML.parse(read("compose.yaml"));
const service = (name: string): Any => COMPOSE.services[name];
const PROMETHEUS_FILE = "monitoring/prometheus.yml";
const PROMETHEUS: Any = Bun.YAML.parse(read(PROMETHEUS_FILE));
const DASHBOARD_FILE = "monitoring/grafana/dashboards/pipeline.json";
const DASHBOARD: Any = JSON.parse(read(DASHBOARD_FILE));
const DATASOURCES: Any = Bun.YAML.parse(read("monitoring/grafana/provisioning/datasources/prometheus.yml"));
const PROVIDERS: Any = Bun.YAML.parse(read("monitoring/grafana/provisioning/dashboards/pipeline.yml"));

const STAGE_NAMES = Object.keys(STAGES) as StageName[];
/** The port a stage's compose service listens on: the stage's own port setting in its environment. */
const stagePort = (name: StageName) => Number(service(name).environment[STAGES[name].port]);

/** The container path `source` (a path in the repository) is mounted at in `svc`, if it is. */
const mountOf = (svc: Any, source: string) =>
  (svc.volumes as string[])
    .map((volume) => volume.split(":"))
    .find(([from]) => posix.normalize(from ?? "") === posix.normalize(source))?.[1];

/** The port `svc` publishes on the host for `containerPort`, as `127.0.0.1:<host port>:<container port>`. */
const published = (svc: Any, containerPort: number) =>
  (svc.ports as string[]).find((port) => port.endsWith(`:${containerPort}`));

// ---------------------------------------------------------------------------------------------------------------
// PromQL: the metric names of an expression.

/** PromQL keywords that stand where a metric name could (the aggregation operators are followed by `(`). */
const PROMQL_KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "group_left", "group_right"]);

/** The metric names `expr` selects: identifiers that are no function, keyword, label, string or duration. */
function metricsOf(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, "")
    .replace(/\[[^\]]*\]/g, "")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const names = [...bare.matchAll(/(?<![\w.])([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)].map((match) => match[1] ?? "");
  return names.filter((name) => !PROMQL_KEYWORDS.has(name));
}

/** The metric names of an exposition: sampled ones, and those with only HELP/TYPE so far (histograms' series). */
function exportedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split("\n")) {
    const typed = /^# TYPE (\S+) (\w+)/.exec(line);
    if (typed) {
      const [, name = "", type] = typed;
      names.add(name);
      if (type === "histogram") for (const suffix of ["_bucket", "_sum", "_count"]) names.add(`${name}${suffix}`);
      continue;
    }
    const sample = /^([a-zA-Z_:][\w:]*)/.exec(line);
    if (sample?.[1]) names.add(sample[1]);
  }
  return names;
}

const PANELS: Any[] = DASHBOARD.panels;
const EXPRESSIONS: { panel: string; expr: string }[] = PANELS.flatMap((panel) =>
  (panel.targets as Any[]).map((target) => ({ panel: panel.title, expr: target.expr })),
);

// ---------------------------------------------------------------------------------------------------------------

describe("Prometheus", () => {
  test("its configuration passes promtool check config", () => {
    const promtool = Bun.which("promtool");
    if (!promtool) {
      throw new Error("promtool is not installed: install the Debian package `prometheus` (./pipeline setup does)");
    }
    const result = Bun.spawnSync([promtool, "check", "config", PROMETHEUS_FILE], { cwd: ROOT });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.exitCode, output).toBe(0);
    expect(output).toContain("SUCCESS");
  });

  test("scrapes every stage once, at the port its service listens on; a replicated one through compose's DNS", () => {
    const scraped = new Map<string, number>();
    for (const job of PROMETHEUS.scrape_configs as Any[]) {
      // `discovered`: through DNS, as A records (Prometheus' default type, SRV, compose's DNS does not serve).
      const targets: { host: string; port: number; discovered: boolean }[] = [
        ...((job.static_configs ?? []) as Any[]).flatMap((config) =>
          (config.targets as string[]).map((target) => {
            const [host = "", port = ""] = target.split(":");
            return { host, port: Number(port), discovered: false };
          }),
        ),
        ...((job.dns_sd_configs ?? []) as Any[]).flatMap((config) =>
          (config.names as string[]).map((host) => ({
            host,
            port: Number(config.port),
            discovered: config.type === "A",
          })),
        ),
      ];
      expect(targets.length, job.job_name).toBeGreaterThan(0);
      for (const { host, port, discovered } of targets) {
        expect(STAGE_NAMES, `${job.job_name}: ${host} is no stage service of compose.yaml`).toContain(
          host as StageName,
        );
        expect(service(host), `compose.yaml has no service ${host}`).toBeDefined();
        expect(port, `${job.job_name}: ${host}'s port`).toBe(stagePort(host as StageName));
        // A fixed target of a replicated service reaches one replica per scrape, whichever DNS answers first.
        const replicated = (service(host).deploy?.replicas ?? 1) > 1;
        if (replicated) expect(discovered, `${host} has replicas: scrape it with dns_sd_configs of type A`).toBe(true);
        scraped.set(host, (scraped.get(host) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(scraped)).toEqual(Object.fromEntries(STAGE_NAMES.map((name) => [name, 1])));
  });

  test("runs in compose with this configuration, on loopback, with a healthcheck", () => {
    const svc = service("prometheus");
    const config = (svc.command as string[]).find((arg) => arg.startsWith("--config.file="))?.split("=")[1];
    expect(mountOf(svc, PROMETHEUS_FILE)).toBe(config);
    expect(svc.image).toStartWith("prom/prometheus:");
    expect(published(svc, 9090)).toStartWith("127.0.0.1:");
    expect(svc.healthcheck.test.join(" ")).toContain("http://127.0.0.1:9090/-/ready");
  });
});

describe("Grafana", () => {
  const svc = service("grafana");

  test("provisions the compose Prometheus as the datasource the dashboard's panels use", () => {
    expect(mountOf(svc, "monitoring/grafana/provisioning")).toBe("/etc/grafana/provisioning");
    const [datasource, ...others] = DATASOURCES.datasources as Any[];
    expect(others).toEqual([]);
    expect(datasource.type).toBe("prometheus");
    const url = new URL(datasource.url);
    expect(service(url.hostname), `${url.hostname} is no compose service`).toBeDefined();
    expect(published(service(url.hostname), Number(url.port))).toBeDefined();
    expect(svc.depends_on[url.hostname]?.condition).toBe("service_healthy");
    for (const panel of PANELS) {
      expect(panel.datasource, panel.title).toEqual({ type: "prometheus", uid: datasource.uid });
      for (const target of panel.targets as Any[]) expect(target.datasource, panel.title).toEqual(panel.datasource);
    }
  });

  test("loads the dashboard from the folder its provider reads", () => {
    const [provider] = PROVIDERS.providers as Any[];
    expect(mountOf(svc, posix.dirname(DASHBOARD_FILE))).toBe(provider.options.path);
    expect(DASHBOARD.uid).toBeString();
  });

  test("runs on loopback with the admin login from the environment and a healthcheck", () => {
    expect(svc.image).toMatch(/^grafana\/grafana:/);
    expect(published(svc, 3000)).toStartWith("127.0.0.1:");
    expect(svc.environment.GF_SECURITY_ADMIN_USER).toStartWith("${GRAFANA_ADMIN_USER:-");
    expect(svc.environment.GF_SECURITY_ADMIN_PASSWORD).toStartWith("${GRAFANA_ADMIN_PASSWORD:-");
    expect(svc.healthcheck.test.join(" ")).toContain("http://127.0.0.1:3000/api/health");
  });
});

describe("the dashboard's queries", () => {
  test("metricsOf finds the metrics of an expression, and only those", () => {
    expect(
      metricsOf(
        'histogram_quantile(0.99, sum by (job, le) (rate(batch_seconds_bucket{job!="x"}[$__rate_interval]))) / on (job) group_left sum(up offset 5m)',
      ),
    ).toEqual(["batch_seconds_bucket", "up"]);
  });

  test("every panel has queries, each naming at least one metric", () => {
    expect(PANELS.length).toBeGreaterThan(0);
    for (const panel of PANELS) expect(panel.targets.length, panel.title).toBeGreaterThan(0);
    for (const { panel, expr } of EXPRESSIONS) expect(metricsOf(expr), `${panel}: ${expr}`).not.toEqual([]);
  });

  describe("name metrics the stages export (each stage started, its /metrics read)", () => {
    const exported = new Set<string>();
    const running: StageHandle[] = [];
    // capture on a slot of its own, dropped afterwards.
    const capture = ownCapture(`monitoring_${crypto.randomUUID().slice(0, 8)}`);

    beforeAll(async () => {
      // Finds the live broker and database; only these tests need them.
      await import("./setup.ts");
      // poll needs an API to poll: an empty page from a real server here.
      const api = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => Response.json([]) });
      afterAll(() => api.stop(true));
      const envOf = (name: StageName): Record<string, string> =>
        name === "capture" ? capture.env : name === "poll" ? { POLL_URL: `http://127.0.0.1:${api.port}/` } : {};
      for (const name of STAGE_NAMES) running.push(await startStage(name, { env: envOf(name), waitReady: true }));
      for (const stage of running) {
        const exposition = await stage.metrics();
        expect(exposition, `${stage.name}'s /metrics`).toBeDefined();
        for (const name of exportedNames(exposition ?? "")) exported.add(name);
      }
    });
    afterAll(async () => {
      await Promise.all(running.map((stage) => stage.stop()));
      await capture.drop();
    });

    test("every metric of every query", () => {
      const unknown = EXPRESSIONS.flatMap(({ panel, expr }) =>
        metricsOf(expr)
          .filter((name) => !exported.has(name))
          .map((name) => `${panel}: ${name}`),
      );
      expect(unknown).toEqual([]);
    });
  });
});
