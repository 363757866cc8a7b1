/** JSON logs on stdout, one line per event, so `docker compose logs` and log shippers read them as they are. */
import pino from "pino";
import { redactUrl, SECRET_SETTINGS, URL_SETTINGS } from "./config.ts";

/** Fields that hold a secret, at the top of a log line's object or up to two levels down (`{ env }`, `{ kafka: { sasl } }`). */
const SECRET_FIELDS = ["password", "secret", "token", ...SECRET_SETTINGS];
const URL_FIELDS: string[] = [...URL_SETTINGS, "databaseUrl", "url"];
const deep = (field: string) => [field, `*.${field}`, `*.*.${field}`];

/**
 * Secrets never reach a log line: a password is replaced by `***`, and a URL keeps everything but its password, so
 * the line still says which database was meant.
 */
const redact = {
  paths: [...SECRET_FIELDS, ...URL_FIELDS].flatMap(deep),
  censor: (value: unknown, path: string[]) =>
    URL_FIELDS.includes(path.at(-1) ?? "") && typeof value === "string" ? redactUrl(value) : "***",
};

/**
 * The logger of a stage; `service` is added to every line.
 *
 * @example
 * const log = createLogger("enrich", "info");
 * log.info({ kafka: { sasl: { password: "s3cret" } } }, "connecting"); // logs "password":"***"
 */
export function createLogger(service: string, level: string) {
  return pino({ level, base: { service }, timestamp: pino.stdTimeFunctions.isoTime, redact });
}

export type Logger = ReturnType<typeof createLogger>;
