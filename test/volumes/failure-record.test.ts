// The lock holder's failure record (src/volumes/failure-record.ts): which errors are recorded,
// and when a later worker uses one (same object version, recent) or ignores it.
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import type { ResolvedObject, ResolvedPrefix } from "../../src/fetch/resolve.ts";
import { clearFailure, recentFailure, recordFailure } from "../../src/volumes/failure-record.ts";

let dir: string;
let path: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "dsfetch-failure-"));
  path = join(dir, "failures", "set.json");
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const object: ResolvedObject = {
  kind: "object",
  bucket: "b",
  key: "set.tar.gz",
  etag: "0123456789abcdef0123456789abcdef",
  versionId: undefined,
  bytes: 1000,
  lastModified: undefined,
  encryption: undefined,
  checksum: undefined,
  checksumRejected: [],
};
const broken = new DsfetchError("ARCHIVE_INVALID", "set: the gzip data is corrupt", {
  dataset: "set",
  hint: "re-create it",
});

describe("failure records", () => {
  it("an archive error is recorded and met again by the next worker, with its code and hint", async () => {
    await recordFailure(path, object, broken, "host-a pid 7");
    const met = await recentFailure(path, object, "set", 120_000);
    expect(met).toBeInstanceOf(DsfetchError);
    expect(met).toMatchObject({
      code: "ARCHIVE_INVALID",
      dataset: "set",
      message:
        "set: the gzip data is corrupt (met by host-a pid 7 0 s ago on the same object version: not downloaded again)",
      hint: "re-create it; a run started later tries again",
    });
    // Written atomically: no temporary file left beside it.
    expect(await readdir(join(dir, "failures"))).toEqual(["set.json"]);
  });

  it.each([
    ["TRANSIENT", "the store stayed unreachable"],
    ["NO_SPACE", "the volume is full"],
    ["STALLED", "no progress"],
    ["INTERRUPTED", "stopped"],
  ] as const)("%s is not recorded: the next worker may well succeed", async (code, message) => {
    await recordFailure(path, object, new DsfetchError(code, message), "host-a pid 7");
    expect(await recentFailure(path, object, "set", 120_000)).toBeUndefined();
    await recordFailure(path, object, new Error("not ours"), "host-a pid 7");
    expect(await recentFailure(path, object, "set", 120_000)).toBeUndefined();
  });

  it("is ignored for another object version, once too old, or when unreadable; cleared on success", async () => {
    await recordFailure(path, object, broken, "host-a pid 7");
    const now = Date.now();
    expect(
      await recentFailure(
        path,
        { ...object, etag: "fedcba9876543210fedcba9876543210" },
        "set",
        1e9,
      ),
    ).toBeUndefined();
    expect(await recentFailure(path, { ...object, versionId: "v2" }, "set", 1e9)).toBeUndefined();
    expect(await recentFailure(path, { ...object, bytes: 1001 }, "set", 1e9)).toBeUndefined();
    expect(await recentFailure(path, object, "set", 120_000, now + 121_000)).toBeUndefined();
    expect(await recentFailure(path, object, "set", 120_000, now + 60_000)).toBeDefined();
    await writeFile(path, "{ not json");
    expect(await recentFailure(path, object, "set", 120_000)).toBeUndefined();
    await recordFailure(path, object, broken, "host-a pid 7");
    await clearFailure(path);
    expect(await readdir(join(dir, "failures"))).toEqual([]);
    expect(await recentFailure(path, object, "set", 120_000)).toBeUndefined();
  });

  it("a folder's record is met only with the same listing", async () => {
    const folder: ResolvedPrefix = {
      kind: "prefix",
      bucket: "b",
      prefix: "images/",
      objects: [],
      bytes: 5000,
      listingDigest: "a".repeat(64),
    };
    const corrupt = new DsfetchError("INTEGRITY", "images: a.jpg does not match its ETag");
    await recordFailure(path, folder, corrupt, "host-a pid 7");
    expect((await recentFailure(path, folder, "images", 120_000))?.message).toBe(
      "images: a.jpg does not match its ETag (met by host-a pid 7 0 s ago on the same folder listing: not downloaded again)",
    );
    expect(
      await recentFailure(path, { ...folder, listingDigest: "b".repeat(64) }, "images", 120_000),
    ).toBeUndefined();
    expect(await recentFailure(path, object, "images", 120_000)).toBeUndefined();
  });
});
