// Multipart objects whose parts are not all of one size (parts copied from objects of several
// sizes, UploadPartCopy; uploaders that flush uneven parts). The first part's size times the
// count can still fit the object: boundaries guessed from it are wrong, and the recomputed
// ETag then never matched (INTEGRITY at every run, "corrupted in transit"). The last part's
// size gives such layouts away; every part is then asked for. Middle parts of other sizes
// with first and last parts that fit (6 + 5 + 7 + 2 MiB) are found only when the digests do
// not match: every part is asked for then, and the bytes hashed again over them (a streamed
// archive, whose bytes are gone, is streamed again).
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tar, file as tarFile } from "../archive/tar-helpers.ts";
import { runCli } from "../harness/cli.ts";
import { damageOneGet, type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putParts, s3Info, testEnv } from "../harness/s3.ts";

const MiB = 1024 * 1024;
let root: string;
let bucket: string;
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
// 6 + 5 + 6 + 2 MiB: 4 parts of the first one's 6 MiB would also hold the 19 MiB, ending
// with a 1 MiB part.
const pieces = [6 * MiB, 5 * MiB, 6 * MiB, 2 * MiB].map((size) => randomBytes(size));
const whole = Buffer.concat(pieces);
const inner = randomBytes(19 * MiB);
const archive = tar(tarFile("inside.bin", inner));
// 6 + 5 + 7 + 2 MiB: 4 parts of 6 MiB hold the 20 MiB too, and end with the same 2 MiB.
const middlePieces = [6 * MiB, 5 * MiB, 7 * MiB, 2 * MiB].map((size) => randomBytes(size));
const middleWhole = Buffer.concat(middlePieces);
const middleInner = randomBytes(20 * MiB - 3 * 512);
const middleArchive = tar(tarFile("inside.bin", middleInner));
// 6 + 6 + 2 MiB: the uniform layout, right as inferred.
const evenPieces = [6 * MiB, 6 * MiB, 2 * MiB].map((size) => randomBytes(size));
let proxy: FaultProxy;

/** `archive` cut into parts of `sizes` (the rest in the last). */
function cutInto(data: Buffer, sizes: readonly number[]): Buffer[] {
  const parts: Buffer[] = [];
  let offset = 0;
  for (const size of sizes) {
    parts.push(data.subarray(offset, offset + size));
    offset += size;
  }
  parts.push(data.subarray(offset));
  return parts;
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-layout-"));
  bucket = await createBucket("layout");
  await putParts(bucket, "uneven/data.bin", pieces);
  await putParts(bucket, "uneven-folder/data.bin", pieces);
  await putParts(bucket, "uneven-archive/set.tar", cutInto(archive, [6 * MiB, 5 * MiB, 6 * MiB]));
  await putParts(bucket, "middle/data.bin", middlePieces);
  await putParts(bucket, "middle-folder/data.bin", middlePieces);
  expect(middleArchive.length).toBe(20 * MiB);
  await putParts(
    bucket,
    "middle-archive/set.tar",
    cutInto(middleArchive, [6 * MiB, 5 * MiB, 7 * MiB]),
  );
  await putParts(bucket, "even/data.bin", evenPieces);
  const evenArchive = tar(tarFile("inside.bin", randomBytes(14 * MiB - 3 * 512)));
  await putParts(bucket, "even-archive/set.tar", cutInto(evenArchive, [6 * MiB, 6 * MiB]));
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy?.close();
  await rm(root, { recursive: true, force: true });
});

/** `dsfetch fetch --json` of `datasets` through the proxy, into a new storage root. */
async function fetchThroughProxy(datasets: unknown[], env: Record<string, string> = {}) {
  const storage = await mkdtemp(join(root, "storage-"));
  const run = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    {
      env: { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint, ...env },
      stdin: JSON.stringify(datasets),
      timeoutMs: 60_000,
    },
  );
  return { run, data: join(storage, "ml", "data") };
}

/** The part numbers asked for with HEAD of `key`, in order. */
function partHeads(key: string): number[] {
  return proxy.requests
    .filter((r) => r.method === "HEAD" && r.target.includes(`/${key}?`))
    .map((r) => Number(/partNumber=(\d+)/.exec(r.target)?.[1]))
    .filter((n) => !Number.isNaN(n));
}

/** Response body bytes of the GETs of `key`. */
function bytesGot(key: string): number {
  return proxy.requests
    .filter((r) => r.method === "GET" && r.target.includes(`/${key}`))
    .reduce((sum, r) => sum + r.bodyBytes, 0);
}

describe("multipart objects with parts of several sizes", () => {
  it("one object, a folder holding one, and a .tar streamed: verified as multipart-md5, byte-exact", async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const run = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
      {
        env: testEnv(),
        stdin: JSON.stringify([
          { uri: `s3://${bucket}/uneven/data.bin`, name: "one" },
          { uri: `s3://${bucket}/uneven-folder/`, name: "folder" },
          { uri: `s3://${bucket}/uneven-archive/set.tar`, name: "packed" },
        ]),
        timeoutMs: 60_000,
      },
    );
    expect(run.code, run.stderr).toBe(0);
    const results = JSON.parse(run.stdout).datasets;
    for (const result of results) expect(result.verification).toEqual({ "multipart-md5": 1 });
    const data = join(storage, "ml", "data");
    expect(sha(await readFile(join(data, "one", "data.bin")))).toBe(sha(whole));
    expect(sha(await readFile(join(data, "folder", "data.bin")))).toBe(sha(whole));
    expect(sha(await readFile(join(data, "packed", "inside.bin")))).toBe(sha(inner));
  });
});

describe("multipart objects whose middle parts differ while the first and last fit one size", () => {
  it("one object, a folder holding one, and a .tar streamed: every part asked for after the mismatch, byte-exact", async () => {
    proxy.resetCounters();
    const { run, data } = await fetchThroughProxy([
      { uri: `s3://${bucket}/middle/data.bin`, name: "one" },
      { uri: `s3://${bucket}/middle-folder/`, name: "folder" },
      { uri: `s3://${bucket}/middle-archive/set.tar`, name: "packed" },
    ]);
    expect(run.code, run.stderr).toBe(0);
    const results = JSON.parse(run.stdout).datasets;
    for (const result of results) expect(result.verification).toEqual({ "multipart-md5": 1 });
    expect(sha(await readFile(join(data, "one", "data.bin")))).toBe(sha(middleWhole));
    expect(sha(await readFile(join(data, "folder", "data.bin")))).toBe(sha(middleWhole));
    expect(sha(await readFile(join(data, "packed", "inside.bin")))).toBe(sha(middleInner));
    // Parts 1 and 4 first (the layout inferred), then every part.
    for (const key of ["middle/data.bin", "middle-folder/data.bin", "middle-archive/set.tar"]) {
      expect(partHeads(key).sort(), key).toEqual([1, 1, 2, 3, 4, 4]);
    }
    // Downloaded objects are hashed again from disk; the streamed archive is streamed twice.
    expect(bytesGot("middle/data.bin")).toBe(20 * MiB);
    expect(bytesGot("middle-archive/set.tar")).toBe(40 * MiB);
    expect(results.map((r: { refetchedBytes: number }) => r.refetchedBytes)).toEqual([
      0,
      0,
      20 * MiB,
    ]);
    // Streamed again, the archive's progress starts over: never past 100%.
    expect(run.stderr).toMatch(/packed: 100%/);
    expect(run.stderr).not.toMatch(/\b(?:10[1-9]|1[1-9]\d|[2-9]\d\d|\d{4,})%/);
  });

  it("bytes damaged on the way with the layout right as inferred: INTEGRITY, not downloaded again", async () => {
    for (const [key, name] of [
      ["even/data.bin", "even"],
      ["even-archive/set.tar", "packed"],
    ] as const) {
      proxy.resetCounters();
      const flipped = damageOneGet(proxy, key);
      const { run, data } = await fetchThroughProxy([{ uri: `s3://${bucket}/${key}`, name }]);
      proxy.rewriteResponses(undefined);
      expect(flipped(), key).toBe(1);
      expect(run.code, run.stderr).toBe(5);
      expect(JSON.parse(run.stdout).datasets[0].error).toMatchObject({
        code: "INTEGRITY",
        message: expect.stringMatching(/do not match its ETag: expected [0-9a-f]{32}-3, computed/),
      });
      // Every part was asked for before the bytes were called damaged; none is fetched twice.
      expect(partHeads(key).sort(), key).toEqual([1, 1, 2, 3, 3]);
      expect(bytesGot(key), key).toBe(14 * MiB);
      await expect(readFile(join(data, name, "data.bin"))).rejects.toThrow(/ENOENT/);
    }
  });

  it("a part's size that cannot be asked for after the mismatch: INTEGRITY saying so, not blaming the store's ETag", async () => {
    proxy.resetCounters();
    proxy.rewriteResponses({
      match: (request) => request.method === "HEAD" && /partNumber=2\b/.test(request.target),
      startLine: () => "HTTP/1.1 403 Forbidden",
      rewrite: () => "",
    });
    try {
      const { run, data } = await fetchThroughProxy([
        { uri: `s3://${bucket}/middle/data.bin`, name: "one" },
      ]);
      expect(run.code, run.stderr).toBe(5);
      const { error } = JSON.parse(run.stdout).datasets[0];
      expect(error.code).toBe("INTEGRITY");
      expect(error.hint).toMatch(
        /asking the store for each part's size \(HEAD with partNumber\) failed/,
      );
      expect(error.hint).not.toMatch(/store's ETag is not the MD5/);
      await expect(readFile(join(data, "one", "data.bin"))).rejects.toThrow(/ENOENT/);
    } finally {
      proxy.rewriteResponses(undefined);
    }
  });
});

describe("the part HEADs failing for a moment, not refused", () => {
  it("the store out after its first answer: TRANSIENT saying so, nothing published; part HEADs alone failing (503, 501): size-only", async () => {
    /** Part HEADs answered `status`; with `outage`, every HEAD once a part HEAD was seen. */
    const failing = (status: string, outage: boolean) => {
      let seen = false;
      proxy.rewriteResponses({
        match: (request) => {
          if (request.method !== "HEAD") return false;
          if (/partNumber=/.test(request.target)) seen = true;
          return seen && (outage || /partNumber=/.test(request.target));
        },
        startLine: () => status,
        rewrite: () => "",
      });
    };
    const object = { uri: `s3://${bucket}/even/data.bin`, name: "one" };
    // One retry, not six with their backoff (~17 s).
    const env = { DSFETCH_RETRIES: "1" };
    try {
      // An outage that began after the object was resolved: its part HEAD was taken for a
      // store without PartNumber, and the object published verified by its size alone, for
      // good (exploratory tester, 2026-12-07).
      failing("HTTP/1.1 503 Slow Down", true);
      const failed = await fetchThroughProxy([object], env);
      expect(failed.run.code, failed.run.stderr).toBe(6);
      const { error } = JSON.parse(failed.run.stdout).datasets[0];
      expect(error.code).toBe("TRANSIENT");
      expect(error.message).toContain("learning the part boundaries (HEAD ?partNumber) of");
      await expect(readFile(join(failed.data, "one", "data.bin"))).rejects.toThrow(/ENOENT/);
      // A store (or a gateway before it) failing part HEADs only, whatever it answers: its
      // answer to PartNumber, not an outage (every multipart download would fail there).
      for (const status of ["HTTP/1.1 503 Slow Down", "HTTP/1.1 501 Not Implemented"]) {
        failing(status, false);
        const refused = await fetchThroughProxy([object], env);
        expect(refused.run.code, refused.run.stderr).toBe(0);
        expect(Object.keys(JSON.parse(refused.run.stdout).datasets[0].verification)).toEqual([
          expect.stringMatching(/^size-only \(the multipart part boundaries could not be learned/),
        ]);
      }
    } finally {
      proxy.rewriteResponses(undefined);
    }
  });
});
