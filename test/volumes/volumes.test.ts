// Shared storage and ephemeral volumes as a user sees them: where data lands, permissions,
// fallback when shared storage is unavailable, size limits, mounts, refresh and clean-up.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import { takeLease } from "../../src/volumes/usage.ts";
import { runCli } from "../harness/cli.ts";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-volumes-"));
  bucket = await createBucket("volumes");
  await putObject(bucket, "set/a.txt", "alpha");
  await putObject(bucket, "set/sub/b.txt", "beta");
  await putObject(bucket, "one/blob.bin", randomBytes(300_000));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Entry {
  name: string;
  path?: string;
  volume?: string;
  mount?: string | null;
  fallback?: string;
  cached?: boolean;
  etag?: string | null;
  replaced?: unknown;
  error?: { code: string; message: string; hint?: string };
}

async function fetch(datasets: unknown, flags: string[], env: Record<string, string> = {}) {
  const result = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
    env: { ...testEnv(), ...env },
    stdin: JSON.stringify(datasets),
  });
  const json =
    result.stdout === "" ? undefined : (JSON.parse(result.stdout) as { datasets: Entry[] });
  return { ...result, entries: json?.datasets ?? [] };
}

async function fresh(label: string): Promise<string> {
  return mkdtemp(join(root, `${label}-`));
}

describe("published datasets", () => {
  it("are read-only: files 0444, directories 0555", async () => {
    const storage = await fresh("ro");
    const { code, entries } = await fetch(
      [{ uri: `s3://${bucket}/set/` }],
      ["--storage-root", storage, "--team", "t"],
    );
    expect(code).toBe(0);
    const dir = entries[0]?.path as string;
    expect((await stat(dir)).mode & 0o777).toBe(0o555);
    expect((await stat(join(dir, "sub"))).mode & 0o777).toBe(0o555);
    expect((await stat(join(dir, "a.txt"))).mode & 0o777).toBe(0o444);
    expect((await stat(join(dir, "sub", "b.txt"))).mode & 0o777).toBe(0o444);
  });

  it("a folder written several files at once (DSFETCH_FILE_WRITES=parallel): the same files, said on stderr", async () => {
    const storage = await fresh("parallel");
    const { code, entries, stderr } = await fetch(
      [{ uri: `s3://${bucket}/set/` }],
      ["--storage-root", storage, "--team", "t"],
      { DSFETCH_FILE_WRITES: "parallel" },
    );
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/: 2 of 2 files written in parallel \(DSFETCH_FILE_WRITES=parallel\)/);
    const dir = entries[0]?.path as string;
    expect(await readFile(join(dir, "a.txt"), "utf8")).toBe("alpha");
    expect(await readFile(join(dir, "sub", "b.txt"), "utf8")).toBe("beta");
    expect((await stat(join(dir, "a.txt"))).mode & 0o777).toBe(0o444);
    expect((await stat(join(dir, "sub", "b.txt"))).mode & 0o777).toBe(0o444);
  });

  it("a folder of 4 directories fetched across them in turn: each object once, the manifest in listing order", async () => {
    const keys: string[] = [];
    for (let i = 0; i < 60; i++) keys.push(`spread/d${i % 4}/f${String(i).padStart(2, "0")}.txt`);
    keys.push("spread/top.txt");
    await Promise.all(keys.map((key) => putObject(bucket, key, `body of ${key}\n`)));
    const storage = await fresh("spread");
    const { code, entries, stderr } = await fetch(
      [{ uri: `s3://${bucket}/spread/` }],
      ["--storage-root", storage, "--team", "t"],
      { DSFETCH_FILE_WRITES: "parallel" },
    );
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(/: 61 of 61 files written in parallel/);
    const dir = entries[0]?.path as string;
    for (const key of keys) {
      expect(await readFile(join(dir, key.slice("spread/".length)), "utf8")).toBe(
        `body of ${key}\n`,
      );
    }
    const manifest = JSON.parse(
      await readFile(join(storage, "t", "data", ".dsfetch", "manifests", "spread.json"), "utf8"),
    ) as { files: { path: string; bytes: number }[] };
    const listed = keys.map((key) => key.slice("spread/".length)).sort();
    expect(manifest.files.map((f) => f.path)).toEqual(listed);
  });

  it("the longest name (160 characters) with an etag: staged, and refreshed in place when its folder changes (every name dsfetch makes beside it fits in a file name)", async () => {
    const storage = await fresh("long-name");
    const flags = ["--storage-root", storage, "--team", "t"];
    const name = `n${"x".repeat(159)}`;
    const { etag } = await putObject(bucket, "long/model.bin", "weights");
    const pinned = await fetch([{ uri: `s3://${bucket}/long/model.bin`, name, etag }], flags);
    expect(pinned.stderr).not.toContain("error");
    expect(pinned.code).toBe(0);
    expect(pinned.entries[0]?.path).toBe(join(storage, "t", "data", `${name}-${etag}`));
    expect(await readFile(join(pinned.entries[0]?.path as string, "model.bin"), "utf8")).toBe(
      "weights",
    );
    // A folder under the same name: published, then replaced by a refresh (pending manifest).
    await putObject(bucket, "long-set/a.txt", "one");
    const folder = [{ uri: `s3://${bucket}/long-set/`, name }];
    expect((await fetch(folder, flags)).code).toBe(0);
    await putObject(bucket, "long-set/b.txt", "two");
    const refreshed = await fetch(folder, flags);
    expect(refreshed.stderr).not.toContain("error");
    expect(refreshed.entries[0]?.cached).toBe(false);
    expect((await readdir(refreshed.entries[0]?.path as string)).sort()).toEqual([
      "a.txt",
      "b.txt",
    ]);
  });

  it("refresh without an etag: a changed object is fetched anew and swapped in", async () => {
    const storage = await fresh("refresh");
    const key = "refresh/model.txt";
    await putObject(bucket, key, "version one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const first = await fetch([{ uri: `s3://${bucket}/${key}` }], flags);
    expect(first.code).toBe(0);
    const file = join(first.entries[0]?.path as string, "model.txt");
    expect(await readFile(file, "utf8")).toBe("version one");
    const unchanged = await fetch([{ uri: `s3://${bucket}/${key}` }], flags);
    expect(unchanged.entries[0]?.cached).toBe(true);
    await putObject(bucket, key, "version two, longer");
    const refreshed = await fetch([{ uri: `s3://${bucket}/${key}` }], flags);
    expect(refreshed.code).toBe(0);
    expect(refreshed.entries[0]?.cached).toBe(false);
    // What it replaced, as plan's "replaces" said it would.
    expect(refreshed.entries[0]?.replaced).toEqual({
      etag: first.entries[0]?.etag,
      versionId: null,
      stagedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
    });
    expect(first.entries[0]?.replaced).toBeUndefined();
    expect(unchanged.entries[0]?.replaced).toBeUndefined();
    expect(await readFile(file, "utf8")).toBe("version two, longer");
    expect(await readdir(join(storage, "t", "data", ".dsfetch", "tmp"))).toEqual([]);
  });

  it("a changed folder in use by a job (a lease) is kept as it is, said so; refreshed once no job uses it", async () => {
    const storage = await fresh("in-use");
    await putObject(bucket, "inuse/a.txt", "one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const datasets = [{ uri: `s3://${bucket}/inuse/` }];
    const first = await fetch(datasets, flags);
    expect(first.code).toBe(0);
    const dir = first.entries[0]?.path as string;
    // A job's lease (as `run` and `sidecar` take), by this live process.
    const lease = await takeLease(locationIn(join(storage, "t", "data"), "inuse"));
    await putObject(bucket, "inuse/b.txt", "two");
    // Its file made writable and given another time by a job: what a reuse says of the copy
    // it gives, said of the kept one too (fetch --json and plan lacked both).
    await chmod(join(dir, "a.txt"), 0o644);
    await utimes(join(dir, "a.txt"), new Date("2001-01-01"), new Date("2001-01-01"));
    const saidOfCopy = { timesChanged: true, madeWritable: true };
    try {
      const kept = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
        env: testEnv(),
        stdin: JSON.stringify(datasets),
      });
      expect(kept.code).toBe(0);
      expect(JSON.parse(kept.stdout).datasets[0]).toMatchObject({
        cached: true,
        objects: 1,
        keptInUse: [expect.stringMatching(/ pid \d+$/)],
        ...saidOfCopy,
      });
      expect(kept.stderr).toContain("changed since it was staged");
      expect(kept.stderr).toContain("kept as it is");
      expect(kept.stderr).toContain(`files of ${dir} have been made writable by their owner`);
      expect(kept.stderr).toContain(`files of ${dir} have other modification times`);
      // Nothing was replaced: no "replaced".
      expect(JSON.parse(kept.stdout).datasets[0].replaced).toBeUndefined();
      expect((await readdir(dir)).sort()).toEqual(["a.txt"]);
      // The dry run says the same.
      const planned = await runCli(["plan", "--datasets", "-", "--json", ...flags], {
        env: testEnv(),
        stdin: JSON.stringify(datasets),
      });
      expect(planned.code).toBe(0);
      // The version that stays (one object), not the source's two.
      expect(JSON.parse(planned.stdout).datasets[0]).toMatchObject({
        cached: true,
        objects: 1,
        keptInUse: [expect.stringMatching(/ pid \d+$/)],
        ...saidOfCopy,
      });
      const table = await runCli(["plan", "--datasets", "-", ...flags], {
        env: testEnv(),
        stdin: JSON.stringify(datasets),
      });
      expect(table.stderr).toContain("kept: in use");
      expect(table.stderr).toContain("fetch keeps it as it is until no job uses it");
    } finally {
      await lease.release();
    }
    const refreshed = await fetch(datasets, flags);
    expect(refreshed.code).toBe(0);
    expect(refreshed.entries[0]?.cached).toBe(false);
    expect(refreshed.entries[0]?.replaced).toMatchObject({ stagedAt: expect.any(String) });
    expect((await readdir(dir)).sort()).toEqual(["a.txt", "b.txt"]);
  });

  it("a job that leases the dataset while a refresh downloads: the refresh is not swapped in under it", async () => {
    const storage = await fresh("leased-meanwhile");
    await putObject(bucket, "leased/a.txt", "one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const datasets = [{ uri: `s3://${bucket}/leased/` }];
    // Both runs through the proxy: another endpoint is another store (its datasets apart).
    const proxy = await startFaultProxy(s3Info().endpoint);
    const first = await fetch(datasets, flags, { AWS_ENDPOINT_URL: proxy.endpoint });
    expect(first.code).toBe(0);
    const dir = first.entries[0]?.path as string;
    await putObject(bucket, "leased/b.bin", randomBytes(1_500_000));
    proxy.resetCounters();
    let lease: Awaited<ReturnType<typeof takeLease>> | undefined;
    try {
      // ~3 s of download: the lease comes while it runs, after the first look found none.
      proxy.throttle(500_000);
      const refreshing = fetch(datasets, flags, { AWS_ENDPOINT_URL: proxy.endpoint });
      await expect.poll(() => proxy.getBodyBytes(), { timeout: 20_000 }).toBeGreaterThan(100_000);
      lease = await takeLease(locationIn(join(storage, "t", "data"), "leased"));
      const kept = await refreshing;
      expect(kept.code).toBe(0);
      expect(kept.entries[0]).toMatchObject({ cached: true, objects: 1 });
      expect((await readdir(dir)).sort()).toEqual(["a.txt"]);
      expect(await readdir(join(storage, "t", "data", ".dsfetch", "tmp"))).toEqual([]);
    } finally {
      await lease?.release();
      await proxy.close();
    }
  });

  it("a changed single object in use is kept too: the job reads the version it started with", async () => {
    const storage = await fresh("in-use-object");
    const key = "inuse-object/model.txt";
    await putObject(bucket, key, "version one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const first = await fetch([{ uri: `s3://${bucket}/${key}` }], flags);
    expect(first.code).toBe(0);
    const file = join(first.entries[0]?.path as string, "model.txt");
    const lease = await takeLease(locationIn(join(storage, "t", "data"), "model.txt"));
    try {
      await putObject(bucket, key, "version two");
      const kept = await fetch([{ uri: `s3://${bucket}/${key}` }], flags);
      expect(kept.code).toBe(0);
      expect(kept.entries[0]?.cached).toBe(true);
      expect(await readFile(file, "utf8")).toBe("version one");
    } finally {
      await lease.release();
    }
  });

  it("removes abandoned attempts of dead processes, and only those of this dataset", async () => {
    const storage = await fresh("cleanup");
    const tmp = join(storage, "t", "data", ".dsfetch", "tmp");
    const host = hostLabel();
    const dead = join(tmp, `a.txt.${host}.999999.deadbeef`);
    const other = join(tmp, `other.${host}.999999.cafef00d`);
    await mkdir(join(dead, "data"), { recursive: true });
    await writeFile(join(dead, "data", "partial"), "half");
    await mkdir(join(other, "data"), { recursive: true });
    const { code } = await fetch(
      [{ uri: `s3://${bucket}/set/a.txt` }],
      ["--storage-root", storage, "--team", "t"],
    );
    expect(code).toBe(0);
    expect(await readdir(tmp)).toEqual([`other.${host}.999999.cafef00d`]);
  });
});

describe("fallback to an ephemeral volume", () => {
  it("when the storage root does not exist (not mounted): staged, and said so", async () => {
    const ephemeral = await fresh("eph");
    const missing = join(root, "not-mounted");
    const { code, entries, stderr } = await fetch(
      [{ uri: `s3://${bucket}/set/` }],
      ["--storage-root", missing, "--team", "t", "--ephemeral-root", ephemeral],
    );
    expect(code).toBe(0);
    expect(entries[0]).toMatchObject({ volume: "ephemeral", path: join(ephemeral, "set") });
    expect(entries[0]?.fallback).toContain(`${missing} does not exist`);
    expect(stderr).toContain("staging into an ephemeral volume");
    expect(await readFile(join(ephemeral, "set", "sub", "b.txt"), "utf8")).toBe("beta");
    await expect(stat(missing)).rejects.toThrow();
  });

  it("when the storage root is not a directory", async () => {
    const ephemeral = await fresh("eph-file");
    const file = join(root, "a-file");
    await writeFile(file, "not a directory");
    const { code, entries } = await fetch(
      [{ uri: `s3://${bucket}/set/a.txt` }],
      ["--storage-root", file, "--team", "t", "--ephemeral-root", ephemeral],
    );
    expect(code).toBe(0);
    expect(entries[0]?.fallback).toContain("is not a directory");
    expect(await readFile(join(ephemeral, "a.txt", "a.txt"), "utf8")).toBe("alpha");
  });
});

describe("--no-fallback (DSFETCH_FALLBACK=0): a prefetch that cannot reach shared storage fails", () => {
  it("exit 7 naming the reason, nothing staged anywhere; the other datasets still staged", async () => {
    const ephemeral = await fresh("eph-nofb");
    const missing = join(root, "not-mounted-nofb");
    const storage = await fresh("nofb-ok");
    for (const [flags, env] of [
      [["--no-fallback"], {}],
      [[], { DSFETCH_FALLBACK: "0" }],
    ] as const) {
      const { code, stdout, stderr } = await fetch(
        [{ uri: `s3://${bucket}/set/` }],
        ["--storage-root", missing, "--team", "t", "--ephemeral-root", ephemeral, ...flags],
        env,
      );
      expect(code, stderr).toBe(7);
      const [entry] = (JSON.parse(stdout) as { datasets: Array<Record<string, unknown>> }).datasets;
      expect(entry).toMatchObject({
        name: "set",
        error: {
          code: "STORAGE",
          message: `set: shared storage is unavailable: ${missing} does not exist (is the shared volume mounted?); not staged into an ephemeral volume instead (--no-fallback)`,
        },
      });
      expect(stderr).not.toContain("staging into an ephemeral volume");
      await expect(readdir(ephemeral)).resolves.toEqual([]);
      await expect(stat(missing)).rejects.toThrow();
    }
    // Where shared storage can take it, --no-fallback changes nothing.
    const { code, entries } = await fetch(
      [{ uri: `s3://${bucket}/set/a.txt` }],
      ["--storage-root", storage, "--team", "t", "--no-fallback"],
    );
    expect(code).toBe(0);
    expect(entries[0]).toMatchObject({ volume: "shared" });
    // A value that is neither 0 nor 1 is refused, not read as either.
    const bad = await fetch(
      [{ uri: `s3://${bucket}/set/a.txt` }],
      ["--storage-root", storage, "--team", "t"],
      {
        DSFETCH_FALLBACK: "no",
      },
    );
    expect(bad.code).toBe(2);
    expect(`${bad.stdout}${bad.stderr}`).toContain('DSFETCH_FALLBACK: \\"no\\" is not 0 or 1');
  });
});

describe("fallback when shared storage does not answer", () => {
  it("a dead network mount (stood in for by a FIFO the start-up probe blocks on): both datasets staged in ephemeral volumes after the bound, said so, shared storage left alone", async () => {
    const storage = await fresh("hung");
    const ephemeral = await fresh("eph-hung");
    const meta = join(storage, "t", "data", ".dsfetch");
    await mkdir(meta, { recursive: true });
    // Opening a FIFO for writing waits for a reader that never comes, as every call on an
    // NFS mount whose server is gone waits for it.
    execFileSync("mkfifo", [join(meta, "probe")]);
    // Only the probe hangs here (the stat and mkdir calls dsfetch itself would make do not
    // block on a FIFO): that dsfetch never touches a storage that gave no answer was checked
    // on a frozen FUSE mount (README, "Many workers, one download"), not here.
    const { code, entries, stderr } = await fetch(
      [{ uri: `s3://${bucket}/set/` }, { uri: `s3://${bucket}/one/blob.bin` }],
      ["--storage-root", storage, "--team", "t", "--ephemeral-root", ephemeral],
      { DSFETCH_STORAGE_TIMEOUT: "1" },
    );
    expect(code).toBe(0);
    expect(entries.map((entry) => entry.volume)).toEqual(["ephemeral", "ephemeral"]);
    for (const entry of entries) {
      expect(entry.fallback).toContain(`${storage} did not answer within 1 s`);
    }
    expect(stderr).toContain("DSFETCH_STORAGE_TIMEOUT");
    expect(await readFile(join(ephemeral, "set", "sub", "b.txt"), "utf8")).toBe("beta");
    expect((await stat(join(ephemeral, "blob.bin", "blob.bin"))).size).toBe(300_000);
    // Nothing written there by dsfetch itself: no lock, no attempt, no manifest.
    expect(await readdir(join(storage, "t", "data"))).toEqual([".dsfetch"]);
    expect(await readdir(meta)).toEqual(["probe"]);
  });

  it("storage that answers: staged there; the probe leaves only its empty file in .dsfetch", async () => {
    const storage = await fresh("answers");
    const { code, entries } = await fetch(
      [{ uri: `s3://${bucket}/one/blob.bin` }],
      ["--storage-root", storage, "--team", "t"],
    );
    expect(code).toBe(0);
    expect(entries[0]?.volume).toBe("shared");
    expect((await stat(join(storage, "t", "data", ".dsfetch", "probe"))).size).toBe(0);
  });
});

describe("ephemeral volumes", () => {
  it("stage into <ephemeral-root>/<name>, its lock in <ephemeral-root>/.dsfetch/locks, released", async () => {
    const ephemeral = await fresh("dyn");
    const { code, entries } = await fetch(
      [
        {
          uri: `s3://${bucket}/set/`,
          name: "scratch",
          volumeOptions: { kind: "dynamic", size: "1Mi" },
        },
      ],
      ["--ephemeral-root", ephemeral],
    );
    expect(code).toBe(0);
    expect(entries[0]).toMatchObject({ volume: "ephemeral", path: join(ephemeral, "scratch") });
    // Taken by processes of one host sharing the volume (ephemeral-once.test.ts), then let go.
    expect(await readdir(join(ephemeral, ".dsfetch", "locks"))).toEqual([]);
  });

  it("too small: exit 7 with needed and available, nothing left behind", async () => {
    const ephemeral = await fresh("small");
    const { code, entries } = await fetch(
      [{ uri: `s3://${bucket}/one/blob.bin`, volumeOptions: { kind: "dynamic", size: "100K" } }],
      ["--ephemeral-root", ephemeral],
    );
    expect(code).toBe(7);
    expect(entries[0]?.error?.code).toBe("NO_SPACE");
    expect(entries[0]?.error?.message).toMatch(
      /needs 293\.0 KiB \(300000 bytes\) but its ephemeral volume holds 97\.7 KiB/,
    );
    const left = await readdir(ephemeral, { recursive: true });
    expect(left.filter((entry) => !entry.startsWith(".dsfetch"))).toEqual([]);
    expect(await readdir(join(ephemeral, ".dsfetch", "tmp")).catch(() => [])).toEqual([]);
  });
});

describe("an ephemeral dataset staged with a larger volume", () => {
  it("is not reused once volumeOptions.size is below its size: exit 7, left in place", async () => {
    const ephemeral = await fresh("shrunk");
    const spec = (size: string) => [
      {
        uri: `s3://${bucket}/one/blob.bin`,
        name: "blob",
        volumeOptions: { kind: "dynamic", size },
      },
    ];
    const first = await fetch(spec("1Mi"), ["--ephemeral-root", ephemeral]);
    expect(first.code, first.stderr).toBe(0);
    const again = await fetch(spec("1Mi"), ["--ephemeral-root", ephemeral]);
    expect(again.entries[0]?.cached).toBe(true);
    const shrunk = await fetch(spec("200K"), ["--ephemeral-root", ephemeral]);
    expect(shrunk.code, shrunk.stderr).toBe(7);
    expect(shrunk.entries[0]?.error).toMatchObject({
      code: "NO_SPACE",
      message: `blob: needs 293.0 KiB (300000 bytes) (staged at ${join(ephemeral, "blob")} with a larger volume) but its ephemeral volume holds 195.3 KiB (200000 bytes)`,
    });
    expect((await stat(join(ephemeral, "blob", "blob.bin"))).size).toBe(300_000);
  });
});

describe("mounts", () => {
  it("--mount links <mount-root>/<name> to the dataset; idempotent", async () => {
    const storage = await fresh("mnt-storage");
    const mounts = await fresh("mnt");
    const flags = ["--storage-root", storage, "--team", "t", "--mount-root", mounts, "--mount"];
    const first = await fetch([{ uri: `s3://${bucket}/set/` }], flags);
    expect(first.code).toBe(0);
    expect(first.entries[0]?.mount).toBe(join(mounts, "set"));
    expect(await readlink(join(mounts, "set"))).toBe(first.entries[0]?.path);
    expect(await readFile(join(mounts, "set", "a.txt"), "utf8")).toBe("alpha");
    const again = await fetch([{ uri: `s3://${bucket}/set/` }], flags);
    expect(again.code).toBe(0);
    expect(await readlink(join(mounts, "set"))).toBe(first.entries[0]?.path);
  });

  it("without --mount, --json says no link was made (mount: null), and none is", async () => {
    const storage = await fresh("nomnt-storage");
    const mounts = await fresh("nomnt");
    const plain = await fetch(
      [{ uri: `s3://${bucket}/set/` }],
      ["--storage-root", storage, "--team", "t", "--mount-root", mounts],
    );
    expect(plain.code, plain.stderr).toBe(0);
    // It named <mount-root>/set, which did not exist (review, 2026-12-05).
    expect(plain.entries[0]?.mount).toBeNull();
    expect(await readdir(mounts)).toEqual([]);
  });

  it("an occupied mount path that is not ours is an error and is left alone", async () => {
    const storage = await fresh("occ-storage");
    const mounts = await fresh("occ");
    await mkdir(join(mounts, "set"));
    await writeFile(join(mounts, "set", "mine.txt"), "keep me");
    await symlink("/etc", join(mounts, "a.txt"));
    const flags = ["--storage-root", storage, "--team", "t", "--mount-root", mounts, "--mount"];
    const dir = await fetch([{ uri: `s3://${bucket}/set/` }], flags);
    expect(dir.code).toBe(7);
    expect(dir.entries[0]?.error?.message).toContain(
      `${join(mounts, "set")} is a real file or directory`,
    );
    expect(await readFile(join(mounts, "set", "mine.txt"), "utf8")).toBe("keep me");
    const link = await fetch([{ uri: `s3://${bucket}/set/a.txt` }], flags);
    expect(link.code).toBe(7);
    expect(link.entries[0]?.error?.message).toContain("which dsfetch did not make");
    expect(await readlink(join(mounts, "a.txt"))).toBe("/etc");
    // A link an earlier run made into another storage root: said so (it read "which dsfetch
    // did not make"), and left alone.
    await rm(join(mounts, "set"), { recursive: true });
    const other = await fresh("occ-other-storage");
    const otherFlags = ["--storage-root", other, "--team", "t", "--mount-root", mounts, "--mount"];
    const earlier = await fetch([{ uri: `s3://${bucket}/set/` }], otherFlags);
    expect(earlier.code).toBe(0);
    const crossed = await fetch([{ uri: `s3://${bucket}/set/` }], flags);
    expect(crossed.code).toBe(7);
    expect(crossed.entries[0]?.error?.message).toContain(
      `${join(mounts, "set")} is a link to ${join(other, "t", "data", "set")}, a dataset of another storage root or team than this run's, it seems (an earlier run's link?)`,
    );
    expect(crossed.entries[0]?.error?.hint).toContain(
      `remove the link (rm ${join(mounts, "set")})`,
    );
    expect(await readlink(join(mounts, "set"))).toBe(join(other, "t", "data", "set"));
  });

  it("a mount root that is a file: the error names the dataset, the link, ENOTDIR and --mount-root", async () => {
    const storage = await fresh("file-root-storage");
    const mounts = join(await fresh("file-root"), "mounts");
    await writeFile(mounts, "not a directory");
    const flags = ["--storage-root", storage, "--team", "t", "--mount-root", mounts, "--mount"];
    const run = await fetch([{ uri: `s3://${bucket}/set/a.txt`, name: "a" }], flags);
    expect(run.code).toBe(7);
    const error = run.entries[0]?.error;
    // It said "cannot write to <path>: ENOTDIR", hinting at the storage roots.
    expect(error?.message).toBe(
      `a: cannot make the mount link ${join(mounts, "a")}: a part of its path is a file, not a directory (ENOTDIR)`,
    );
    expect(error?.hint).toContain("--mount-root");
    expect(await readFile(mounts, "utf8")).toBe("not a directory");
  });

  it("a file where <team>/data or <team> goes: the reason names the file in the way, not a bare EEXIST", async () => {
    const flags = (storage: string) => ["--storage-root", storage, "--team", "t", "--no-fallback"];
    const storage = await fresh("data-a-file");
    await mkdir(join(storage, "t"));
    await writeFile(join(storage, "t", "data"), "not a directory");
    const dataFile = await fetch([{ uri: `s3://${bucket}/set/a.txt`, name: "a" }], flags(storage));
    expect(dataFile.code).toBe(7);
    expect(dataFile.entries[0]?.error?.message).toContain(
      `${join(storage, "t", "data")} exists and is not a directory (move it away: datasets go in a directory there)`,
    );
    // plan says so too (a file passed its write check: it said "yes").
    const plan = await runCli(["plan", "--datasets", "-", "--json", ...flags(storage)], {
      env: testEnv(),
      stdin: JSON.stringify([{ uri: `s3://${bucket}/set/a.txt`, name: "a" }]),
    });
    expect(plan.code, plan.stderr).toBe(7);
    expect(JSON.parse(plan.stdout).datasets[0].error.message).toContain(
      `${join(storage, "t", "data")} exists and is not a directory`,
    );
    const other = await fresh("team-a-file");
    await writeFile(join(other, "t"), "not a directory");
    const teamFile = await fetch([{ uri: `s3://${bucket}/set/a.txt`, name: "a" }], flags(other));
    expect(teamFile.code).toBe(7);
    expect(teamFile.entries[0]?.error?.message).toContain(
      `${join(other, "t")} is in the way: it exists and is not a directory, and ${join(other, "t", "data")} goes below it`,
    );
    expect(await readFile(join(other, "t"), "utf8")).toBe("not a directory");
  });
});
