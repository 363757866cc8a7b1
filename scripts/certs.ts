/**
 * The local stack's TLS material, made once with openssl and kept beside the broker data: a CA, and a server
 * certificate it signed for 127.0.0.1 and localhost, which both the broker's SASL_SSL listener and PostgreSQL
 * present. Clients trust {@link LOCAL_CA_FILE}, as they would a managed cluster's CA.
 */
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { $ } from "bun";

/** Outside the work tree, like the rest of the stack's files, so every clone uses the same CA. */
export const TLS_DIR = join(homedir(), ".cache", "event-pipeline", "tls");
/** The CA to trust: KAFKA_TLS_CA_FILE and DATABASE_TLS_CA_FILE for the local stack. */
export const LOCAL_CA_FILE = join(TLS_DIR, "ca.crt");
export const SERVER_CERT_FILE = join(TLS_DIR, "server.crt");
export const SERVER_KEY_FILE = join(TLS_DIR, "server.key");
/** The broker's keystore: the server key and certificate chain, PKCS#12 as Kafka reads it. */
export const BROKER_KEYSTORE_FILE = join(TLS_DIR, "broker.p12");
/** A local-only secret: the keystore never leaves this machine. */
export const BROKER_KEYSTORE_PASSWORD = "pipeline-keystore";

const DAYS = "3650";

/**
 * Makes the CA, the server certificate and the broker's keystore unless they exist. Written into a scratch
 * directory and renamed, so an interrupted run never leaves half a set behind.
 *
 * @example
 * await ensureCertificates(); // then LOCAL_CA_FILE verifies the broker's and PostgreSQL's certificates
 */
export async function ensureCertificates(log: (line: string) => void = console.log): Promise<void> {
  if (existsSync(BROKER_KEYSTORE_FILE)) return;
  if (!Bun.which("openssl")) throw new Error("openssl is not installed; install it with: apt-get install -y openssl");
  const scratch = `${TLS_DIR}.partial-${process.pid}`;
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const file = (name: string) => join(scratch, name);
  writeFileSync(
    file("server.ext"),
    [
      "subjectAltName = DNS:localhost, IP:127.0.0.1",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth",
      "",
    ].join("\n"),
  );
  await $`openssl req -x509 -new -nodes -newkey rsa:2048 -days ${DAYS} -subj ${"/CN=event-pipeline local CA"} -addext ${"basicConstraints=critical,CA:TRUE"} -addext ${"keyUsage=critical,keyCertSign,cRLSign"} -keyout ${file("ca.key")} -out ${file("ca.crt")}`.quiet();
  await $`openssl req -new -nodes -newkey rsa:2048 -subj ${"/CN=localhost"} -keyout ${file("server.key")} -out ${file("server.csr")}`.quiet();
  await $`openssl x509 -req -days ${DAYS} -in ${file("server.csr")} -CA ${file("ca.crt")} -CAkey ${file("ca.key")} -CAcreateserial -extfile ${file("server.ext")} -out ${file("server.crt")}`.quiet();
  await $`openssl pkcs12 -export -name broker -in ${file("server.crt")} -inkey ${file("server.key")} -certfile ${file("ca.crt")} -passout ${`pass:${BROKER_KEYSTORE_PASSWORD}`} -out ${file("broker.p12")}`.quiet();
  rmSync(TLS_DIR, { recursive: true, force: true });
  renameSync(scratch, TLS_DIR);
  log(`tls: made a local CA and a certificate for 127.0.0.1 and localhost in ${TLS_DIR}`);
}
