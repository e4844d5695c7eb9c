// Certificates for tests of TLS endpoints, made by openssl (on every test machine).
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** A self-signed certificate for `name` (a subjectAltName such as "IP:127.0.0.1"), made by openssl. */
export function selfSigned(dir: string, file: string, name: string): { key: string; cert: string } {
  const keyPath = join(dir, `${file}-key.pem`);
  const certPath = join(dir, `${file}-cert.pem`);
  const subject = `/CN=${name.replace(/^(IP|DNS):/, "")}`;
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"].concat([
      "-keyout",
      keyPath,
      "-out",
      certPath,
      "-subj",
      subject,
      "-addext",
      `subjectAltName=${name}`,
    ]),
    { stdio: "ignore" },
  );
  return { key: readFileSync(keyPath, "utf8"), cert: readFileSync(certPath, "utf8") };
}
