import { readFileSync } from "node:fs";

/**
 * The lowest port the kernel hands out to outgoing connections. A listening port is taken from below it: the
 * kernel's own pick (port 0) is an ephemeral port, which a client connection of any process (to the broker, the
 * database) may take as its local port in the meantime, and a stage restarted on the same port then cannot listen.
 */
function ephemeralFloor(): number {
  try {
    const [low] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/);
    return Number(low) || 32768;
  } catch {
    return 32768;
  }
}

/**
 * Where listening ports are drawn from: clear of the local servers' ports (`bun run stack`: Kafka 19092-19094,
 * FerretDB 27017, the others below 10000). A fault run restarts those servers, and a stage that took one of their
 * ports while it was down would keep it from coming back.
 */
const FROM = 20_000;
const TO = 27_000;

/** Ports this process handed out: two starts in a row must not get the same one before either listens. */
const given = new Set<number>();

const listenable = (port: number) => {
  try {
    Bun.serve({ port, fetch: () => new Response() }).stop(true);
    return true;
  } catch {
    return false;
  }
};

/**
 * A port nothing listens on right now, below the ephemeral range and clear of the local servers, for a process a
 * bench or the fault run starts. Where the ephemeral range starts below that span, the kernel picks one.
 */
export function freePort(): number {
  const to = Math.min(TO, ephemeralFloor());
  for (let attempt = 0; to > FROM && attempt < 200; attempt++) {
    const port = FROM + Math.floor(Math.random() * (to - FROM));
    if (given.has(port) || !listenable(port)) continue;
    given.add(port);
    return port;
  }
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const { port } = probe;
  probe.stop(true);
  if (port === undefined) throw new Error("could not find a free port");
  given.add(port);
  return port;
}
