// The lock holder's failure record (src/volumes/failure-record.ts): only errors about the
// stored object's verified bytes are recorded, and only the workers that waited on that very
// holder, for exactly the same source, use one.
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DsfetchError, type ErrorCode } from "../../src/errors.ts";
import type { ResolvedObject, ResolvedPrefix } from "../../src/fetch/resolve.ts";
import { isStorageFull } from "../../src/volumes/attempt.ts";
import {
  clearFailure,
  failureOfAwaitedHolder,
  passOnFailure,
  recordFailure,
} from "../../src/volumes/failure-record.ts";
import { hostLabel } from "../../src/volumes/host-label.ts";

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
const holder = { host: "host-a", pid: 7, since: "2026-12-04T04:00:00.000Z" };
const verified = (code: ErrorCode, message: string) =>
  new DsfetchError(code, message, { dataset: "set", hint: "re-create it", objectVerified: true });
const broken = verified("ARCHIVE_INVALID", "set: the gzip data is corrupt");

describe("failure records", () => {
  it("are readable by every user whatever the umask (other users' waiters read them)", async () => {
    const before = process.umask(0o077);
    try {
      await recordFailure(path, object, broken, holder);
    } finally {
      process.umask(before);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o644);
  });

  it("a verified archive error is met by a worker that waited on that holder", async () => {
    await recordFailure(path, object, broken, holder);
    const met = await failureOfAwaitedHolder(path, object, "set", [{ ...holder }]);
    expect(met).toBeInstanceOf(DsfetchError);
    expect(met).toMatchObject({
      code: "ARCHIVE_INVALID",
      dataset: "set",
      message:
        "set: the gzip data is corrupt (met by host-a pid 7, whose download this worker waited for, on the same object version: not downloaded again)",
      hint: "re-create it",
      objectVerified: true,
    });
    // Written atomically: no temporary file left beside it.
    expect(await readdir(join(dir, "failures"))).toEqual(["set.json"]);
  });

  it("a holder of another container of this pod (this host name and pid, another PID namespace) is not this process: its failure is met", async () => {
    // Two containers of one pod share the host name and are often both pid 1: the record
    // was taken for this process's own, and the waiter downloaded once more (review,
    // 2026-12-07). Told apart by the host label.
    const twin = {
      host: hostname(),
      pid: process.pid,
      since: "2026-12-07T04:00:00.000Z",
      label: `${hostLabel()}-other-namespace`,
    };
    await recordFailure(path, object, broken, twin);
    const met = await failureOfAwaitedHolder(path, object, "set", [{ ...twin }]);
    expect(met).toMatchObject({ code: "ARCHIVE_INVALID" });
    // This very process's (its label): its own, not met.
    await recordFailure(path, object, broken, { ...twin, label: hostLabel() });
    expect(
      await failureOfAwaitedHolder(path, object, "set", [{ ...twin, label: hostLabel() }]),
    ).toBeUndefined();
  });

  it("is not met by a worker that did not wait on that holder (a later run tries again)", async () => {
    await recordFailure(path, object, broken, holder);
    expect(await failureOfAwaitedHolder(path, object, "set", [])).toBeUndefined();
    for (const other of [
      { ...holder, pid: 8 },
      { ...holder, host: "host-b" },
      { ...holder, since: "2026-12-04T04:05:00.000Z" },
    ]) {
      expect(await failureOfAwaitedHolder(path, object, "set", [other])).toBeUndefined();
    }
  });

  it("is met by a worker that waited on a holder it could not name, when written since it first saw it", async () => {
    // The holder failed within a moment of taking the lock, before its holder file was read
    // (CI, 2026-12-05: the second worker then tried again what the first had just met).
    const sawUnnamed = Date.now();
    await recordFailure(path, object, broken, holder);
    const met = await failureOfAwaitedHolder(path, object, "set", [], {
      unidentifiedSince: sawUnnamed,
    });
    expect(met?.code).toBe("ARCHIVE_INVALID");
    expect(met?.message).toContain("met by host-a pid 7");
    // A record from before that look is an earlier run's: tried again.
    expect(
      await failureOfAwaitedHolder(path, object, "set", [], {
        unidentifiedSince: Date.now() + 60_000,
      }),
    ).toBeUndefined();
  });

  it.each([
    [
      "ARCHIVE_INVALID not verified against the store (maybe damaged on the way)",
      broken.code,
      false,
    ],
    ["INTEGRITY (bytes damaged on the way: each download its own)", "INTEGRITY", true],
    ["TRANSIENT", "TRANSIENT", true],
    ["NO_SPACE", "NO_SPACE", true],
    ["STALLED", "STALLED", true],
  ] as const)("%s is not recorded", async (_, code, objectVerified) => {
    await recordFailure(path, object, new DsfetchError(code, "x", { objectVerified }), holder);
    await recordFailure(path, object, new Error("not ours"), holder);
    expect(await failureOfAwaitedHolder(path, object, "set", [holder])).toBeUndefined();
  });

  it("shared storage found full (ENOSPC) is met as such, for the waiter to fall back at once", async () => {
    const full = new DsfetchError("NO_SPACE", 'set: cannot write archive entry "a": ENOSPC', {
      dataset: "set",
      cause: Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" }),
    });
    expect(isStorageFull(full)).toBe(true);
    await recordFailure(path, object, full, holder);
    const met = await failureOfAwaitedHolder(path, object, "set", [holder]);
    expect(met).toMatchObject({
      code: "NO_SPACE",
      message:
        'set: cannot write archive entry "a": ENOSPC (met by host-a pid 7, whose download this worker waited for)',
      objectVerified: false,
    });
    expect(isStorageFull(met)).toBe(true);
    // A bound of dsfetch's own (a volume's size) is not the storage being full.
    expect(isStorageFull(new DsfetchError("NO_SPACE", "over the limit"))).toBe(false);
    expect(isStorageFull(new DsfetchError("STORAGE", "x", { cause: full.cause }))).toBe(false);
  });

  it("is ignored for another object version or when unreadable; cleared on success", async () => {
    await recordFailure(path, object, verified("UNSAFE_PATH", "set: ../x escapes"), holder);
    const etag = "fedcba9876543210fedcba9876543210";
    expect(
      await failureOfAwaitedHolder(path, { ...object, etag }, "set", [holder]),
    ).toBeUndefined();
    expect(
      await failureOfAwaitedHolder(path, { ...object, versionId: "v2" }, "set", [holder]),
    ).toBeUndefined();
    expect(
      await failureOfAwaitedHolder(path, { ...object, bytes: 1001 }, "set", [holder]),
    ).toBeUndefined();
    expect((await failureOfAwaitedHolder(path, object, "set", [holder]))?.code).toBe("UNSAFE_PATH");
    await writeFile(path, "{ not json");
    expect(await failureOfAwaitedHolder(path, object, "set", [holder])).toBeUndefined();
    await recordFailure(path, object, broken, holder);
    await clearFailure(path);
    expect(await readdir(join(dir, "failures"))).toEqual([]);
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
    await recordFailure(path, folder, verified("UNSAFE_PATH", "images: bad key"), holder);
    expect((await failureOfAwaitedHolder(path, folder, "images", [holder]))?.message).toBe(
      "images: bad key (met by host-a pid 7, whose download this worker waited for, on the same folder listing: not downloaded again)",
    );
    const changed = { ...folder, listingDigest: "b".repeat(64) };
    expect(await failureOfAwaitedHolder(path, changed, "images", [holder])).toBeUndefined();
    expect(await failureOfAwaitedHolder(path, object, "images", [holder])).toBeUndefined();
  });

  it("passed on by a worker that failed from it: met by the workers that waited only on that one", async () => {
    await recordFailure(path, object, broken, holder);
    const second = { host: "host-b", pid: 9, since: "2026-12-04T04:00:03.000Z" };
    await passOnFailure(path, second);
    const message =
      "set: the gzip data is corrupt (met by host-a pid 7, whose download this worker waited for, on the same object version: not downloaded again)";
    // Those that waited on the first holder only (the second held the lock an instant).
    expect((await failureOfAwaitedHolder(path, object, "set", [holder]))?.message).toBe(message);
    expect((await failureOfAwaitedHolder(path, object, "set", [second]))?.message).toBe(message);
    const third = { ...second, pid: 10 };
    expect(await failureOfAwaitedHolder(path, object, "set", [third])).toBeUndefined();
  });
});
