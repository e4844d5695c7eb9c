// An object of a folder deleted in a versioned bucket after the listing: its GET answers 404
// with x-amz-delete-marker: true (the test's proxy answers so, as AWS does). The folder changed
// while it was fetched (OBJECT_CHANGED, started again on a new listing), as for a deletion in
// an unversioned bucket; it was DELETE_MARKER (exit 3), whose advice is to pin a versionId,
// which a folder cannot have.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, isListObjectsV2, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-marker-"));
  bucket = await createBucket("marker", { versioned: true });
  await putObject(bucket, "set/kept.bin", randomBytes(2000));
  await putObject(bucket, "set/deleted.bin", randomBytes(2000));
  proxy = await startFaultProxy(s3Info().endpoint);
  proxy.rewriteResponses({
    match: (request) =>
      request.method === "GET" && !isListObjectsV2(request) && request.target.includes("deleted"),
    startLine: () => "HTTP/1.1 404 Not Found",
    headers: (fields) => [
      ...fields.filter(([name]) => !/^(content-type|etag|last-modified)$/i.test(name)),
      ["Content-Type", "application/xml"],
      ["x-amz-delete-marker", "true"],
    ],
    rewrite: () =>
      `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>`,
  });
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

describe("a folder's object deleted after the listing (versioned bucket)", () => {
  it("is the folder changing (OBJECT_CHANGED, exit 5), not a delete marker to pin around", async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const run = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
      {
        env: { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint },
        stdin: JSON.stringify([{ uri: `s3://${bucket}/set/`, name: "set" }]),
        timeoutMs: 60_000,
      },
    );
    expect(run.code, run.stderr).toBe(5);
    const { error } = JSON.parse(run.stdout).datasets[0];
    expect(error.code).toBe("OBJECT_CHANGED");
    expect(error.message).toMatch(/set\/deleted\.bin was listed but is gone now/);
    // The store's listing still names it here, so every new listing met it again.
    expect(run.stderr).toMatch(/starting again/);
    const data = join(storage, "ml", "data");
    expect((await readdir(data)).filter((name) => !name.startsWith("."))).toEqual([]);
  });
});
