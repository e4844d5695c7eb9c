// A filesystem that refuses direct I/O (issue 3): at open (EINVAL, as tmpfs before Linux 6.6
// and some FUSE filesystems do) or at the first write (it took the flag but not the
// alignment). The object is then downloaded with buffered writes: byte-exact, verified,
// nothing of the refused attempt left behind. Refusals are simulated here (this machine's
// filesystems all take O_DIRECT), the download and the store are real.
import { createHash, randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { downloadObject } from "../../src/fetch/download-object.ts";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import { createBucket, putMultipart, s3Info } from "../harness/s3.ts";

const MiB = 1024 * 1024;

const refusal = vi.hoisted(() => ({ at: "none" as "none" | "open" | "write", writes: 0 }));

vi.mock("../../src/fetch/download-direct.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/fetch/download-direct.ts")>();
  const einval = () =>
    Object.assign(new Error("EINVAL: invalid argument, write"), { code: "EINVAL" });
  return {
    ...actual,
    openDirect: async (path: string): Promise<FileHandle | undefined> => {
      if (refusal.at === "open") return undefined;
      const handle = await actual.openDirect(path);
      if (handle === undefined || refusal.at !== "write") return handle;
      return new Proxy(handle, {
        get(target, property) {
          if (property === "write") {
            return async () => {
              refusal.writes += 1;
              throw einval();
            };
          }
          const value = Reflect.get(target, property);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
    },
  };
});

let bucket: string;
let scratch: string;
let getter: ObjectGetter;
const body = randomBytes(20 * MiB + 4_321);
let etag: string;
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-direct-fallback-"));
  bucket = await createBucket("fallback");
  etag = (await putMultipart(bucket, "parts.bin", body, 5 * MiB)).etag;
  const info = s3Info();
  getter = new ObjectGetter({
    endpoint: { url: info.endpoint, region: info.region, forcePathStyle: true },
    credentials: async () => ({
      accessKeyId: info.accessKeyId,
      secretAccessKey: info.secretAccessKey,
    }),
  });
}, 60_000);

afterAll(async () => {
  getter.destroy();
  await rm(scratch, { recursive: true, force: true });
});

async function download(dir: string) {
  const parts = [0, 1, 2, 3, 4].map((i) => ({
    start: i * 5 * MiB,
    end: Math.min(body.length, (i + 1) * 5 * MiB),
  }));
  return downloadObject({
    getter,
    source: { bucket, key: "parts.bin", versionId: undefined, etag, bytes: body.length },
    destination: join(dir, "parts.bin"),
    parts,
    directIo: true,
    errorContext: {
      dataset: "parts",
      uri: `s3://${bucket}/parts.bin`,
      bucket,
      endpoint: s3Info().endpoint,
      anonymous: false,
      action: "reading",
    },
  });
}

describe("direct I/O refused", () => {
  for (const at of ["open", "write"] as const) {
    it(`at ${at}: buffered writes instead, byte-exact and verified`, async () => {
      refusal.at = at;
      refusal.writes = 0;
      const dir = await mkdtemp(join(scratch, `${at}-`));
      const result = await download(dir);
      expect(result.writes).toBe("buffered");
      expect(result.verification).toBe("multipart-md5");
      expect(sha256(await readFile(join(dir, "parts.bin")))).toBe(sha256(body));
      expect(await readdir(dir)).toEqual(["parts.bin"]);
      if (at === "write") expect(refusal.writes).toBeGreaterThan(0);
    });
  }

  it("not refused: the same download is written directly", async () => {
    refusal.at = "none";
    const dir = await mkdtemp(join(scratch, "none-"));
    const result = await download(dir);
    expect(result.writes).toBe("direct");
    expect(sha256(await readFile(join(dir, "parts.bin")))).toBe(sha256(body));
  });
});
