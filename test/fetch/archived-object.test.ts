// An object in S3 Glacier Flexible Retrieval or Deep Archive (or an Intelligent-Tiering archive
// tier) that was not restored: AWS lists it and answers its HEAD like any object's, and its GET
// with 403 InvalidObjectState. MinIO has no such storage class, so the test's proxy answers
// the GETs of these keys as AWS does. It must fail as OBJECT_ARCHIVED (exit 4) saying to
// restore it, not as ACCESS_DENIED sending the user to IAM; at once (not retried), nothing
// published.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import {
  type FaultProxy,
  isListObjectsV2,
  type ProxiedRequest,
  type ResponseRewrite,
  startFaultProxy,
} from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;
const vaulted = randomBytes(2 * 1024 * 1024);

const ARCHIVED = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InvalidObjectState</Code><Message>The operation is not valid for the object's storage class</Message><StorageClass>DEEP_ARCHIVE</StorageClass><RequestId>TEST</RequestId></Error>`;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-archived-"));
  bucket = await createBucket("archived");
  await putObject(bucket, "cold/model.bin", randomBytes(3 * 1024 * 1024));
  await putObject(bucket, "shelf/a.bin", randomBytes(1000));
  await putObject(bucket, "shelf/b.bin", randomBytes(2 * 1024 * 1024));
  await putObject(bucket, "vault/model.bin", vaulted);
  proxy = await startFaultProxy(s3Info().endpoint);
  proxy.rewriteResponses(refusedGets);
});

// Every GET of an object under cold/ or shelf/ (not the listings, not the HEADs).
const refusedGets: ResponseRewrite = {
  match: (request) =>
    request.method === "GET" &&
    !isListObjectsV2(request) &&
    /\/(cold|shelf)\//.test(request.target),
  startLine: () => "HTTP/1.1 403 Forbidden",
  headers: (fields) => [
    ...fields.filter(([name]) => !/^(content-type|content-range|etag)$/i.test(name)),
    ["Content-Type", "application/xml"],
  ],
  rewrite: () => ARCHIVED,
};

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

describe("archived objects (403 InvalidObjectState)", () => {
  for (const [what, uri] of [
    ["one object", "cold/model.bin"],
    ["a folder", "shelf/"],
  ] as const) {
    it(`${what}: OBJECT_ARCHIVED, exit 4, says to restore it; not retried; nothing published`, async () => {
      const storage = await mkdtemp(join(root, "storage-"));
      proxy.resetCounters();
      const run = await runCli(
        ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
        {
          env: { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint },
          stdin: JSON.stringify([{ uri: `s3://${bucket}/${uri}`, name: "cold" }]),
          timeoutMs: 60_000,
        },
      );
      expect(run.code, run.stderr).toBe(4);
      const { error } = JSON.parse(run.stdout).datasets[0];
      expect(error.code).toBe("OBJECT_ARCHIVED");
      expect(error.message).toMatch(
        /is archived \(S3 Glacier Flexible Retrieval or Deep Archive, or an Intelligent-Tiering archive tier\) and cannot be read until it is restored \(403 InvalidObjectState\)/,
      );
      expect(error.hint).toMatch(/aws s3api restore-object/);
      expect(run.stderr).not.toMatch(/retry|IAM|credentials/i);
      // Refused once per object asked: no retry.
      const refused = proxy.requests.filter((request) => request.rewritten);
      expect(refused.length).toBeGreaterThan(0);
      expect(refused.length).toBeLessThanOrEqual(uri.endsWith("/") ? 2 : 8);
      const data = join(storage, "ml", "data");
      expect((await readdir(data)).filter((name) => !name.startsWith("."))).toEqual([]);
      expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
    });
  }

  // Its HEAD already says so (x-amz-storage-class, x-amz-restore, x-amz-archive-status), and
  // a read of its first byte is refused: told before the lock and any download, by plan too.
  // A HEAD that says so of an object that can be read (a store's tier named GLACIER) is not
  // taken at its word.
  const cases: [string, [string, string][], RegExp | undefined, boolean][] = [
    [
      "in Deep Archive, not restored",
      [["x-amz-storage-class", "DEEP_ARCHIVE"]],
      /is archived \(storage class DEEP_ARCHIVE, S3 Glacier Deep Archive\) and cannot be read until it is restored/,
      true,
    ],
    [
      "in Glacier, being restored",
      [
        ["x-amz-storage-class", "GLACIER"],
        ["x-amz-restore", 'ongoing-request="true"'],
      ],
      /\(storage class GLACIER, S3 Glacier Flexible Retrieval; being restored\)/,
      true,
    ],
    [
      "in an Intelligent-Tiering archive tier",
      [
        ["x-amz-storage-class", "INTELLIGENT_TIERING"],
        ["x-amz-archive-status", "DEEP_ARCHIVE_ACCESS"],
      ],
      /\(Intelligent-Tiering DEEP_ARCHIVE_ACCESS\)/,
      true,
    ],
    [
      "in Glacier, restored",
      [
        ["x-amz-storage-class", "GLACIER"],
        ["x-amz-restore", 'ongoing-request="false", expiry-date="Fri, 21 Dec 2029 00:00:00 GMT"'],
      ],
      undefined,
      false,
    ],
    [
      "a store's readable tier named GLACIER",
      [["x-amz-storage-class", "GLACIER"]],
      undefined,
      false,
    ],
  ];
  for (const [what, added, expected, refuseGets] of cases) {
    it(`told by its HEAD: ${what}`, async () => {
      const vault = (request: ProxiedRequest) => request.target.includes("/vault/");
      proxy.rewriteResponses({
        match: (request) =>
          vault(request) && (request.method === "HEAD" || (refuseGets && request.method === "GET")),
        startLine: (line, request) => (request.method === "GET" ? "HTTP/1.1 403 Forbidden" : line),
        headers: (fields, request) =>
          request.method === "HEAD"
            ? [...fields, ...added]
            : [
                ...fields.filter(([name]) => !/^(content-type|content-range|etag)$/i.test(name)),
                ["Content-Type", "application/xml"],
              ],
        rewrite: (_, request) => (request.method === "HEAD" ? "" : ARCHIVED),
      });
      try {
        const storage = await mkdtemp(join(root, "storage-"));
        proxy.resetCounters();
        const run = await runCli(
          ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
          {
            env: { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint },
            stdin: JSON.stringify([{ uri: `s3://${bucket}/vault/model.bin`, name: "vault" }]),
            timeoutMs: 60_000,
          },
        );
        if (expected === undefined) {
          expect(run.code, run.stderr).toBe(0);
          const bytes = await readFile(join(storage, "ml", "data", "vault", "model.bin"));
          expect(bytes.equals(vaulted)).toBe(true);
          return;
        }
        expect(run.code, run.stderr).toBe(4);
        const { error } = JSON.parse(run.stdout).datasets[0];
        expect(error.code).toBe("OBJECT_ARCHIVED");
        expect(error.message).toMatch(expected);
        expect(error.hint).toMatch(
          what.includes("being restored")
            ? /wait until the restore is done/
            : /aws s3api restore-object/,
        );
        // One byte asked for (the check), no download.
        const gets = proxy.requests.filter((request) => request.method === "GET");
        expect(gets.map((request) => request.headers.range)).toEqual(["bytes=0-0"]);
      } finally {
        proxy.rewriteResponses(refusedGets);
      }
    });
  }
});
