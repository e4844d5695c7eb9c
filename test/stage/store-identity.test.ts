// The same bucket and key on two stores are two datasets (review, 2026-12-06: a job of the
// development store was given the copy staged from the production store, "cached", and once
// idle each store's runs replaced the other's). A staged copy records its endpoint; one of
// another store is not reused, and is not replaced either (PATH_TAKEN, naming both).
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { storeOf } from "../../src/config/s3-uri.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { plan as dryRun } from "../../src/plan/dry-run.ts";
import { stage } from "../../src/stage/stage.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

let root: string;
let bucket: string;
/** A second endpoint: another host and port, as another store is (the same server behind). */
let proxy: FaultProxy;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-store-identity-"));
  bucket = await createBucket("storeid");
  await putObject(bucket, "labels/a.txt", "from the first store");
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

function datasetsAt(endpoint: string) {
  const info = s3Info();
  return parseDatasetsValue(
    [
      {
        uri: `s3://${bucket}/labels/`,
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

describe("the same URI on two stores", () => {
  it("is not reused as the other's, nor replaced: PATH_TAKEN naming both endpoints; the same store is", async () => {
    const storageRoot = await mkdtemp(join(root, "storage-"));
    const settings = resolveSettings({ storageRoot, team: "t", fallback: false }, {});
    const first = s3Info().endpoint;
    const staged = await stage(datasetsAt(first), settings);
    expect(staged.datasets[0]).toMatchObject({ ok: true, cached: false });
    const path = join(storageRoot, "t", "data", "labels");

    // The same store written another way (a trailing slash): the copy staged is reused.
    const again = await stage(datasetsAt(`${first}/`), settings);
    expect(again.datasets[0]).toMatchObject({ ok: true, cached: true });

    const other = await stage(datasetsAt(proxy.endpoint), settings);
    expect(other.datasets[0]).toMatchObject({
      ok: false,
      error: {
        code: "PATH_TAKEN",
        message: expect.stringContaining(`at ${proxy.endpoint}`),
      },
    });
    const message = other.datasets[0]?.ok === false ? other.datasets[0].error.message : "";
    expect(message).toContain(`at ${first}`);
    expect(await readFile(join(path, "a.txt"), "utf8")).toBe("from the first store");

    // plan says so too.
    const plan = await dryRun(datasetsAt(proxy.endpoint), settings);
    expect(plan.datasets[0]).toMatchObject({ cached: false, error: { code: "PATH_TAKEN" } });
  });

  it("AWS S3 is one store whatever its endpoint; other stores are told by host and port", () => {
    expect(storeOf(undefined)).toBe(storeOf("https://s3.us-west-2.amazonaws.com"));
    expect(storeOf(undefined)).toBe(storeOf("https://s3.dualstack.eu-west-1.amazonaws.com/"));
    expect(storeOf("https://s3.cn-north-1.amazonaws.com.cn")).not.toBe(storeOf(undefined));
    expect(storeOf("http://minio:9000")).toBe(storeOf("http://MINIO:9000/"));
    expect(storeOf("https://minio")).toBe(storeOf("https://minio:443"));
    expect(storeOf("http://minio:9000")).not.toBe(storeOf("http://minio-dev:9000"));
    expect(storeOf("http://minio:9000")).not.toBe(storeOf(undefined));
  });
});
