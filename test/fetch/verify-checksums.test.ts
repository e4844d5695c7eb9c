// `dsfetch fetch` verifying bytes with S3 additional checksums (SPEC §4, issue 3): objects
// uploaded with each algorithm MinIO stores are staged byte-exact and reported as
// `checksum:<alg>`; a byte changed in transit (a proxy rewrites one GET body) fails with
// exit 5, expected and computed named, for every verification path (checksum in stream,
// checksum by the ordered follower, MD5, multipart MD5, small objects of a folder, a
// streaming archive), and nothing is published.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type ChecksumAlgorithm, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { END, tarHeader } from "../archive/tar-helpers.ts";
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

/** `make` run once, by whichever test asks first: an upload or a run several tests share. */
function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => {
    made ??= make();
    return made;
  };
}

/** Each dataset's own result in a run's --json, by name. */
function datasetOf(json: StagedJson[] | undefined, name: string): StagedJson | undefined {
  return json?.find((dataset) => dataset.name === name);
}

/**
 * 70 MiB of random bytes, made once (randomBytes took ~4 ms of CPU per MiB): each object of
 * more than 1 MiB below is a slice of them. The large ones are over WORKER_HASH_THRESHOLD
 * (64 MiB, src/fetch/worker-hasher.ts): such objects are hashed in a worker thread.
 */
const largeRandom = once(async () => randomBytes(70 * MiB));

/**
 * 66 MiB + 12,345 bytes in 5 MiB parts (ETag `…-14`): >= 64 MiB and >= 4 parts, so the MD5
 * of 8 parts at a time in SIMD lanes, in a worker thread. Fetched whole by one test, and with
 * a byte changed in transit by another (nothing writes it: both read the one upload).
 */
const largeMultipart = once(async () => {
  const body = (await largeRandom()).subarray(3 * MiB, 69 * MiB + 12_345);
  await putMultipart(bucket, "large/multi.bin", body, 5 * MiB);
  return body;
});

/**
 * A plain .tar of `big.bin`, 65 MiB of largeRandom's bytes (a view into the archive), and
 * `small.txt`: over 64 MiB, hashed in a worker thread. Made in place (ustar headers of
 * test/archive/tar-helpers.ts): by the system's tar, its 65 MiB were written to a file, piped
 * back and gathered, ~0.7 CPU-s.
 */
const largeTar = once(async () => {
  const source = (await largeRandom()).subarray(5 * MiB);
  const padded = (size: number) => Math.ceil(size / 512) * 512;
  const small = 512 + padded(source.length);
  const archive = Buffer.alloc(small + 512 + 512 + END.length);
  tarHeader({ name: "big.bin", size: source.length }).copy(archive, 0);
  source.copy(archive, 512);
  tarHeader({ name: "small.txt", size: 1 }).copy(archive, small);
  archive.write("s", small + 512);
  return { big: archive.subarray(512, 512 + source.length), archive };
});

const SINGLE_PART = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"] as const;
const COMPOSITE = ["CRC32", "SHA256"] as const;
const FULL_OBJECT = ["CRC32", "CRC64NVME"] as const;

/**
 * The small objects of the tests below, uploaded once and staged by two `dsfetch fetch` runs
 * (a CLI process costs ~0.3 CPU-s; each dataset's result is its own in --json): the
 * FULL_OBJECT ones through a counting proxy, which records their requests, the others direct.
 */
const checksummed = once(async () => {
  // Each body its own slice of largeRandom's bytes (61 MiB of its 70), none shared.
  const random = await largeRandom();
  let taken = 0;
  const take = (bytes: number) => {
    taken += bytes;
    return random.subarray(taken - bytes, taken);
  };
  const bodies = {
    single: new Map<string, Buffer>(),
    composite: new Map<string, { body: Buffer; etag: string }>(),
    full: new Map<string, Buffer>(),
    folder: [randomBytes(1000), randomBytes(70_000)] as const,
  };
  const uploads: Promise<unknown>[] = [];
  for (const algorithm of SINGLE_PART) {
    const body = take(3 * MiB + 5);
    bodies.single.set(algorithm, body);
    uploads.push(putWithChecksum(`single/${algorithm}.bin`, body, algorithm));
  }
  for (const algorithm of COMPOSITE) {
    const body = take(12 * MiB + 3);
    uploads.push(
      putMultipartWithChecksum(`multi/${algorithm}.bin`, body, 5 * MiB, algorithm).then((etag) =>
        bodies.composite.set(algorithm, { body, etag }),
      ),
    );
  }
  for (const algorithm of FULL_OBJECT) {
    const body = take(11 * MiB + 7);
    bodies.full.set(algorithm, body);
    uploads.push(
      putMultipartWithChecksum(`full/${algorithm}.bin`, body, 5 * MiB, algorithm, "FULL_OBJECT"),
    );
  }
  uploads.push(
    tarGz({ "a.txt": "alpha\n", "dir/b.bin": randomBytes(300_000) }).then((archive) =>
      putWithChecksum("archives/set.tar.gz", archive, "SHA1"),
    ),
    putWithChecksum("folder/a.bin", bodies.folder[0], "CRC32C"),
    putWithChecksum("folder/b.bin", bodies.folder[1], "SHA256"),
  );
  await Promise.all(uploads);
  const counting = await countingProxy();
  const [direct, proxied] = await Promise.all([
    fetch([
      ...SINGLE_PART.map((a) => ({ uri: `s3://${bucket}/single/${a}.bin`, name: `single-${a}` })),
      ...COMPOSITE.map((a) => ({ uri: `s3://${bucket}/multi/${a}.bin`, name: `multi-${a}` })),
      { uri: `s3://${bucket}/archives/set.tar.gz` },
      { uri: `s3://${bucket}/folder/` },
    ]),
    fetch(
      FULL_OBJECT.map((a) => ({ uri: `s3://${bucket}/full/${a}.bin`, name: `full-${a}` })),
      counting.endpoint,
    ),
  ]);
  return { bodies, direct, proxied, requests: counting.requests };
});

// Concurrent (vitest runs 5 at a time): each run has its own storage, and each run with bytes
// changed in transit its own proxy.
describe.concurrent("verification by S3 additional checksums", () => {
  for (const algorithm of SINGLE_PART) {
    it(`a single-part object uploaded with ${algorithm} is verified as checksum:${algorithm.toLowerCase()}`, async () => {
      const { bodies, direct } = await checksummed();
      const { code, json, data } = direct;
      const name = `single-${algorithm}`;
      expect(code).toBe(0);
      expect(datasetOf(json, name)?.verification).toEqual({
        [`checksum:${algorithm.toLowerCase()}`]: 1,
      });
      const staged = await readFile(join(data, name, `${algorithm}.bin`));
      expect(staged.equals(bodies.single.get(algorithm) as Buffer)).toBe(true);
      // The manifest records the whole file's checksum, in the store's encoding.
      const manifest = await readFile(join(data, ".dsfetch", "manifests", `${name}.json`), "utf8");
      expect(manifest).toContain(`"${algorithm.toLowerCase()}:`);
    });
  }

  for (const algorithm of COMPOSITE) {
    it(`a multipart object with a COMPOSITE ${algorithm} checksum is verified part by part`, async () => {
      const { bodies, direct } = await checksummed();
      const { body, etag } = bodies.composite.get(algorithm) as { body: Buffer; etag: string };
      expect(etag).toMatch(/-3$/);
      const { code, json, data } = direct;
      const name = `multi-${algorithm}`;
      expect(code).toBe(0);
      expect(datasetOf(json, name)?.verification).toEqual({
        [`checksum:${algorithm.toLowerCase()}`]: 1,
      });
      const staged = await readFile(join(data, name, `${algorithm}.bin`));
      expect(staged.equals(body)).toBe(true);
    });
  }

  for (const algorithm of FULL_OBJECT) {
    it(`a multipart object with a FULL_OBJECT ${algorithm} checksum needs no part boundaries`, async () => {
      const { bodies, proxied, requests } = await checksummed();
      const { code, json, data } = proxied;
      const name = `full-${algorithm}`;
      expect(code).toBe(0);
      expect(datasetOf(json, name)?.verification).toEqual({
        [`checksum:${algorithm.toLowerCase()}`]: 1,
      });
      const staged = await readFile(join(data, name, `${algorithm}.bin`));
      expect(staged.equals(bodies.full.get(algorithm) as Buffer)).toBe(true);
      // No HEAD with PartNumber: a full-object checksum does not depend on the parts.
      const ofThis = requests.filter((r) => r.target.includes(`/full/${algorithm}.bin`));
      expect(ofThis.length).toBeGreaterThan(0);
      expect(ofThis.filter((r) => r.target.includes("partNumber="))).toEqual([]);
    });
  }

  it("a large object (hashed in a worker thread) with CRC64NVME is verified byte-exact", async () => {
    const body = await largeRandom();
    await putWithChecksum("large/crc64.bin", body, "CRC64NVME");
    const { code, json, data, stderr } = await fetch([{ uri: `s3://${bucket}/large/crc64.bin` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "checksum:crc64nvme": 1 });
    // Only the CLI writes, in its own format: no stray line from the library or a worker.
    for (const line of stderr.trim().split("\n")) expect(line).toMatch(/^(crc64\.bin|dsfetch): /);
    expect((await readFile(join(data, "crc64.bin", "crc64.bin"))).equals(body)).toBe(true);
  });

  it("a large multipart object (parts hashed in SIMD lanes) is verified byte-exact", async () => {
    const body = await largeMultipart();
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/large/multi.bin` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "multipart-md5": 1 });
    expect((await readFile(join(data, "multi.bin", "multi.bin"))).equals(body)).toBe(true);
  });

  it("a streaming archive is verified by its checksum while it expands", async () => {
    const { code, json, data } = (await checksummed()).direct;
    expect(code).toBe(0);
    expect(datasetOf(json, "set")?.verification).toEqual({ "checksum:sha1": 1 });
    expect(await readFile(join(data, "set", "a.txt"), "utf8")).toBe("alpha\n");
  });

  it("a large streaming archive is verified by its SHA256 checksum in a worker thread", async () => {
    const { big, archive } = await largeTar();
    await putWithChecksum("archives/large.tar", archive, "SHA256");
    const { code, json, data } = await fetch([{ uri: `s3://${bucket}/archives/large.tar` }]);
    expect(code).toBe(0);
    expect(json?.[0]?.verification).toEqual({ "checksum:sha256": 1 });
    expect((await readFile(join(data, "large", "big.bin"))).equals(big)).toBe(true);
  });

  it("small objects of a folder are verified by the checksum their GET carries", async () => {
    const { bodies, direct } = await checksummed();
    const { code, json, data } = direct;
    expect(code).toBe(0);
    expect(datasetOf(json, "folder")?.verification).toEqual({
      "checksum:crc32c": 1,
      "checksum:sha256": 1,
    });
    expect(await readFile(join(data, "folder", "b.bin"))).toEqual(bodies.folder[1]);
  });
});

describe.concurrent("a byte changed in transit is caught, whatever verifies it", () => {
  /** Flips one byte in the body of the first GET of each of `keys` (ranged or not). */
  async function corruptingProxy(keys: readonly string[]): Promise<string> {
    const proxy = await startFaultProxy(testEnv().AWS_ENDPOINT_URL);
    proxies.push(proxy);
    const done = new Set<string>();
    proxy.rewriteResponses({
      match: (request, status) => {
        const key = keys.find((one) => request.target.split("?")[0]?.endsWith(one) === true);
        if (key === undefined || done.has(key) || request.method !== "GET") return false;
        if (status !== 200 && status !== 206) return false;
        done.add(key);
        return true;
      },
      rewrite: (body) => {
        // The proxy's own copy of the body: changed in place.
        const at = Math.floor(body.length / 2);
        body[at] = (body[at] as number) ^ 0x5a;
        return body;
      },
    });
    return proxy.endpoint;
  }

  const cases: Array<{
    label: string;
    key: string;
    /** The dataset's name in --json. */
    name: string;
    put: (key: string) => Promise<unknown>;
    uri?: (key: string) => string;
    against: RegExp;
    /** Staged by a run of its own (the small ones share one run: one dataset each). */
    large?: true;
  }> = [
    {
      label: "checksum:crc32 (hashed in stream)",
      key: "bad/crc32.bin",
      name: "crc32.bin",
      put: (key) => putWithChecksum(key, randomBytes(2 * MiB), "CRC32"),
      against: /do not match its CRC32 checksum: expected \S+, computed \S+/,
    },
    {
      label: "checksum:sha256 (hashed by the ordered follower)",
      key: "bad/sha256.bin",
      name: "sha256.bin",
      put: (key) => putWithChecksum(key, randomBytes(2 * MiB), "SHA256"),
      against: /do not match its SHA256 checksum: expected \S+, computed \S+/,
    },
    {
      label: "md5",
      key: "bad/md5.bin",
      name: "md5.bin",
      put: (key) => putObject(bucket, key, randomBytes(2 * MiB)),
      against: /do not match its ETag: expected [0-9a-f]{32}, computed [0-9a-f]{32}/,
    },
    {
      label: "multipart-md5",
      key: "bad/multi.bin",
      name: "multi.bin",
      put: (key) => putMultipart(bucket, key, randomBytes(11 * MiB), 5 * MiB),
      against: /do not match its ETag: expected [0-9a-f]{32}-3, computed [0-9a-f]{32}-3/,
    },
    {
      // >= 64 MiB and >= 4 parts: MD5 of 8 parts at a time in SIMD lanes, in a worker thread
      // (the object the test above fetches whole: 14 parts of 5 MiB).
      label: "a large multipart object (multipart-md5 in SIMD lanes)",
      key: "large/multi.bin",
      name: "multi.bin",
      put: () => largeMultipart(),
      against: /do not match its ETag: expected [0-9a-f]{32}-14, computed [0-9a-f]{32}-14/,
      large: true,
    },
    {
      label: "a small object of a folder (checksum:crc32c)",
      key: "badfolder/one.bin",
      name: "badfolder",
      put: (key) => putWithChecksum(key, randomBytes(50_000), "CRC32C"),
      uri: () => `s3://${bucket}/badfolder/`,
      against: /do not match its CRC32C checksum/,
    },
    {
      // Uncompressed: a changed byte inside a file's data is caught by the checksum alone.
      label: "a streaming archive (checksum:crc32)",
      key: "bad/set.tar",
      name: "set",
      put: async (key) =>
        putWithChecksum(key, await tarGz({ "x.bin": randomBytes(2 * MiB) }, ""), "CRC32"),
      against: /do not match its CRC32 checksum/,
    },
    {
      // >= 64 MiB: the stream is hashed (MD5) in a worker thread (the archive of the test
      // above, uploaded without a checksum).
      label: "a large streaming archive (md5, hashed in a worker thread)",
      key: "bad/large.tar",
      name: "large",
      put: async (key) => putObject(bucket, key, (await largeTar()).archive),
      against: /do not match its ETag: expected [0-9a-f]{32}, computed [0-9a-f]{32}/,
      large: true,
    },
  ];

  const uriOf = ({ key, uri }: (typeof cases)[number]) => uri?.(key) ?? `s3://${bucket}/${key}`;
  const small = cases.filter((one) => one.large !== true);
  /** The small cases' objects, staged by one run through one proxy (each its own dataset). */
  const smallRun = once(async () => {
    await Promise.all(small.map((one) => one.put(one.key)));
    const endpoint = await corruptingProxy(small.map((one) => one.key));
    return fetch(
      small.map((one) => ({ uri: uriOf(one) })),
      endpoint,
    );
  });

  for (const one of cases) {
    it(`${one.label}: exit 5 INTEGRITY, nothing published, nothing left behind`, async () => {
      let run: Awaited<ReturnType<typeof fetch>>;
      if (one.large === true) {
        await one.put(one.key);
        run = await fetch([{ uri: uriOf(one) }], await corruptingProxy([one.key]));
      } else {
        run = await smallRun();
      }
      const { code, json, data } = run;
      expect(code).toBe(5);
      const dataset = datasetOf(json, one.name);
      expect(dataset?.error?.code).toBe("INTEGRITY");
      expect(dataset?.error?.message).toMatch(one.against);
      expect(await published(data)).toEqual([]);
      expect(await leftovers(data)).toEqual([]);
    });
  }
});
