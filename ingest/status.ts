/**
 * `GET /`: what ingest has accepted since it started and whether the broker answers, as JSON for a client and
 * as a small self-contained HTML page for a browser. The counts are read from the `/metrics` counter itself.
 */
import type { Context } from "hono";
import type { Counter } from "prom-client";
import type * as v from "valibot";
import { TOPICS } from "../shared/topics.ts";
import { LINKS, type StatusBody } from "./openapi.ts";

export interface StatusOptions {
  /** `ingest_events_total{topic,outcome}`, as `/metrics` serves it. */
  events: Counter<"topic" | "outcome">;
  /** Whether the broker answers now. */
  brokerReachable: () => Promise<boolean>;
}

const EVENT_TYPES = { locations: TOPICS.locationsRaw, logins: TOPICS.loginsRaw, vehicles: TOPICS.vehiclesRaw };

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);

function page(status: v.InferOutput<typeof StatusBody>): string {
  const rows = Object.entries(status.events_accepted)
    .map(([type, count]) => `<tr><th scope="row">${escapeHtml(type)}</th><td>${count}</td></tr>`)
    .join("");
  const links = Object.values(status.links)
    .map((href) => `<li><a href="${escapeHtml(href)}">${escapeHtml(href)}</a></li>`)
    .join("");
  const broker = status.broker_reachable ? "reachable" : "not reachable";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ingest status</title>
<style>body{font:16px system-ui,sans-serif;margin:2rem;max-width:40rem}td{text-align:right;padding-left:2rem}</style>
</head><body><h1>ingest</h1>
<p>Broker: <strong id="broker">${broker}</strong></p>
<h2>Events accepted since start</h2><table id="events">${rows}</table>
<ul>${links}</ul></body></html>`;
}

/**
 * The `GET /` handler.
 *
 * @example
 * app.get("/", statusHandler({ events, brokerReachable: () => producer.ping() }));
 */
export function statusHandler({ events, brokerReachable }: StatusOptions) {
  return async (c: Context) => {
    const { values } = await events.get();
    const accepted = (topic: string) =>
      values
        .filter(({ labels }) => labels.topic === topic && labels.outcome === "accepted")
        .reduce((sum, { value }) => sum + value, 0);
    const status = {
      service: "ingest" as const,
      broker_reachable: await brokerReachable(),
      events_accepted: {
        locations: accepted(EVENT_TYPES.locations),
        logins: accepted(EVENT_TYPES.logins),
        vehicles: accepted(EVENT_TYPES.vehicles),
      },
      links: LINKS,
    };
    return c.req.header("accept")?.includes("text/html") ? c.html(page(status)) : c.json(status);
  };
}
