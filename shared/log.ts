/** JSON logs on stdout, one line per event, so `docker compose logs` and log shippers read them as they are. */
import pino from "pino";

/** The logger of a stage; `service` is added to every line. */
export function createLogger(service: string, level: string) {
  return pino({ level, base: { service }, timestamp: pino.stdTimeFunctions.isoTime });
}

export type Logger = ReturnType<typeof createLogger>;
