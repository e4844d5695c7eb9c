// A bucket in another region than the one the requests are signed for (AWS_REGION unset, a
// bucket outside us-east-1): AWS answers 301 PermanentRedirect naming the bucket's region in
// x-amz-bucket-region, as the test's proxy does here for every request signed for
// us-east-1. dsfetch failed such datasets with "the store refused the request"; now it
// follows the region named, says so, and stages them. Without a region named: S3_ERROR that
// says what to set.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetEntry } from "../../src/config/dataset.ts";
import { ClientPool } from "../../src/fetch/client.ts";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, type ProxiedRequest, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const one = randomBytes(3 * 1024 * 1024);
const small = randomBytes(4000);

const signedFor = (request: ProxiedRequest, region: string) =>
  (request.headers.authorization ?? "").includes(`/${region}/s3/aws4_request`);

function redirectTo(region: string | undefined): void {
  proxy.rewriteResponses({
    match: (request) => signedFor(request, "us-east-1"),
    startLine: () => "HTTP/1.1 301 Moved Permanently",
    headers: (fields) => [
      ...fields.filter(
        ([name]) => !/^(content-type|content-range|etag|last-modified)$/i.test(name),
      ),
      ["Content-Type", "application/xml"],
      ...(region === undefined ? [] : ([["x-amz-bucket-region", region]] as [string, string][])),
    ],
    rewrite: (_, request) =>
      request.method === "HEAD"
        ? ""
        : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint. Please send all future requests to this endpoint.</Message><Bucket>${bucket}</Bucket></Error>`,
  });
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-region-"));
  bucket = await createBucket("region");
  await putObject(bucket, "one/model.bin", one);
  await putObject(bucket, "set/a.bin", small);
  await putObject(bucket, "set/b.bin", one);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

const command = (storage: string, verb = "fetch") => [
  verb,
  "--datasets",
  "-",
  "--storage-root",
  storage,
  "--team",
  "ml",
  "--json",
];
const input = () =>
  JSON.stringify([
    { uri: `s3://${bucket}/one/model.bin`, name: "one" },
    { uri: `s3://${bucket}/set/`, name: "set" },
  ]);
const env = () => ({ ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint, AWS_REGION: "us-east-1" });

describe("a bucket in another region", () => {
  it("named by the store: followed, said, staged byte-exact; every later request signed for it", async () => {
    redirectTo("eu-west-1");
    const storage = await mkdtemp(join(root, "storage-"));
    proxy.resetCounters();
    const run = await runCli(command(storage), { env: env(), stdin: input(), timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain(
      `warning: bucket "${bucket}" is in eu-west-1, not us-east-1: using eu-west-1 (give "region": "eu-west-1" in the dataset, or AWS_REGION, to save a request)`,
    );
    const data = join(storage, "ml", "data");
    expect(sha(await readFile(join(data, "one", "model.bin")))).toBe(sha(one));
    expect(sha(await readFile(join(data, "set", "a.bin")))).toBe(sha(small));
    expect(sha(await readFile(join(data, "set", "b.bin")))).toBe(sha(one));
    // Each dataset's first request (and the plain HEAD tried after a refused checksum read)
    // went to us-east-1; everything after it to eu-west-1.
    const wrong = proxy.requests.filter((request) => signedFor(request, "us-east-1"));
    expect(wrong.length).toBeGreaterThan(0);
    expect(wrong.length).toBeLessThanOrEqual(4);
    expect(
      proxy.requests.filter((request) => signedFor(request, "eu-west-1")).length,
    ).toBeGreaterThan(4);

    // plan follows it too.
    const planned = await runCli(command(storage, "plan"), {
      env: env(),
      stdin: input(),
      timeoutMs: 60_000,
    });
    expect(planned.code, planned.stderr).toBe(0);
    expect(JSON.parse(planned.stdout).datasets.map((d: { cached: boolean }) => d.cached)).toEqual([
      true,
      true,
    ]);
  });

  it("not named: S3_ERROR (exit 6) saying the bucket is in another region and to set it", async () => {
    redirectTo(undefined);
    const storage = await mkdtemp(join(root, "storage-"));
    const run = await runCli(command(storage), { env: env(), stdin: input(), timeoutMs: 60_000 });
    expect(run.code, run.stderr).toBe(6);
    for (const dataset of JSON.parse(run.stdout).datasets) {
      expect(dataset.error.code).toBe("S3_ERROR");
      expect(dataset.error.message).toContain(
        `bucket "${bucket}" is in another region than the requests were signed for (301`,
      );
      expect(dataset.error.hint).toMatch(/give the bucket's region in the dataset's "region"/);
    }
  });

  it("a region learned for a bucket is kept for its later datasets (and the same dataset staged again: the fallback)", async () => {
    const keys = { awsAccessKeyId: "AKIDEXAMPLE", awsSecretAccessKey: "secret" };
    const spec = (uri: string) => parseDatasetEntry({ uri, ...keys }, 0, {});
    const pool = new ClientPool();
    try {
      const first = spec("s3://far-bucket/a.bin");
      expect((await pool.clientFor(first)).endpointLabel).toBe("AWS S3 (us-east-1)");
      pool.learnRegion(first, "eu-west-1");
      expect((await pool.clientFor(first)).endpointLabel).toBe("AWS S3 (eu-west-1)");
      expect((await pool.clientFor(spec("s3://far-bucket/b/"))).endpointLabel).toBe(
        "AWS S3 (eu-west-1)",
      );
      expect((await pool.clientFor(spec("s3://near-bucket/a.bin"))).endpointLabel).toBe(
        "AWS S3 (us-east-1)",
      );
    } finally {
      pool.destroy();
    }
  });
});
