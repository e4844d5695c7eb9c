// Requester Pays buckets (AWS Open Data holds several): every request must carry
// `x-amz-request-payer: requester`, signed, or AWS answers 403. MinIO does not bill, so the
// test looks at what reaches it through the test's proxy: every HEAD, GET and listing of a
// dataset with "requesterPays": true carries the header, among the signed ones; a dataset
// without it sends none.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetEntry } from "../../src/config/dataset.ts";
import { DsfetchError } from "../../src/errors.ts";
import { serializeDataset } from "../../src/k8s/serialize.ts";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putMultipart, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const small = randomBytes(5000);
const large = randomBytes(12 * 1024 * 1024);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-payer-"));
  bucket = await createBucket("payer");
  await putObject(bucket, "set/small.bin", small);
  await putMultipart(bucket, "set/large.bin", large, 5 * 1024 * 1024);
  await putMultipart(bucket, "one/large.bin", large, 5 * 1024 * 1024);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

const fetch = (datasets: unknown[]) =>
  mkdtemp(join(root, "storage-")).then(async (storage) => ({
    storage,
    run: await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
      {
        env: { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint },
        stdin: JSON.stringify(datasets),
        timeoutMs: 60_000,
      },
    ),
  }));

describe('"requesterPays": true', () => {
  it("every request of a folder and of an object says x-amz-request-payer: requester, signed", async () => {
    proxy.resetCounters();
    const { storage, run } = await fetch([
      { uri: `s3://${bucket}/set/`, name: "set", requesterPays: true },
      { uri: `s3://${bucket}/one/large.bin`, name: "one", requesterPays: true },
    ]);
    expect(run.code, run.stderr).toBe(0);
    const data = join(storage, "ml", "data");
    expect(sha(await readFile(join(data, "set", "small.bin")))).toBe(sha(small));
    expect(sha(await readFile(join(data, "set", "large.bin")))).toBe(sha(large));
    expect(sha(await readFile(join(data, "one", "large.bin")))).toBe(sha(large));
    const requests = proxy.requests;
    const kinds = new Set(
      requests.map((r) =>
        r.method === "HEAD" ? "HEAD" : /list-type=2/.test(r.target) ? "LIST" : "GET",
      ),
    );
    expect([...kinds].sort()).toEqual(["GET", "HEAD", "LIST"]);
    for (const request of requests) {
      expect(request.headers["x-amz-request-payer"], request.target).toBe("requester");
      expect(request.headers.authorization, request.target).toMatch(
        /SignedHeaders=[^,]*x-amz-request-payer/,
      );
    }
  });

  it("left out: no request says it, beside a dataset of the same store that has it", async () => {
    proxy.resetCounters();
    const { run } = await fetch([
      { uri: `s3://${bucket}/set/`, name: "set" },
      { uri: `s3://${bucket}/one/large.bin`, name: "one", requesterPays: true },
    ]);
    expect(run.code, run.stderr).toBe(0);
    const without = proxy.requests.filter((r) => /\/set\/|prefix=set/.test(r.target));
    const withIt = proxy.requests.filter((r) => /\/one\//.test(r.target));
    expect(without.length).toBeGreaterThan(0);
    expect(withIt.length).toBeGreaterThan(0);
    for (const request of without) {
      expect(request.headers["x-amz-request-payer"], request.target).toBeUndefined();
    }
    for (const request of withIt) {
      expect(request.headers["x-amz-request-payer"], request.target).toBe("requester");
    }
  });

  it("the datasets array: a boolean only; other tools' names point to it; kept for Kubernetes", () => {
    const parse = (extra: Record<string, unknown>) =>
      parseDatasetEntry({ uri: "s3://b/k", ...extra }, 0, {});
    expect(parse({ requesterPays: true }).endpoint.requesterPays).toBe(true);
    expect(parse({ requesterPays: false }).endpoint.requesterPays).toBeUndefined();
    const wrong = (extra: Record<string, unknown>) => {
      try {
        parse(extra);
      } catch (error) {
        expect(error).toBeInstanceOf(DsfetchError);
        return (error as DsfetchError).message;
      }
      throw new Error("no error");
    };
    expect(wrong({ requesterPays: "requester" })).toMatch(/field "requesterPays": must be/);
    expect(wrong({ RequestPayer: "requester" })).toMatch(/did you mean "requesterPays"\?/);
    expect(serializeDataset(parse({ requesterPays: true }))).toMatchObject({
      requesterPays: true,
    });
    expect(serializeDataset(parse({}))).not.toHaveProperty("requesterPays");
  });
});
