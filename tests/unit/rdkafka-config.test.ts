import { describe, expect, test } from "bun:test";
import { ConfigError, parseConfig } from "../../shared/config.ts";
import { kafkaConnection } from "../../shared/kafka/connection.ts";
import { accessRefusal, connectionSettings } from "../../shared/kafka/rdkafka/config.ts";
import { ERR } from "../../shared/kafka/rdkafka/ffi.ts";
import type { KafkaConnection } from "../../shared/kafka/types.ts";

const CA = import.meta.path; // any readable file stands in for a CA or a certificate here

describe("KAFKA_CLIENT", () => {
  test("defaults to librdkafka and takes platformatic", () => {
    expect(parseConfig({}).KAFKA_CLIENT).toBe("librdkafka");
    expect(parseConfig({ KAFKA_CLIENT: " platformatic " }).KAFKA_CLIENT).toBe("platformatic");
  });

  test("any other value is a configuration error naming both", () => {
    expect(() => parseConfig({ KAFKA_CLIENT: "kafkajs" })).toThrow(ConfigError);
    expect(() => parseConfig({ KAFKA_CLIENT: "kafkajs" })).toThrow(
      'KAFKA_CLIENT="kafkajs": must be one of librdkafka, platformatic',
    );
  });
});

describe("connectionSettings", () => {
  test("without security settings: the brokers over plaintext", () => {
    const kafka = kafkaConnection(parseConfig({ KAFKA_BROKERS: "a:9092,b:9092" }));
    expect(connectionSettings(kafka)).toEqual({
      "bootstrap.servers": "a:9092,b:9092",
      "security.protocol": "PLAINTEXT",
    });
  });

  test("SASL over TLS with a CA and a client certificate, the server name checked", () => {
    // The connection as kafkaConnection builds it from the KAFKA_* settings (tests/unit/kafka-connection.test.ts).
    const kafka: KafkaConnection = {
      brokers: ["broker.example.com:9093"],
      sasl: { mechanism: "SCRAM-SHA-512", username: "svc", password: "pw" },
      tls: { caFile: CA, certFile: CA, keyFile: CA, checkServerName: true },
    };
    expect(connectionSettings(kafka)).toEqual({
      "bootstrap.servers": "broker.example.com:9093",
      "security.protocol": "SASL_SSL",
      "sasl.mechanisms": "SCRAM-SHA-512",
      "sasl.username": "svc",
      "sasl.password": "pw",
      "ssl.endpoint.identification.algorithm": "https",
      "ssl.ca.location": CA,
      "ssl.certificate.location": CA,
      "ssl.key.location": CA,
    });
  });

  test("SASL without TLS, and TLS without SASL and without the name check", () => {
    const sasl = parseConfig({ KAFKA_SASL_MECHANISM: "PLAIN", KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" });
    expect(connectionSettings(kafkaConnection(sasl))["security.protocol"]).toBe("SASL_PLAINTEXT");
    const tls = connectionSettings(
      kafkaConnection(parseConfig({ KAFKA_TLS: "on", KAFKA_TLS_CHECK_SERVER_NAME: "off" })),
    );
    expect(tls["security.protocol"]).toBe("SSL");
    expect(tls["ssl.endpoint.identification.algorithm"]).toBe("none");
  });
});

describe("accessRefusal", () => {
  const kafka = { brokers: ["b:9093"], sasl: { mechanism: "PLAIN" as const, username: "svc", password: "pw" } };

  test("rejected credentials name the settings to fix and never the password", () => {
    const why = accessRefusal(ERR.AUTHENTICATION, "Authentication failed: Invalid username or password", kafka) ?? "";
    expect(why).toBe(
      'Kafka at b:9093 rejected user "svc" (PLAIN): wrong username or password; check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD',
    );
  });

  test("a TLS failure names the CA setting; a broker down is not an access failure", () => {
    expect(accessRefusal(ERR.SSL, "certificate verify failed", kafka)).toContain("check KAFKA_TLS_CA_FILE");
    expect(accessRefusal(ERR.TRANSPORT, "Connection refused", kafka)).toBeUndefined();
    expect(accessRefusal(ERR.ALL_BROKERS_DOWN, "1/1 brokers are down", kafka)).toBeUndefined();
  });
});
