// A filesystem that refuses chmod (some FUSE or SMB mounts) still takes a manifest: the chmod
// that makes it readable by every user whatever the umask (review, 2026-12-06) is never fatal.
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { writeManifest } from "../../src/volumes/manifest.ts";
import { testManifest } from "../harness/manifests.ts";

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const open: typeof actual.open = async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    handle.chmod = async () => {
      throw Object.assign(new Error("EPERM: operation not permitted, fchmod"), { code: "EPERM" });
    };
    return handle;
  };
  return { ...actual, open, default: { ...actual, open } };
});

const dir = await mkdtemp(join(tmpdir(), "dsfetch-chmod-refused-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("a manifest on storage that refuses chmod", () => {
  it("is written all the same (under a umask that took its read bits)", async () => {
    const path = join(dir, "ds.json");
    const before = process.umask(0o077);
    try {
      await writeManifest(path, testManifest("s3://b/ds.bin", "e".repeat(32), "ds.bin"));
    } finally {
      process.umask(before);
    }
    expect(JSON.parse(await readFile(path, "utf8"))).toMatchObject({ uri: "s3://b/ds.bin" });
  });
});
