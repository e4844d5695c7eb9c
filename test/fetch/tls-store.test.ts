// `dsfetch fetch` against a store behind TLS with a private certificate authority (a TLS
// proxy the test starts in front of MinIO), and against a plain-HTTP store given as https://
// (review, 2026-12-05: both errors were OpenSSL's and Node's raw text, one advising a Node
// flag; AWS_CA_BUNDLE was ignored).
import { createHash, randomBytes, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { stage } from "../../src/stage/stage.ts";
import { type CliResult, runCli } from "../harness/cli.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";
import { selfSigned } from "../harness/tls-cert.ts";
import { startTlsFront, type TlsFront } from "../harness/tls-front.ts";

let dir: string;
let bucket: string;
let front: TlsFront | undefined;
let httpsEndpoint: string;
let caFile: string;
const data = randomBytes(300_000);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "dsfetch-tls-store-"));
  bucket = await createBucket("tlsstore");
  await putObject(bucket, "blob.bin", data);
  const { key, cert } = selfSigned(dir, "store", "IP:127.0.0.1");
  caFile = join(dir, "ca.pem");
  writeFileSync(caFile, cert);
  // TLS in front of MinIO: bytes pass through, so signatures for this host:port stay valid.
  front = await startTlsFront({ key, cert }, s3Info().endpoint);
  httpsEndpoint = `https://127.0.0.1:${front.port}`;
}, 60_000);

afterAll(async () => {
  await front?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function fetchFrom(endpoint: string, env: Record<string, string> = {}): Promise<CliResult> {
  const storage = mkdtempSync(join(dir, "storage-"));
  return runCli(["fetch", "--datasets", "-", "--storage-root", storage, "--team", "t", "--json"], {
    env: { ...testEnv(), AWS_ENDPOINT_URL: endpoint, ...env },
    stdin: JSON.stringify([{ uri: `s3://${bucket}/blob.bin`, name: "blob" }]),
    timeoutMs: 90_000,
  });
}

const errorOf = (result: CliResult) =>
  (
    JSON.parse(result.stdout) as {
      datasets: { error?: { code: string; message: string; hint: string } }[];
    }
  ).datasets[0]?.error;

describe("a store with a private certificate authority", () => {
  it("untrusted: S3_ERROR (exit 6) saying so, with AWS_CA_BUNDLE as the way, not Node's flags", async () => {
    const result = await fetchFrom(httpsEndpoint);
    expect(result.code, result.stderr).toBe(6);
    const error = errorOf(result);
    expect(error?.code).toBe("S3_ERROR");
    expect(error?.message).toMatch(
      /the TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted: self[- ]signed certificate/,
    );
    expect(error?.message).not.toContain("--use-system-ca");
    expect(error?.hint).toContain("AWS_CA_BUNDLE");
  }, 120_000);

  it("trusted through AWS_CA_BUNDLE: staged, byte-identical", async () => {
    const result = await fetchFrom(httpsEndpoint, { AWS_CA_BUNDLE: caFile });
    expect(result.code, result.stderr).toBe(0);
    const staged = JSON.parse(result.stdout).datasets[0] as { path: string; bytes: number };
    expect(staged.bytes).toBe(data.length);
    const published = readFileSync(join(staged.path, "blob.bin"));
    expect(createHash("sha256").update(published).digest("hex")).toBe(
      createHash("sha256").update(data).digest("hex"),
    );
  }, 120_000);

  it("an AWS_CA_BUNDLE that cannot be read is a usage error naming it", async () => {
    const result = await fetchFrom(httpsEndpoint, { AWS_CA_BUNDLE: join(dir, "missing.pem") });
    expect(result.code, result.stderr).toBe(2);
    expect(errorOf(result)?.message).toMatch(/AWS_CA_BUNDLE: cannot read .*missing\.pem/);
  }, 120_000);
});

describe("AWS_CA_BUNDLE that does not vouch for the store: said why (exploratory review, 2026-12-07)", () => {
  /** The dataset's error from stage() in this process, with AWS_CA_BUNDLE set to `bundle`. */
  async function stagedWith(bundle: string) {
    const info = s3Info();
    const datasets = parseDatasetsValue(
      [
        {
          uri: `s3://${bucket}/blob.bin`,
          name: "blob",
          awsAccessKeyId: info.accessKeyId,
          awsSecretAccessKey: info.secretAccessKey,
        },
      ],
      "test",
      { AWS_ENDPOINT_URL: httpsEndpoint, AWS_REGION: info.region },
    );
    const settings = resolveSettings(
      { storageRoot: mkdtempSync(join(dir, "lib-")), team: "t" },
      {},
    );
    const before = process.env.AWS_CA_BUNDLE;
    process.env.AWS_CA_BUNDLE = bundle;
    try {
      const result = await stage(datasets, settings, {});
      const outcome = result.datasets[0];
      return outcome?.ok === false ? outcome.error : undefined;
    } finally {
      if (before === undefined) delete process.env.AWS_CA_BUNDLE;
      else process.env.AWS_CA_BUNDLE = before;
    }
  }

  it("a file with no certificate in it: the message names the file and says it holds none", async () => {
    const garbage = join(dir, "garbage.pem");
    writeFileSync(garbage, "garbage\n");
    const error = await stagedWith(garbage);
    expect(error?.code).toBe("S3_ERROR");
    expect(error?.message).toMatch(
      /the TLS certificate of https:\/\/127\.0\.0\.1:\d+ is not trusted: self[- ]signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\); AWS_CA_BUNDLE \(.*garbage\.pem\) holds no certificate \(no PEM "-----BEGIN CERTIFICATE-----" block\), so only Node's default certificate authorities were trusted$/,
    );
    expect(error?.hint).toContain(
      `put the PEM certificate of the certificate authority that issued the store's certificate in ${garbage}`,
    );
    expect(error?.hint).toContain(`openssl s_client -showcerts -connect 127.0.0.1:${front?.port}`);
  });

  it("a bundle of another certificate authority: not issued by any of its certificates, named with how many", async () => {
    const other = selfSigned(dir, "other-ca", "DNS:other-ca.test");
    const otherFile = join(dir, "other-ca.pem");
    writeFileSync(otherFile, other.cert);
    const error = await stagedWith(otherFile);
    expect(error?.code).toBe("S3_ERROR");
    expect(error?.message).toContain(
      `(DEPTH_ZERO_SELF_SIGNED_CERT); its certificate was not issued by any of the 1 certificate in AWS_CA_BUNDLE (${otherFile}: CN=other-ca.test), nor by Node's default certificate authorities`,
    );
    expect(error?.hint).toMatch(
      /^add the certificate authority that issued the store's certificate to /,
    );
    // Two of them: counted.
    const two = join(dir, "two-cas.pem");
    writeFileSync(two, `${other.cert}\n${other.cert}`);
    expect((await stagedWith(two))?.message).toContain(
      `not issued by any of the 2 certificates in AWS_CA_BUNDLE (${two}: CN=other-ca.test; CN=other-ca.test)`,
    );
  });

  it("the right certificate authority in DER form: said to be DER, with the conversion", async () => {
    const der = join(dir, "ca.der");
    writeFileSync(der, new X509Certificate(readFileSync(caFile)).raw);
    const error = await stagedWith(der);
    expect(error?.message).toContain(
      `AWS_CA_BUNDLE (${der}) holds no PEM certificate: it is one certificate in DER (binary) form (CN=127.0.0.1)`,
    );
    expect(error?.hint).toBe(
      `convert it to PEM and point AWS_CA_BUNDLE at that file: openssl x509 -inform der -in ${der} -out ca.pem`,
    );
  });
});

describe("a plain-HTTP store given as https://", () => {
  it("S3_ERROR (exit 6): it does not answer in TLS; give it as http://", async () => {
    const plain = new URL(s3Info().endpoint);
    const result = await fetchFrom(`https://${plain.host}`);
    expect(result.code, result.stderr).toBe(6);
    const error = errorOf(result);
    expect(error?.message).toMatch(/does not answer in TLS/);
    expect(error?.hint).toMatch(/give it as http:\/\//);
  }, 120_000);
});
