// `dsfetch fetch` verifying bytes with S3 additional checksums (SPEC §4, issue 3): objects
// uploaded with each algorithm MinIO stores are staged byte-exact and reported as
// `checksum:<alg>`; a byte changed in transit (a proxy rewrites one GET body) fails with
// exit 5, expected and computed named, for every verification path (checksum in stream,
// checksum by the ordered follower, MD5, multipart MD5, small objects of a folder, a
// streaming archive), and nothing is published.
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type ChecksumAlgorithm, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import {
  adminClient,
  createBucket,
  putMultipartWithChecksum as putChecksummedParts,
  putMultipart,
  putObject,
  testEnv,
  type UploadChecksum,
} from "../harness/s3.ts";

const MiB = 1024 * 1024;

interface StagedJson {
  name: string;
  path?: string;
  bytes?: number;
  verification?: Record<string, number>;
  error?: { code: string; message: string };
}

let bucket: string;
let scratch: string;
let s3: S3Client;
/** Every test's proxies (the tests run concurrently: each has its own). */
const proxies: FaultProxy[] = [];

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-checksums-"));
  bucket = await createBucket("checksums");
  s3 = adminClient();
});

afterAll(async () => {
  await Promise.all(proxies.map((one) => one.close()));
  s3.destroy();
  await rm(scratch, { recursive: true, force: true });
});

async function putWithChecksum(key: string, body: Buffer, algorithm: ChecksumAlgorithm) {
  const out = await s3.send(
    new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ChecksumAlgorithm: algorithm }),
  );
  return (out.ETag ?? "").replace(/"/g, "");
}

/** A multipart upload with a checksum into this file's bucket (harness/s3.ts). */
const putMultipartWithChecksum = (
  key: string,
  body: Buffer,
  partSize: number,
  algorithm: UploadChecksum,
  type: "COMPOSITE" | "FULL_OBJECT" = "COMPOSITE",
) => putChecksummedParts(bucket, key, body, partSize, algorithm, type);

/** A proxy that only forwards (and records requests). */
async function countingProxy(): Promise<FaultProxy> {
  const proxy = await startFaultProxy(testEnv().AWS_ENDPOINT_URL);
  proxies.push(proxy);
  return proxy;
}

async function fetch(datasets: unknown, endpoint?: string) {
  const storage = await mkdtemp(join(scratch, "storage-"));
  const env = { ...testEnv(), ...(endpoint === undefined ? {} : { AWS_ENDPOINT_URL: endpoint }) };
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    { env, stdin: JSON.stringify(datasets), timeoutMs: 120_000 },
  );
  const json =
    result.stdout === ""
      ? undefined
      : (JSON.parse(result.stdout) as { datasets: StagedJson[] }).datasets;
  return { ...result, json, data: join(storage, "ml", "data") };
}

async function published(dataRoot: string): Promise<string[]> {
  const entries = await readdir(dataRoot).catch(() => [] as string[]);
  return entries.filter((entry) => entry !== ".dsfetch");
}

async function leftovers(dataRoot: string): Promise<string[]> {
  return readdir(join(dataRoot, ".dsfetch", "tmp")).catch(() => [] as string[]);
}

/** A .tar.gz (or with `compress` "", a .tar) made by the system's tar and gzip. */
async function tarGz(files: Record<string, string | Buffer>, compress = "z"): Promise<Buffer> {
  const dir = await mkdtemp(join(scratch, "tree-"));
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const result = spawnSync("tar", [`-c${compress}f`, "-", "-C", dir, "."], {
    maxBuffer: 256 * MiB,
  });
  if (result.status !== 0) throw new Error(`tar failed: ${result.stderr}`);
  return result.stdout;
}

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

// Concurrent (vitest runs 5 at a time): each test has its own keys, storage and proxy.
describe.concurrent("verification by S3 additional checksums", () => {
  for (const algorithm of ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"] as const) {
    it(`a single-part object uploaded with ${algorithm} is verified as checksum:${algorithm.toLowerCase()}`, async () => {
      const body = randomBytes(3 * MiB + 5);
      const key = `single/${algorithm}.bin`;
      await putWithChecksum(key, body, algorithm);
      const { code, json, data } = await fetch([{ uri: `s3://${bucket}/${key}` }]);
      expect(code).toBe(0);
      expect(json?.[0]?.verification).toEqual({ [`checksum:${algorithm.toLowerCase()}`]: 1 });
      const staged = await readFile(join(data, `${algorithm}.bin`, `${algorithm}.bin`));
      expect(sha256(staged)).toBe(sha256(body));
      // The manifest records the whole file's checksum, in the store's encoding.
      const manifests = await readdir(join(data, ".dsfetch", "manifests"));
      const manifest = await readFile(
        join(data, ".dsfetch", "manifests", manifests[0] as string),
        "utf8",
      );
      expect(manifest).toContain(`"${algorithm.toLowerCase()}:`);
    });
  }

  for (const algorithm of ["CRC32", "SHA256"] as const) {
    it(`a multipart object with a COMPOSITE ${algorithm} checksum is verified part by part`, async () => {
      const body = randomBytes(12 * MiB + 3);
      const key = `multi/${algorithm}.bin`;
      const etag = await putMultipartWithChecksum(key, body, 5 * MiB, algorithm);
      expect(etag).toMatch(/-3$/);
      const { code, json, data } = await fetch([{ uri: `s3://${bucket}/${key}` }]);
      expect(code).toBe(0);
      expect(json?.[0]?.verification).toEqual({ [`checksum:${algorithm.toLowerCase()}`]: 1 });
      const staged = await readFile(join(data, `${algorithm}.bin`, `${algorithm}.bin`));
      expect(sha256(staged)).toBe(sha256(body));
    });
  }

  for (const algorithm of ["CRC32", "CRC64NVME"] as const) {
    it(`a multipart object with a FULL_OBJECT ${algorithm} checksum needs no part boundaries`, async () => {
      const body = randomBytes(11 * MiB + 7);
      const key = `full/${algorithm}.bin`;
      await putMultipartWithChecksum(key, body, 5 * MiB, algorithm, "FULL_OBJECT");
      const counting = await countingProxy();
      const { code, json, data } = await fetch(
        [{ uri: `s3://${bucket}/${key}` }],
        counting.endpoint,
      );
      expect(code).toBe(0);
      expect(json?.[0]?.verification).toEqual({ [`checksum:${algorithm.toLowerCase()}`]: 1 });
      expect(sha256(await readFile(join(data, `${algorithm}.bin`, `${algorithm}.bin`)))).toBe(
        sha256(body),
      );
      // No HEAD with PartNumber: a full-object checksum does not depend on the parts.
      expect(counting.requests.filter((r) => r.target.includes("partNumber="))).toEqual([]);
    });
  }

  it("a large object (hashed in a worker thread) with CRC64NVME is verified byte-exact", async () => {
    const body = randomBytes(70 * MiB);
    await putWithChecksum("large/crc64.bin", body, "CRC64NVME");
    const { code, json, data, stderr } = await fetch([{ uri: `s3://${bucket}/large/crc64.bin` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "checksum:crc64nvme": 1 });
    // Only the CLI writes, in its own format: no stray line from the library or a worker.
    for (const line of stderr.trim().split("\n")) expect(line).toMatch(/^(crc64\.bin|dsfetch): /);
    expect(sha256(await readFile(join(data, "crc64.bin", "crc64.bin")))).toBe(sha256(body));
  });

  it("a large multipart object (parts hashed in SIMD lanes) is verified byte-exact", async () => {
    const body = randomBytes(66 * MiB + 12_345);
    await putMultipart(bucket, "large/multi.bin", body, 5 * MiB);
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/large/multi.bin` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "multipart-md5": 1 });
    expect(sha256(await readFile(join(data, "multi.bin", "multi.bin")))).toBe(sha256(body));
  });

  it("a streaming archive is verified by its checksum while it expands", async () => {
    const archive = await tarGz({ "a.txt": "alpha\n", "dir/b.bin": randomBytes(300_000) });
    await putWithChecksum("archives/set.tar.gz", archive, "SHA1");
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/archives/set.tar.gz` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "checksum:sha1": 1 });
    expect(await readFile(join(data, "set", "a.txt"), "utf8")).toBe("alpha\n");
  });

  it("a large streaming archive is verified by its SHA256 checksum in a worker thread", async () => {
    const big = randomBytes(65 * MiB);
    const archive = await tarGz({ "big.bin": big, "small.txt": "s" }, "");
    await putWithChecksum("archives/large.tar", archive, "SHA256");
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/archives/large.tar` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "checksum:sha256": 1 });
    expect(sha256(await readFile(join(data, "large", "big.bin")))).toBe(sha256(big));
  });

  it("small objects of a folder are verified by the checksum their GET carries", async () => {
    const bodies = [randomBytes(1000), randomBytes(70_000)];
    await putWithChecksum("folder/a.bin", bodies[0] as Buffer, "CRC32C");
    await putWithChecksum("folder/b.bin", bodies[1] as Buffer, "SHA256");
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/folder/` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "checksum:crc32c": 1, "checksum:sha256": 1 });
    expect(await readFile(join(data, "folder", "b.bin"))).toEqual(bodies[1]);
  });
});

describe.concurrent("a byte changed in transit is caught, whatever verifies it", () => {
  /** Flips one byte in the body of the first GET of `key` (ranged or not). */
  async function corruptingProxy(key: string): Promise<string> {
    const proxy = await startFaultProxy(testEnv().AWS_ENDPOINT_URL);
    proxies.push(proxy);
    let done = false;
    proxy.rewriteResponses({
      match: (request, status) =>
        !done &&
        request.method === "GET" &&
        (status === 200 || status === 206) &&
        request.target.split("?")[0]?.endsWith(key) === true,
      rewrite: (body) => {
        done = true;
        const copy = Buffer.from(body);
        const at = Math.floor(copy.length / 2);
        copy[at] = (copy[at] as number) ^ 0x5a;
        return copy;
      },
    });
    return proxy.endpoint;
  }

  const cases: Array<{
    label: string;
    key: string;
    put: (key: string) => Promise<unknown>;
    uri?: (key: string) => string;
    against: RegExp;
  }> = [
    {
      label: "checksum:crc32 (hashed in stream)",
      key: "bad/crc32.bin",
      put: (key) => putWithChecksum(key, randomBytes(2 * MiB), "CRC32"),
      against: /do not match its CRC32 checksum: expected \S+, computed \S+/,
    },
    {
      label: "checksum:sha256 (hashed by the ordered follower)",
      key: "bad/sha256.bin",
      put: (key) => putWithChecksum(key, randomBytes(2 * MiB), "SHA256"),
      against: /do not match its SHA256 checksum: expected \S+, computed \S+/,
    },
    {
      label: "md5",
      key: "bad/md5.bin",
      put: (key) => putObject(bucket, key, randomBytes(2 * MiB)),
      against: /do not match its ETag: expected [0-9a-f]{32}, computed [0-9a-f]{32}/,
    },
    {
      label: "multipart-md5",
      key: "bad/multi.bin",
      put: (key) => putMultipart(bucket, key, randomBytes(11 * MiB), 5 * MiB),
      against: /do not match its ETag: expected [0-9a-f]{32}-3, computed [0-9a-f]{32}-3/,
    },
    {
      // >= 64 MiB and >= 4 parts: MD5 of 8 parts at a time in SIMD lanes, in a worker thread.
      label: "a large multipart object (multipart-md5 in SIMD lanes)",
      key: "bad/large-multi.bin",
      put: (key) => putMultipart(bucket, key, randomBytes(66 * MiB), 5 * MiB),
      against: /do not match its ETag: expected [0-9a-f]{32}-14, computed [0-9a-f]{32}-14/,
    },
    {
      label: "a small object of a folder (checksum:crc32c)",
      key: "badfolder/one.bin",
      put: (key) => putWithChecksum(key, randomBytes(50_000), "CRC32C"),
      uri: () => `s3://${bucket}/badfolder/`,
      against: /do not match its CRC32C checksum/,
    },
    {
      // Uncompressed: a changed byte inside a file's data is caught by the checksum alone.
      label: "a streaming archive (checksum:crc32)",
      key: "bad/set.tar",
      put: async (key) =>
        putWithChecksum(key, await tarGz({ "x.bin": randomBytes(2 * MiB) }, ""), "CRC32"),
      against: /do not match its CRC32 checksum/,
    },
    {
      // >= 64 MiB: the stream is hashed (MD5) in a worker thread.
      label: "a large streaming archive (md5, hashed in a worker thread)",
      key: "bad/large.tar",
      put: async (key) =>
        putObject(bucket, key, await tarGz({ "big.bin": randomBytes(66 * MiB) }, "")),
      against: /do not match its ETag: expected [0-9a-f]{32}, computed [0-9a-f]{32}/,
    },
  ];

  for (const { label, key, put, uri, against } of cases) {
    it(`${label}: exit 5 INTEGRITY, nothing published, nothing left behind`, async () => {
      await put(key);
      const endpoint = await corruptingProxy(key);
      const { code, json, data } = await fetch(
        [{ uri: uri?.(key) ?? `s3://${bucket}/${key}` }],
        endpoint,
      );
      expect(code).toBe(5);
      expect(json?.[0]?.error?.code).toBe("INTEGRITY");
      expect(json?.[0]?.error?.message).toMatch(against);
      expect(await published(data)).toEqual([]);
      expect(await leftovers(data)).toEqual([]);
    });
  }
});
