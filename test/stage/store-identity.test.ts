// The same URI read through two endpoints (review, 2026-12-06). A job is given the copy
// published at its path when it holds the data the store has now (same ETag or listing),
// whatever name the endpoint had; but an older copy read from another store (by endpoint
// name: a production and a development MinIO) is never kept for it as "changed since staged",
// nor replaced under the jobs that read it: the job stages its own data elsewhere.
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { releaseLeases } from "../../src/agent/leases.ts";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { storeOf } from "../../src/config/s3-uri.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { stage } from "../../src/stage/stage.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

let root: string;
let bucket: string;
/** A second endpoint name for the same server (another host and port, as another store has). */
let proxy: FaultProxy;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-store-identity-"));
  bucket = await createBucket("storeid");
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

function datasetsAt(endpoint: string, prefix: string) {
  const info = s3Info();
  return parseDatasetsValue(
    [
      {
        uri: `s3://${bucket}/${prefix}/`,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
        endpoint,
        region: info.region,
      },
    ],
    "test",
    {},
  );
}

describe("the same URI through two endpoints", () => {
  it("holding the same data: the copy staged is reused (one server under two names)", async () => {
    await putObject(bucket, "same/a.txt", "one");
    const storageRoot = await mkdtemp(join(root, "storage-"));
    const settings = resolveSettings({ storageRoot, team: "t" }, {});
    const first = await stage(datasetsAt(s3Info().endpoint, "same"), settings);
    expect(first.datasets[0]).toMatchObject({ ok: true, cached: false });
    const other = await stage(datasetsAt(proxy.endpoint, "same"), settings);
    expect(other.datasets[0]).toMatchObject({ ok: true, cached: true, volume: "shared" });
  });

  it("an older copy from another store, in use: not given to the job, not replaced; the job stages its own", async () => {
    await putObject(bucket, "labels/a.txt", "first store, older");
    const storageRoot = await mkdtemp(join(root, "storage-"));
    const settings = resolveSettings(
      { storageRoot, team: "t", ephemeralRoot: join(storageRoot, "ephemeral") },
      {},
    );
    const job = await stage(datasetsAt(s3Info().endpoint, "labels"), settings, { lease: true });
    expect(job.datasets[0]).toMatchObject({ ok: true, volume: "shared" });
    const shared = join(storageRoot, "t", "data", "labels");
    try {
      await putObject(bucket, "labels/a.txt", "the other store's, now");
      const other = await stage(datasetsAt(proxy.endpoint, "labels"), settings);
      // Review, 2026-12-06: it was "cached", keptInUse, and read the first store's copy.
      const outcome = other.datasets[0];
      expect(outcome).toMatchObject({ ok: true, cached: false, volume: "ephemeral" });
      const path = outcome?.ok === true ? outcome.path : "";
      expect(await readFile(join(path, "a.txt"), "utf8")).toBe("the other store's, now");
      expect(await readdir(shared)).toEqual(["a.txt"]);
      expect(await readFile(join(shared, "a.txt"), "utf8")).toBe("first store, older");
    } finally {
      await releaseLeases(job.leases);
    }
  });

  it("AWS S3 is one store whatever its S3 endpoint; other hosts, even under amazonaws.com, are told by host and port", () => {
    expect(storeOf(undefined)).toBe(storeOf("https://s3.us-west-2.amazonaws.com"));
    expect(storeOf(undefined)).toBe(storeOf("https://s3.dualstack.eu-west-1.amazonaws.com/"));
    expect(storeOf(undefined)).toBe(
      storeOf("https://bucket.vpce-0a1b-2c3d.s3.us-east-1.vpce.amazonaws.com"),
    );
    expect(storeOf("https://s3.cn-north-1.amazonaws.com.cn")).not.toBe(storeOf(undefined));
    // MinIO behind a load balancer or on an instance is that MinIO, not S3.
    expect(storeOf("http://a1b2-123.elb.us-east-1.amazonaws.com:9000")).not.toBe(
      storeOf(undefined),
    );
    expect(storeOf("http://ec2-1-2-3-4.compute-1.amazonaws.com:9000")).not.toBe(storeOf(undefined));
    expect(storeOf("http://minio:9000")).toBe(storeOf("http://MINIO:9000/"));
    expect(storeOf("https://minio")).toBe(storeOf("https://minio:443"));
    expect(storeOf("http://minio:9000")).not.toBe(storeOf("http://minio-dev:9000"));
  });
});
