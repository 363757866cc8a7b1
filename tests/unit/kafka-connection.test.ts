import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { AuthenticationError } from "@platformatic/kafka";
import { parseConfig } from "../../shared/config.ts";
import { accessFailure, clientOptions, kafkaConnection } from "../../shared/kafka/connection.ts";
import { fromBroker, onBroker } from "../../shared/kafka/namespace.ts";

const CA = import.meta.path; // any readable file stands in for a CA here

describe("kafkaConnection and clientOptions", () => {
  test("without security settings the client gets only the brokers", () => {
    const kafka = kafkaConnection(parseConfig({ KAFKA_BROKERS: "a:9092,b:9092" }));
    expect(kafka).toEqual({ brokers: ["a:9092", "b:9092"] });
    expect(clientOptions(kafka)).toEqual({ bootstrapBrokers: ["a:9092", "b:9092"] });
  });

  test("SASL and TLS settings reach the client, the CA as the file's bytes, SNI for host names", () => {
    const env = parseConfig({
      KAFKA_BROKERS: "broker.example.com:9093",
      KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
      KAFKA_SASL_USERNAME: "svc",
      KAFKA_SASL_PASSWORD: "pw",
      KAFKA_TLS: "on",
      KAFKA_TLS_CA_FILE: CA,
    });
    const options = clientOptions(kafkaConnection(env));
    expect(options.sasl).toEqual({ mechanism: "SCRAM-SHA-512", username: "svc", password: "pw" });
    expect(options.tls?.ca).toEqual(readFileSync(CA));
    expect(options.tls?.checkServerIdentity).toBeUndefined();
    expect(options.tlsServerName).toBe(true);
  });

  test("an IP address gets no SNI, and server name checking off skips only the name", () => {
    const env = parseConfig({ KAFKA_BROKERS: "127.0.0.1:19094", KAFKA_TLS: "on", KAFKA_TLS_CHECK_SERVER_NAME: "off" });
    const options = clientOptions(kafkaConnection(env));
    expect(options.tlsServerName).toBeUndefined();
    expect(options.tls?.checkServerIdentity?.("127.0.0.1", {} as never)).toBeUndefined();
    expect(options.tls?.rejectUnauthorized).toBeUndefined(); // the chain is still checked: Node's default
  });
});

describe("a connection's namespace", () => {
  test("prefixes every name on the broker and strips the prefix from what comes back", () => {
    const kafka = kafkaConnection(parseConfig({ KAFKA_NAMESPACE: "bench-x" }));
    expect(kafka.namespace).toBe("bench-x");
    expect(onBroker(kafka, "locations.raw")).toBe("bench-x.locations.raw");
    expect(fromBroker(kafka, "bench-x.locations.raw")).toBe("locations.raw");
    expect(fromBroker(kafka, "locations.raw")).toBe("locations.raw");
  });

  test("without one, names stay as they are", () => {
    const kafka = kafkaConnection(parseConfig({ KAFKA_NAMESPACE: "" }));
    expect(kafka).toEqual({ brokers: ["127.0.0.1:19092"] });
    expect(onBroker(kafka, "enrich")).toBe("enrich");
    expect(() => parseConfig({ KAFKA_NAMESPACE: "no spaces" })).toThrow("KAFKA_NAMESPACE");
  });
});

describe("accessFailure", () => {
  const kafka = { brokers: ["b:9093"], sasl: { mechanism: "PLAIN" as const, username: "svc", password: "pw" } };

  test("a refused or timed out connection is not an access failure: it is retried", () => {
    const refused = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    expect(accessFailure(new Error("Connection to b:9093 failed.", { cause: refused }), kafka)).toBeUndefined();
  });

  test("a certificate error anywhere in the cause chain names the CA setting and never the password", () => {
    const tls = Object.assign(new Error("self signed certificate in certificate chain"), {
      code: "SELF_SIGNED_CERT_IN_CHAIN",
    });
    const wrapped = new AggregateError([new Error("Connection to b:9093 failed.", { cause: tls })], "no broker");
    const why = accessFailure(wrapped, kafka) ?? "";
    expect(why).toContain("Kafka at b:9093: TLS handshake failed (SELF_SIGNED_CERT_IN_CHAIN");
    expect(why).toContain("KAFKA_TLS_CA_FILE");
    expect(why).not.toContain("pw");
  });

  test("the client's own authentication error is a rejected login, naming the settings and never the password", () => {
    const refused = new Error("Connection to b:9093 failed.", {
      cause: new AuthenticationError("SASL authentication failed."),
    });
    const why = accessFailure(refused, kafka) ?? "";
    expect(why).toContain('rejected user "svc" (PLAIN): wrong username or password');
    expect(why).not.toContain("pw");
  });

  test("a certificate for another host points at the broker address", () => {
    const name = Object.assign(new Error("Hostname/IP does not match"), { code: "ERR_TLS_CERT_ALTNAME_INVALID" });
    expect(accessFailure(name, kafka)).toContain("does not name this host; check KAFKA_BROKERS");
  });
});
