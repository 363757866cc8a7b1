/** A port nothing listens on right now, for a process a bench or the fault run starts. */
export function freePort(): number {
  const probe = Bun.serve({ port: 0, fetch: () => new Response() });
  const { port } = probe;
  probe.stop(true);
  if (port === undefined) throw new Error("could not find a free port");
  return port;
}
