// `dsfetch fetch` through a TCP proxy that breaks connections (SPEC §4, §8): connections cut
// (FIN) or reset (RST) mid-response, or stalled, at several offsets of a 24-40 MiB object.
// The published file must be byte-identical, the fetch must say it retried, and less than
// 10% of the object may be fetched twice. And an object overwritten mid-download is never
// mixed: with a pinned etag the dataset fails and nothing is published; without one the
// download starts again on the new version.
// (503 SlowDown bursts need an HTTP-level fault injector: not here.)
import { createHash, randomBytes, randomInt } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { tar, file as tarFile } from "../archive/tar-helpers.ts";
import { type CliResult, runCli } from "../harness/cli.ts";
import { type FaultProxy, isListObjectsV2, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putMultipart, putObject, s3Info, testEnv } from "../harness/s3.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
/** Headers, HEADs and listings on top of the object's bytes. */
const OVERHEAD_ALLOWANCE = 64 * KiB;
const TEAM = "ml";

interface StagedJson {
  name: string;
  uri: string;
  etag: string | null;
  path: string;
  bytes: number;
  retries: number;
  refetchedBytes: number;
  verification: Record<string, number>;
  error?: { code: string; message: string; hint?: string };
}

interface Source {
  key: string;
  data: Buffer;
  etag: string;
}

let bucket: string;
let scratch: string;
let proxy: FaultProxy | undefined;
const sources = {} as Record<"single-part" | "multipart", Source>;

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");
/** A size in 24-40 MiB that is no multiple of the range or part size. */
const objectSize = () => 24 * MiB + randomInt(16 * MiB - 1) + 1;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-faults-"));
  bucket = await createBucket("faults");
  const single = randomBytes(objectSize());
  const multi = randomBytes(objectSize());
  const [a, b] = await Promise.all([
    putObject(bucket, "single/blob.bin", single),
    putMultipart(bucket, "multi/parts.bin", multi, 5 * MiB),
  ]);
  sources["single-part"] = { key: "single/blob.bin", data: single, etag: a.etag };
  sources.multipart = { key: "multi/parts.bin", data: multi, etag: b.etag };
  expect(b.etag).toMatch(/-\d+$/);
}, 120_000);

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
});

afterAll(async () => {
  await removeAll(scratch);
});

/** Published datasets may be read-only: make them writable, then remove. */
async function removeAll(dir: string): Promise<void> {
  if (!dir) return;
  const walk = async (path: string): Promise<void> => {
    await chmod(path, 0o755).catch(() => {});
    for (const entry of await readdir(path, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory()) await walk(join(path, entry.name));
    }
  };
  await walk(dir);
  await rm(dir, { recursive: true, force: true });
}

async function fetchVia(
  datasets: unknown,
  env: Record<string, string>,
  storage?: string,
): Promise<CliResult & { storage: string; json: { datasets: StagedJson[] } | undefined }> {
  const root = storage ?? (await mkdtemp(join(scratch, "storage-")));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", root, "--team", TEAM, "--json"],
    {
      env: { ...testEnv(), AWS_ENDPOINT_URL: (proxy as FaultProxy).endpoint, ...env },
      stdin: JSON.stringify(datasets),
      timeoutMs: 90_000,
    },
  );
  let json: { datasets: StagedJson[] } | undefined;
  try {
    json = result.stdout === "" ? undefined : JSON.parse(result.stdout);
  } catch {
    json = undefined;
  }
  return { ...result, storage: root, json };
}

const dataRoot = (storage: string) => join(storage, TEAM, "data");

/** What is left in the private attempt directory (must be nothing after any run). */
async function leftovers(storage: string): Promise<string[]> {
  return readdir(join(dataRoot(storage), ".dsfetch", "tmp")).catch((error) => {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  });
}

/** Body bytes of object GETs (not listings) the proxy delivered. */
function objectBodyBytes(p: FaultProxy): number {
  return p.requests
    .filter((r) => r.method === "GET" && !isListObjectsV2(r))
    .reduce((n, r) => n + r.bodyBytes, 0);
}

const diagnostics = (result: CliResult) =>
  `exit ${result.code}\n${result.stderr}\n${result.stdout}`;

type Fault = "cut" | "reset" | "stall";

function arm(p: FaultProxy, fault: Fault, offset: number): void {
  if (fault === "cut") p.cutAt(offset);
  else if (fault === "reset") p.resetAt(offset);
  else p.stallAt(offset, Number.POSITIVE_INFINITY);
}

describe("fetch through a faulty connection", () => {
  const cases: [keyof typeof sources, Fault, number[]][] = [
    ["single-part", "cut", [0.3, 0.7]],
    ["single-part", "reset", [0.3, 0.7]],
    ["single-part", "stall", [0.3, 0.7]],
    ["multipart", "cut", [0.2, 0.5, 0.8]],
    ["multipart", "reset", [0.3, 0.7]],
    ["multipart", "stall", [0.25, 0.75]],
  ];
  for (const [kind, fault, fractions] of cases) {
    it(`${kind} object, ${fault} at ${fractions.map((f) => `${f * 100}%`).join(", ")}: byte-identical, <10% fetched twice`, async () => {
      const source = sources[kind];
      const size = source.data.length;
      proxy = await startFaultProxy(s3Info().endpoint);
      for (const f of fractions) arm(proxy, fault, Math.round(size * f));
      const name = `${kind}-${fault}`;
      const started = performance.now();
      const result = await fetchVia([{ uri: `s3://${bucket}/${source.key}`, name }], {
        DSFETCH_RANGE_SIZE: "4Mi",
        DSFETCH_RANGE_CONCURRENCY: "4",
        DSFETCH_STALL_TIMEOUT: "1",
      });
      const seconds = (performance.now() - started) / 1000;
      expect(result.code, diagnostics(result)).toBe(0);
      // Every fault hit the transfer (a fault that never fired would prove nothing).
      expect(proxy.firedFaults.map((f) => f.kind)).toEqual(fractions.map(() => fault));
      for (const fired of proxy.firedFaults) expect(fired.request?.method).toBe("GET");

      const [staged] = result.json?.datasets ?? [];
      expect(staged?.error).toBeUndefined();
      const fileName = source.key.split("/").pop() as string;
      const dir = join(dataRoot(result.storage), name);
      expect(staged?.path).toBe(dir);
      expect(await readdir(dir)).toEqual([fileName]);
      const published = await readFile(join(dir, fileName));
      expect(published.length).toBe(size);
      expect(sha256(published)).toBe(sha256(source.data));
      expect(staged?.etag).toBe(source.etag);
      expect(staged?.verification).toEqual({
        [kind === "multipart" ? "multipart-md5" : "md5"]: 1,
      });

      expect(staged?.retries).toBeGreaterThanOrEqual(1);
      expect(staged?.refetchedBytes).toBeLessThan(0.1 * size);
      const served = proxy.bytesToClient;
      expect(served).toBeLessThan(1.1 * size + OVERHEAD_ALLOWANCE);
      expect(objectBodyBytes(proxy)).toBeGreaterThanOrEqual(size);
      expect(await leftovers(result.storage)).toEqual([]);
      console.log(
        `${name}: ${(size / MiB).toFixed(1)} MiB in ${seconds.toFixed(1)} s, retries ${staged?.retries}, ` +
          `refetched ${staged?.refetchedBytes} B, proxy served ${(served / size).toFixed(4)}× the size`,
      );
    }, 120_000);
  }
});

describe("an object overwritten during the download", () => {
  const size = 16 * MiB;

  /**
   * Uploads `key`, starts the fetch through a proxy throttled to 8 MiB/s (1 MiB ranges, two in
   * flight), overwrites the object straight to the store once a quarter of it went through,
   * and waits for the fetch.
   */
  async function overwriteMidway(key: string, datasets: (originalEtag: string) => unknown) {
    const original = randomBytes(size);
    const replacement = randomBytes(size + 12_345);
    const first = await putObject(bucket, key, original);
    const p = await startFaultProxy(s3Info().endpoint);
    proxy = p;
    p.throttle(8 * MiB);
    const running = fetchVia(datasets(first.etag), {
      DSFETCH_RANGE_SIZE: "1Mi",
      DSFETCH_RANGE_CONCURRENCY: "2",
    });
    let finished = false;
    const done = () => {
      finished = true;
    };
    running.then(done, done);
    const deadline = performance.now() + 30_000;
    while (objectBodyBytes(p) < size / 4 && !finished && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const deliveredBeforeOverwrite = objectBodyBytes(p);
    // Hold the download while the new content lands, so that ranges are still to be requested.
    p.throttle(1);
    const second = await putObject(bucket, key, replacement);
    // The rest may go at full speed: the point was to be mid-download when the write landed.
    p.throttle(undefined);
    const result = await running;
    // The overwrite landed mid-download, and a ranged GET pinned with If-Match noticed it.
    expect(deliveredBeforeOverwrite, diagnostics(result)).toBeGreaterThanOrEqual(size / 4);
    expect(deliveredBeforeOverwrite).toBeLessThan(size);
    expect(
      p.requests.some((r) => r.status === 412),
      diagnostics(result),
    ).toBe(true);
    return { original, replacement, first, second, result };
  }

  it("fails (exit 5) and publishes nothing when the datasets array pins the etag", async () => {
    const key = "overwrite/pinned.bin";
    const { first, result } = await overwriteMidway(key, (etag) => [
      { uri: `s3://${bucket}/${key}`, name: "pinned", etag },
    ]);
    expect(result.code, diagnostics(result)).toBe(5);
    const [staged] = result.json?.datasets ?? [];
    expect(["OBJECT_CHANGED", "ETAG_MISMATCH"]).toContain(staged?.error?.code);
    expect(staged?.error?.message).toContain("pinned");
    const data = dataRoot(result.storage);
    expect(await readdir(data).catch(() => [])).not.toContain(`pinned-${first.etag}`);
    expect((await readdir(data).catch(() => [])).filter((e) => e !== ".dsfetch")).toEqual([]);
    const manifests = await readdir(join(data, ".dsfetch", "manifests")).catch(() => []);
    expect(manifests).toEqual([]);
    expect(await leftovers(result.storage)).toEqual([]);
  }, 120_000);

  it("starts again on the new version when no etag is pinned: the new bytes, never a mix", async () => {
    const key = "overwrite/unpinned.bin";
    const { replacement, second, result } = await overwriteMidway(key, () => [
      { uri: `s3://${bucket}/${key}`, name: "unpinned" },
    ]);
    expect(result.code, diagnostics(result)).toBe(0);
    const [staged] = result.json?.datasets ?? [];
    expect(staged?.error).toBeUndefined();
    expect(staged?.etag).toBe(second.etag);
    expect(staged?.bytes).toBe(replacement.length);
    const dir = join(dataRoot(result.storage), "unpinned");
    expect(await readdir(dir)).toEqual(["unpinned.bin"]);
    const published = await readFile(join(dir, "unpinned.bin"));
    expect(published.length).toBe(replacement.length);
    expect(sha256(published)).toBe(sha256(replacement));
    const manifestDir = join(dataRoot(result.storage), ".dsfetch", "manifests");
    const manifests = await readdir(manifestDir);
    expect(manifests).toHaveLength(1);
    const manifest = JSON.parse(await readFile(join(manifestDir, manifests[0] as string), "utf8"));
    expect(manifest.etag).toBe(second.etag);
    expect(await leftovers(result.storage)).toEqual([]);
  }, 120_000);
});

describe("a streaming .tar.gz through a faulty connection", () => {
  // The tar family expands while it downloads (the extraction on its own thread): a broken
  // connection must resume the stream where it broke, without a byte missing, repeated or
  // out of order in any file, and without refetching the archive.
  const files = new Map<string, Buffer>();
  let archive: Buffer;
  let etag: string;
  const key = "archives/stream.tar.gz";

  beforeAll(async () => {
    const parts: Buffer[] = [];
    for (let i = 0; i < 12; i++) {
      // Random (incompressible) files of 1-3 MiB: the .tar.gz is about as large as its tree.
      const data = randomBytes(MiB + randomInt(2 * MiB));
      const name = `shard-${String(i).padStart(2, "0")}.bin`;
      files.set(name, data);
      parts.push(tarFile(name, data));
    }
    archive = gzipSync(tar(...parts));
    etag = (await putMultipart(bucket, key, archive, 5 * MiB)).etag;
  }, 120_000);

  const cases: [Fault, number[]][] = [
    ["cut", [0.2, 0.6]],
    ["reset", [0.3, 0.7]],
    ["stall", [0.25, 0.75]],
  ];
  for (const [fault, fractions] of cases) {
    it(`${fault} at ${fractions.map((f) => `${f * 100}%`).join(", ")}: the tree byte-identical, <10% fetched twice`, async () => {
      const size = archive.length;
      proxy = await startFaultProxy(s3Info().endpoint);
      for (const f of fractions) arm(proxy, fault, Math.round(size * f));
      const name = `stream-${fault}`;
      const result = await fetchVia([{ uri: `s3://${bucket}/${key}`, name }], {
        DSFETCH_RANGE_SIZE: "2Mi",
        DSFETCH_RANGE_CONCURRENCY: "4",
        DSFETCH_STALL_TIMEOUT: "1",
      });
      expect(result.code, diagnostics(result)).toBe(0);
      expect(proxy.firedFaults.map((f) => f.kind)).toEqual(fractions.map(() => fault));
      const [staged] = result.json?.datasets ?? [];
      expect(staged?.etag).toBe(etag);
      expect(staged?.verification).toEqual({ "multipart-md5": 1 });
      expect(staged?.retries).toBeGreaterThanOrEqual(1);
      expect(staged?.refetchedBytes).toBeLessThan(0.1 * size);
      expect(proxy.bytesToClient).toBeLessThan(1.1 * size + OVERHEAD_ALLOWANCE);
      const dir = join(dataRoot(result.storage), name);
      expect((await readdir(dir)).sort()).toEqual([...files.keys()].sort());
      for (const [file, data] of files) {
        expect(sha256(await readFile(join(dir, file))), file).toBe(sha256(data));
      }
      expect(await leftovers(result.storage)).toEqual([]);
    }, 120_000);
  }
});
