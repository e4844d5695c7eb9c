// `dsfetch fetch` against a store behind TLS with a private certificate authority (a TLS
// proxy the test starts in front of MinIO), and against a plain-HTTP store given as https://
// (review, 2026-12-05: both errors were OpenSSL's and Node's raw text, one advising a Node
// flag; AWS_CA_BUNDLE was ignored).
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
