// Direct I/O refused or failing (issue 3), simulated under the download (this machine's
// filesystems all take O_DIRECT): `open` of node:fs/promises is wrapped so that an O_DIRECT
// open fails with EINVAL after creating the file (as Linux does on ramfs, tmpfs before 6.6,
// some FUSE filesystems), or its writes fail. The store and the download are real.
// - Refused at open or at the first write: the object is downloaded with buffered writes,
//   byte-exact and verified, nothing of the refused attempt left behind.
// - EINVAL after a write succeeded, or ENOSPC: a storage error (exit 7/3), never retried,
//   never a silent fallback.
import { createHash, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import { downloadObject } from "../../src/fetch/download-object.ts";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import { createBucket, putMultipart, s3Info } from "../harness/s3.ts";

const MiB = 1024 * 1024;

type Mode = "none" | "open" | "first-write" | "later-write" | "enospc";
const fault = vi.hoisted(() => ({ mode: "none" as string, directWrites: 0, completed: 0 }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const O_DIRECT = (await import("node:fs")).constants.O_DIRECT ?? 0;
  const failure = (code: string) =>
    Object.assign(new Error(`${code}: simulated, write`), { code, errno: -22, syscall: "write" });
  const open = async (...args: Parameters<typeof actual.open>): Promise<FileHandle> => {
    const [path, flags] = args;
    const direct = typeof flags === "number" && O_DIRECT !== 0 && (flags & O_DIRECT) !== 0;
    if (!direct || fault.mode === "none") return actual.open(...args);
    if (fault.mode === "open") {
      // Linux creates the file, then refuses the flag.
      await actual.writeFile(path, "");
      throw Object.assign(new Error("EINVAL: invalid argument, open"), { code: "EINVAL" });
    }
    const handle = await actual.open(...args);
    return new Proxy(handle, {
      get(target, property) {
        if (property === "write") {
          return async (...writeArgs: unknown[]) => {
            fault.directWrites += 1;
            const n = fault.directWrites;
            if (fault.mode === "first-write") throw failure("EINVAL");
            // The 4th write on fails, once a write has completed (before that, EINVAL would be
            // a refusal: fallback), a turn later, as a real write's error would come: by then
            // the download has seen the completed write too (it decides when the error comes).
            if (fault.mode === "later-write" && n > 3) {
              while (fault.completed === 0) await new Promise((resolve) => setTimeout(resolve, 1));
              await new Promise((resolve) => setTimeout(resolve, 1));
              throw failure("EINVAL");
            }
            if (fault.mode === "enospc" && n > 3) throw failure("ENOSPC");
            const written = await (target.write as (...a: unknown[]) => Promise<unknown>)(
              ...writeArgs,
            );
            fault.completed += 1;
            return written;
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
  };
  return { ...actual, open, default: { ...actual, open } };
});

let bucket: string;
let scratch: string;
let getter: ObjectGetter;
const body = randomBytes(20 * MiB + 4_321);
let etag: string;
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  expect(constants.O_DIRECT).toBeGreaterThan(0);
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

async function download(mode: Mode) {
  fault.mode = mode;
  fault.directWrites = 0;
  fault.completed = 0;
  const dir = await mkdtemp(join(scratch, `${mode}-`));
  const parts = [0, 1, 2, 3, 4].map((i) => ({
    start: i * 5 * MiB,
    end: Math.min(body.length, (i + 1) * 5 * MiB),
  }));
  let retries = 0;
  const result = downloadObject({
    getter,
    source: { bucket, key: "parts.bin", versionId: undefined, etag, bytes: body.length },
    destination: join(dir, "parts.bin"),
    parts,
    directIo: true,
    retry: { minDelayMs: 10, maxDelayMs: 20, onRetry: () => retries++ },
    errorContext: {
      dataset: "parts",
      uri: `s3://${bucket}/parts.bin`,
      bucket,
      endpoint: s3Info().endpoint,
      anonymous: false,
      action: "reading",
    },
  });
  return { result, dir, retries: () => retries };
}

describe("direct I/O refused", () => {
  for (const mode of ["open", "first-write"] as const) {
    it(`at ${mode === "open" ? "open" : "the first write"}: buffered writes instead, byte-exact and verified`, async () => {
      const { result, dir } = await download(mode);
      const done = await result;
      expect(done.writes).toBe("buffered");
      expect(done.verification).toBe("multipart-md5");
      expect(sha256(await readFile(join(dir, "parts.bin")))).toBe(sha256(body));
      expect(await readdir(dir)).toEqual(["parts.bin"]);
      if (mode === "first-write") expect(fault.directWrites).toBeGreaterThan(0);
    });
  }

  it("not refused: the same download is written directly", async () => {
    const { result, dir } = await download("none");
    expect((await result).writes).toBe("direct");
    expect(sha256(await readFile(join(dir, "parts.bin")))).toBe(sha256(body));
  });
});

describe("no space for the whole object", () => {
  it("fallocate says so: NO_SPACE naming the size, before any byte is written, not retried", async () => {
    // A stand-in `fallocate` first on PATH, failing as util-linux does on a full disk.
    const bin = await mkdtemp(join(scratch, "bin-"));
    await writeFile(
      join(bin, "fallocate"),
      '#!/bin/sh\necho "fallocate: fallocate failed: No space left on device" >&2\nexit 1\n',
      { mode: 0o755 },
    );
    const path = process.env.PATH;
    process.env.PATH = `${bin}:${path ?? ""}`;
    try {
      const { result, retries } = await download("none");
      const error = await result.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DsfetchError);
      expect((error as DsfetchError).code).toBe("NO_SPACE");
      expect((error as DsfetchError).message).toMatch(
        new RegExp(
          `^parts: needs .* \\(${body.length} bytes\\) on the device holding .*parts\\.bin`,
        ),
      );
      expect(fault.directWrites).toBe(0);
      expect(retries()).toBe(0);
    } finally {
      process.env.PATH = path;
    }
  });
});

describe("direct writes failing", () => {
  const cases = [
    ["EINVAL after writes succeeded", "later-write", "STORAGE", /cannot write to .*parts\.bin/],
    ["ENOSPC", "enospc", "NO_SPACE", /no space left on the device holding .*parts\.bin/],
  ] as const;
  for (const [label, mode, code, message] of cases) {
    it(`${label}: ${code}, not retried, no fallback`, async () => {
      const { result, retries } = await download(mode);
      const error = await result.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(DsfetchError);
      expect((error as DsfetchError).code).toBe(code);
      expect((error as DsfetchError).message).toMatch(message);
      expect((error as DsfetchError).retryable).toBe(false);
      expect(retries()).toBe(0);
    });
  }
});
