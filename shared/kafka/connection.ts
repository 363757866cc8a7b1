/**
 * The one place where the security settings meet the client: the configuration becomes a {@link KafkaConnection},
 * and a connection becomes @platformatic/kafka's options (producer, consumer and admin all take them from here).
 * It also tells the failures that retrying cannot fix (rejected credentials, an untrusted certificate) from a
 * broker that does not answer yet.
 */
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import type { ConnectionOptions as TlsOptions } from "node:tls";
import type { SASLOptions } from "@platformatic/kafka";
import type { Config } from "../config.ts";
import type { KafkaConnection } from "./types.ts";

/**
 * The connection the configuration describes: `KAFKA_BROKERS`, and SASL, TLS and a namespace when they are set.
 *
 * @example
 * const kafka = kafkaConnection(config()); // { brokers: ["127.0.0.1:19092"] } with no security settings
 * await ensureTopics(kafka, topicSpecs(6));
 */
export function kafkaConnection(env: Config): KafkaConnection {
  const { KAFKA_SASL_MECHANISM: mechanism, KAFKA_SASL_USERNAME: username, KAFKA_SASL_PASSWORD: password } = env;
  return {
    brokers: env.KAFKA_BROKERS,
    ...(env.KAFKA_NAMESPACE && { namespace: env.KAFKA_NAMESPACE }),
    // The configuration's rules guarantee a username and a password with a mechanism.
    ...(mechanism && { sasl: { mechanism, username: username ?? "", password: password ?? "" } }),
    ...(env.KAFKA_TLS && {
      tls: {
        checkServerName: env.KAFKA_TLS_CHECK_SERVER_NAME,
        ...(env.KAFKA_TLS_CA_FILE && { caFile: env.KAFKA_TLS_CA_FILE }),
        ...(env.KAFKA_TLS_CERT_FILE && { certFile: env.KAFKA_TLS_CERT_FILE }),
        ...(env.KAFKA_TLS_KEY_FILE && { keyFile: env.KAFKA_TLS_KEY_FILE }),
      },
    }),
  };
}

/** The options of every @platformatic/kafka client for `connection`. */
export interface ClientConnectionOptions {
  bootstrapBrokers: string[];
  sasl?: SASLOptions;
  tls?: TlsOptions;
  tlsServerName?: boolean;
}

const hostOf = (broker: string) => broker.slice(0, broker.lastIndexOf(":"));

/**
 * `connection` as the client's options; certificate files are read here, so a client started after a rotation
 * reads the new ones.
 *
 * @example
 * const producer = new Producer({ clientId: "ingest", ...clientOptions(kafka) });
 */
export function clientOptions(connection: KafkaConnection): ClientConnectionOptions {
  const { brokers, sasl, tls } = connection;
  if (!tls) return { bootstrapBrokers: brokers, ...(sasl && { sasl }) };
  const read = (file: string | undefined) => (file === undefined ? undefined : readFileSync(file));
  const [ca, cert, key] = [read(tls.caFile), read(tls.certFile), read(tls.keyFile)];
  return {
    bootstrapBrokers: brokers,
    ...(sasl && { sasl }),
    tls: {
      ...(ca && { ca }),
      ...(cert && { cert }),
      ...(key && { key }),
      // Off: the chain must still lead to a trusted CA; only the name in the certificate is not compared.
      ...(!tls.checkServerName && { checkServerIdentity: () => undefined }),
    },
    // SNI, which managed clusters route by. An IP address is not a server name (RFC 6066): then none is sent.
    ...(brokers.every((broker) => isIP(hostOf(broker)) === 0) && { tlsServerName: true }),
  };
}

/** Node's and Bun's codes for a certificate the client does not accept. */
const CERTIFICATE_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/** Every error in `error`'s cause chain, the error first. */
function causes(error: unknown): Error[] {
  const chain: Error[] = [];
  for (let current = error; current instanceof Error && chain.length < 10; current = current.cause) {
    chain.push(current);
    if (current instanceof AggregateError) chain.push(...current.errors.flatMap(causes));
  }
  return chain;
}

/**
 * One string per cluster and identity, for sharing a client among the callers of one connection: credentials
 * included (other credentials make another client; the key stays in memory), the namespace not (it only renames
 * what the calls name).
 *
 * @example
 * connectionKey({ brokers: ["b:9092", "a:9092"], namespace: "t1" }) === connectionKey({ brokers: ["a:9092", "b:9092"] });
 */
export function connectionKey(connection: KafkaConnection): string {
  const { namespace: _, ...rest } = connection;
  return JSON.stringify({ ...rest, brokers: [...connection.brokers].sort() });
}

/** "Kafka at host:port,...": how every message about a connection begins. */
export const brokersOf = (connection: KafkaConnection) => `Kafka at ${connection.brokers.join(",")}`;

/**
 * The line for a refused SASL handshake, naming the settings to fix and never the password: `credentials` when
 * the broker said the username or password is wrong, otherwise a mechanism it does not offer (or plaintext sent
 * to a TLS port). Both clients word it the same.
 *
 * @example
 * saslRejection(kafka, true); // "Kafka at b:9093 rejected user \"svc\" (PLAIN): wrong username or password; check ..."
 */
export function saslRejection(connection: KafkaConnection, credentials: boolean): string {
  const { sasl } = connection;
  const who = sasl ? `user ${JSON.stringify(sasl.username)} (${sasl.mechanism})` : "this client";
  const where = brokersOf(connection);
  if (credentials)
    return `${where} rejected ${who}: wrong username or password; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`;
  const tlsHint = connection.tls ? "" : " (and KAFKA_TLS=on if the port is a TLS one)";
  return `${where} rejected ${who}: the SASL handshake failed; check KAFKA_SASL_MECHANISM${tlsHint}`;
}

/**
 * @platformatic/kafka's `AuthenticationError.code`, compared by value: importing the class would load that whole
 * library into every process, the librdkafka ones included (a unit test checks the two agree).
 */
const AUTHENTICATION_CODE = "PLT_KFK_AUTHENTICATION";

/**
 * Why the broker refused `connection` for good, or undefined when `error` is anything else (a refused or timed
 * out connection: the broker may just not be up yet). The text names the setting to fix and never a secret.
 *
 * @example
 * const why = accessFailure(error, kafka); // "Kafka at 127.0.0.1:19094 rejected user \"pipeline\" (SCRAM-SHA-256): ..."
 */
export function accessFailure(error: unknown, connection: KafkaConnection): string | undefined {
  const where = brokersOf(connection);
  const chain = causes(error);
  const codeOf = (cause: Error) => String((cause as { code?: unknown }).code);
  // The client's own words when one side speaks TLS and the other does not; first, because a SASL handshake sent
  // in plaintext to a TLS port fails as an authentication error caused by it.
  const mismatch = chain.find((cause) => /TLS handshake failed|Broker requires TLS/.test(cause.message));
  if (mismatch) return `${where}: ${mismatch.message} Check KAFKA_TLS and the port of KAFKA_BROKERS`;
  const auth = chain.find((cause) => codeOf(cause) === AUTHENTICATION_CODE);
  if (auth) return saslRejection(connection, auth.message === "SASL authentication failed.");
  const certificate = chain.find((cause) => CERTIFICATE_CODES.has(codeOf(cause)));
  if (certificate) {
    const code = codeOf(certificate);
    const fix =
      code === "ERR_TLS_CERT_ALTNAME_INVALID"
        ? "the certificate does not name this host; check KAFKA_BROKERS (or KAFKA_TLS_CHECK_SERVER_NAME)"
        : "the certificate is not signed by a trusted CA; check KAFKA_TLS_CA_FILE";
    return `${where}: TLS handshake failed (${code}: ${certificate.message}); ${fix}`;
  }
  return undefined;
}

/**
 * The broker refused the connection for a reason retrying cannot fix: credentials or a certificate. Its message is
 * the one line a stage stops with.
 */
export class KafkaAccessError extends Error {
  override name = "KafkaAccessError";
}

/**
 * `error` as a {@link KafkaAccessError} when it is a refusal retrying cannot fix, otherwise `error` itself: what a
 * producer or consumer rethrows, so both clients fail the same way on a wrong password.
 *
 * @example
 * await producer.send(request).catch((error) => { throw asAccessError(error, kafka); });
 */
export function asAccessError(error: unknown, connection: KafkaConnection): unknown {
  const why = accessFailure(error, connection);
  return why ? new KafkaAccessError(why, { cause: error }) : error;
}
