/**
 * A {@link KafkaConnection} as librdkafka properties (CONFIGURATION.md), and librdkafka's access errors as the
 * same one-line messages the other client gives. Certificates are passed as file paths: librdkafka reads them
 * when the client starts, so a client started after a rotation reads the new ones.
 */
import { brokersOf, saslRejection } from "../connection.ts";
import type { KafkaConnection } from "../types.ts";
import { ERR, rdkafka } from "./ffi.ts";

/**
 * The properties that reach the cluster `connection` describes.
 *
 * @example
 * connectionSettings({ brokers: ["b:9093"], tls: { checkServerName: true } });
 * // { "bootstrap.servers": "b:9093", "security.protocol": "SSL", "ssl.endpoint.identification.algorithm": "https" }
 */
export function connectionSettings(connection: KafkaConnection): Record<string, string> {
  const { brokers, sasl, tls } = connection;
  return {
    "bootstrap.servers": brokers.join(","),
    "security.protocol": `${sasl ? "SASL_" : ""}${tls ? "SSL" : "PLAINTEXT"}`,
    ...(sasl && { "sasl.mechanisms": sasl.mechanism, "sasl.username": sasl.username, "sasl.password": sasl.password }),
    ...(tls && {
      // Off: the chain must still lead to a trusted CA; only the name in the certificate is not compared.
      "ssl.endpoint.identification.algorithm": tls.checkServerName ? "https" : "none",
      ...(tls.caFile && { "ssl.ca.location": tls.caFile }),
      ...(tls.certFile && { "ssl.certificate.location": tls.certFile }),
      ...(tls.keyFile && { "ssl.key.location": tls.keyFile }),
    }),
  };
}

/**
 * True for a librdkafka before 2.6.1 (Debian bookworm's is 2.0.2): its SCRAM client-final-message repeats the
 * client nonce, which Kafka 4 brokers check strictly, so SCRAM fails against them with any password. Redpanda
 * and Kafka 3 accept it; PLAIN is not affected.
 *
 * @example
 * if (scramFailsOnKafka4()) log.warn("use PLAIN or KAFKA_CLIENT=platformatic against Kafka 4 with SCRAM");
 */
export function scramFailsOnKafka4(): boolean {
  return rdkafka().rd_kafka_version() < 0x020601ff;
}

/**
 * Why the broker refused `connection` for good, from an error event of librdkafka (its code and text), or
 * undefined for anything retrying may fix (a broker down or not up yet). The text never holds the password:
 * librdkafka's own text names the mechanism and the broker, not the secret.
 *
 * @example
 * accessRefusal(-169, "SASL authentication error: ... invalid credentials ...", kafka);
 * // "Kafka at 127.0.0.1:19094 rejected user \"pipeline\" (SCRAM-SHA-256): wrong username or password; check ..."
 */
export function accessRefusal(code: number, text: string, connection: KafkaConnection): string | undefined {
  if (code === ERR.AUTHENTICATION && connection.sasl?.mechanism.startsWith("SCRAM") && scramFailsOnKafka4())
    return `${saslRejection(connection, true)} (librdkafka ${rdkafka().rd_kafka_version_str()} is older than 2.6.1, whose SCRAM Kafka 4 brokers reject whatever the password: use PLAIN, a newer librdkafka, or KAFKA_CLIENT=platformatic)`;
  if (code === ERR.AUTHENTICATION)
    return saslRejection(
      connection,
      /invalid credentials|invalid username or password|authentication failed/i.test(text),
    );
  if (code === ERR.SSL) return `${brokersOf(connection)}: TLS handshake failed (${text}); check KAFKA_TLS_CA_FILE`;
  // librdkafka's own guess after a TLS handshake the broker closed: the port is a plaintext one.
  if (code === ERR.TRANSPORT && /connecting to a PLAINTEXT broker listener\?/.test(text))
    return `${brokersOf(connection)}: TLS handshake failed. The broker closed it (${text}). Check KAFKA_TLS and the port of KAFKA_BROKERS`;
  return undefined;
}

/**
 * Why the broker refused a plaintext `connection`, from one of librdkafka's log lines: a disconnect while the
 * first request (ApiVersion) waits is what a TLS port does with a plaintext client, and librdkafka reports it
 * in its log alone. Undefined for any other line, and with TLS on. The caller decides how many in a row count.
 *
 * @example
 * listenerRefusal("...: Disconnected: connection closed by peer: ... (after 0ms in state APIVERSION_QUERY)", kafka);
 * // "Kafka at 127.0.0.1:19094 rejected user \"pipeline\" (SCRAM-SHA-256): the SASL handshake failed; check ..."
 */
export function listenerRefusal(text: string, connection: KafkaConnection): string | undefined {
  if (connection.tls || !/Disconnected.*in state APIVERSION_QUERY/.test(text)) return undefined;
  if (connection.sasl) return saslRejection(connection, false);
  return `${brokersOf(connection)} closed the connection before answering; check KAFKA_TLS=on if the port is a TLS one`;
}
