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

const LOWEST = 10_000;

/** A port nothing listens on right now, below the ephemeral range, for a process a bench or the fault run starts. */
export function freePort(): number {
  const span = Math.max(1, ephemeralFloor() - LOWEST);
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOWEST + Math.floor(Math.random() * span);
    try {
      Bun.serve({ port, fetch: () => new Response() }).stop(true);
      return port;
    } catch {
      // taken: try another
    }
  }
  throw new Error(`no free port found between ${LOWEST} and ${LOWEST + span}`);
}
