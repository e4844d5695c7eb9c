// A job holds each dataset from the moment it is staged, not once all its datasets are:
// a refresh by another job or a prefetch meanwhile keeps the version the job staged, and one
// that slipped in just before the lease is noticed (the dataset is staged again, and the job
// reports the version it will read).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { leaseStaged, type Replaced, releaseLeases } from "../../src/agent/leases.ts";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import type { DsfetchEvent } from "../../src/events.ts";
import { stage } from "../../src/stage/stage.ts";
import type { StagedDataset } from "../../src/stage/stage-dataset.ts";
import { withManifest } from "../../src/stage/staged-manifest.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import type { Manifest } from "../../src/volumes/manifest.ts";
import { pendingManifestPath, treeIdentity } from "../../src/volumes/occupant.ts";
import { prune } from "../../src/volumes/prune.ts";
import { type Lease, takeLease } from "../../src/volumes/usage.ts";
import { baseEnv, CLI_ENTRY, runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { testManifest } from "../harness/manifests.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

/**
 * Set by a test: runs just before a lease is taken (after the dataset was staged); just
 * before a publish's sync.
 */
const hooks = vi.hoisted(() => ({
  beforeLease: undefined as (() => Promise<void>) | undefined,
  beforeSync: undefined as (() => Promise<void>) | undefined,
  /** After each read of the leases (activeLeases), with what it found. */
  afterLeasesRead: undefined as ((found: string[]) => Promise<void>) | undefined,
}));

vi.mock("../../src/volumes/sync-tree.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/sync-tree.ts")>();
  return {
    ...actual,
    syncTree: async (...args: Parameters<typeof actual.syncTree>) => {
      const hook = hooks.beforeSync;
      hooks.beforeSync = undefined;
      await hook?.();
      return actual.syncTree(...args);
    },
  };
});

vi.mock("../../src/volumes/usage.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/usage.ts")>();
  return {
    ...actual,
    takeLease: async (location: Parameters<typeof actual.takeLease>[0]) => {
      const hook = hooks.beforeLease;
      hooks.beforeLease = undefined;
      await hook?.();
      return actual.takeLease(location);
    },
    activeLeases: async (...args: Parameters<typeof actual.activeLeases>) => {
      const found = await actual.activeLeases(...args);
      await hooks.afterLeasesRead?.(found);
      return found;
    },
    activeLeasesBeforeRemoval: async (
      ...args: Parameters<typeof actual.activeLeasesBeforeRemoval>
    ) => {
      const found = await actual.activeLeasesBeforeRemoval(...args);
      await hooks.afterLeasesRead?.(found);
      return found;
    },
  };
});

let root: string;
let bucket: string;
let proxy: FaultProxy;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-lease-at-staging-"));
  bucket = await createBucket("leasestage");
  await putObject(bucket, "big/blob.bin", randomBytes(2_000_000));
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterEach(() => {
  hooks.beforeLease = undefined;
  hooks.beforeSync = undefined;
  hooks.afterLeasesRead = undefined;
  proxy.throttle(undefined);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

/** One dataset entry, with the test server's endpoint and keys, parsed as a config is. */
function datasetsOf(entry: Record<string, string>) {
  const info = s3Info();
  return parseDatasetsValue(
    [
      {
        ...entry,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
        endpoint: info.endpoint,
        region: info.region,
      },
    ],
    "test",
    {},
  );
}

const leaseFiles = (storage: string, dir: string) =>
  readdir(join(storage, "t", "data", ".dsfetch", "leases", dir)).catch(() => [] as string[]);

/** A folder dataset `<prefix>/` holding a.txt, published by a prefetch into a storage of its own. */
async function prefetched(prefix: string) {
  const storage = await mkdtemp(join(root, `${prefix}-`));
  await putObject(bucket, `${prefix}/a.txt`, "one");
  const flags = ["--storage-root", storage, "--team", "t"];
  const entry = { uri: `s3://${bucket}/${prefix}/` };
  const first = await runCli(["fetch", "--datasets", "-", ...flags], {
    env: testEnv(),
    stdin: JSON.stringify([entry]),
  });
  expect(first.code).toBe(0);
  return { storage, data: join(storage, "t", "data"), flags, entry };
}

/** The dataset `dir` as a job staged it: the version published now, with its manifest. */
async function stagedNow(data: string, dir: string) {
  const location = locationIn(data, dir);
  const manifest = JSON.parse(await readFile(location.manifestPath, "utf8")) as Manifest;
  return withManifest(
    {
      name: dir,
      uri: manifest.uri,
      kind: manifest.kind,
      etag: null,
      versionId: null,
      path: location.path,
      mount: `/data/${dir}`,
      volume: "shared",
      bytes: manifest.bytes,
      objects: manifest.files.length,
      cached: true,
      verification: { md5: manifest.files.length },
      seconds: 0,
      retries: 0,
      refetchedBytes: 0,
    },
    manifest,
  );
}

describe("leases from the moment a dataset is staged", () => {
  it("run: a dataset staged first is held while a second one downloads; a refresh meanwhile keeps it", async () => {
    const storage = await mkdtemp(join(root, "run-"));
    await putObject(bucket, "labels/a.txt", "one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const labels = { uri: `s3://${bucket}/labels/` };
    const info = s3Info();
    // The second dataset through a throttled proxy: several seconds of download.
    const big = { uri: `s3://${bucket}/big/blob.bin`, name: "big", endpoint: proxy.endpoint };
    const datasets = join(storage, "datasets.json");
    await writeFile(datasets, JSON.stringify([labels, big]));
    proxy.throttle(100_000);
    const job = spawn(
      process.execPath,
      [
        CLI_ENTRY,
        "run",
        "--datasets",
        datasets,
        ...flags,
        "--mount-root",
        join(storage, "mnt"),
        "--",
        "sh",
        "-c",
        'ls "$DSFETCH_PATH_LABELS"',
      ],
      { env: baseEnv(testEnv()), stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    job.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    job.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => job.on("close", resolve));
    // labels staged and the big one under way: the job holds labels already.
    await expect
      .poll(async () => (await leaseFiles(storage, "labels")).length, { timeout: 20_000 })
      .toBe(1);
    expect(proxy.getBodyBytes()).toBeLessThan(2_000_000);
    await putObject(bucket, "labels/b.txt", "two");
    const refresh = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env: testEnv(),
      stdin: JSON.stringify([labels]),
    });
    expect(refresh.code).toBe(0);
    expect(JSON.parse(refresh.stdout).datasets[0]).toMatchObject({
      cached: true,
      keptInUse: [expect.stringMatching(/ pid \d+$/)],
    });
    proxy.throttle(undefined);
    expect(await exited).toBe(0);
    // The job read the version it staged.
    expect(stdout.trim().split("\n")).toEqual(["a.txt"]);
    expect(stderr).not.toContain("error");
    // Released when the command ended.
    expect(await leaseFiles(storage, "labels")).toEqual([]);
    expect(info.endpoint).not.toBe(proxy.endpoint);
  });

  it("replaced between its staging and its lease: staged again, and the job holds and reports the version now published", async () => {
    const storage = await mkdtemp(join(root, "race-"));
    await putObject(bucket, "race/a.txt", "one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const entry = { uri: `s3://${bucket}/race/` };
    const first = await runCli(["fetch", "--datasets", "-", ...flags], {
      env: testEnv(),
      stdin: JSON.stringify([entry]),
    });
    expect(first.code).toBe(0);
    // This job reuses the published version; just before it takes its lease, the source
    // changes and a prefetch (which sees no lease yet) refreshes it.
    hooks.beforeLease = async () => {
      await putObject(bucket, "race/b.txt", "two");
      const refresh = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
        env: testEnv(),
        stdin: JSON.stringify([entry]),
      });
      expect(JSON.parse(refresh.stdout).datasets[0]).toMatchObject({ cached: false });
    };
    const datasets = datasetsOf(entry);
    const events: DsfetchEvent[] = [];
    const result = await stage(datasets, resolveSettings({ storageRoot: storage, team: "t" }, {}), {
      lease: true,
      onEvent: (event) => events.push(event),
    });
    try {
      expect(result.ok).toBe(true);
      expect(result.datasets[0]).toMatchObject({ ok: true, cached: true, objects: 2 });
      expect(events).toContainEqual(
        expect.objectContaining({
          type: "info",
          message: expect.stringContaining(
            "replaced by another version just before this job held it",
          ),
        }),
      );
      expect(result.leases).toHaveLength(1);
      expect(await leaseFiles(storage, "race")).toHaveLength(1);
    } finally {
      await releaseLeases(result.leases);
    }
    expect(await leaseFiles(storage, "race")).toEqual([]);
  });

  it("a job that takes its lease while a refresh syncs (after the refresh's first look): the refresh stands down at its swap", async () => {
    const storage = await mkdtemp(join(root, "at-swap-"));
    await putObject(bucket, "swap/a.txt", "one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const entry = { uri: `s3://${bucket}/swap/` };
    const first = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env: testEnv(),
      stdin: JSON.stringify([entry]),
    });
    expect(first.code).toBe(0);
    const dir = JSON.parse(first.stdout).datasets[0].path as string;
    await putObject(bucket, "swap/b.txt", "two");
    const data = join(storage, "t", "data");
    let lease: Lease | undefined;
    // The refresh has downloaded and found no lease; while it syncs, a job leases the dataset.
    hooks.beforeSync = async () => {
      lease = await takeLease(locationIn(data, "swap"));
    };
    const datasets = datasetsOf(entry);
    const warnings: string[] = [];
    try {
      const result = await stage(
        datasets,
        resolveSettings({ storageRoot: storage, team: "t" }, {}),
        {
          onEvent: (event) => {
            if (event.type === "warning") warnings.push(event.message);
          },
        },
      );
      expect(lease).toBeDefined();
      expect(result.datasets[0]).toMatchObject({
        ok: true,
        cached: true,
        objects: 1,
        keptInUse: [expect.stringMatching(/ pid \d+$/)],
      });
      expect(warnings.join("\n")).toContain("kept as it is");
      expect((await readdir(dir)).sort()).toEqual(["a.txt"]);
      // Its download and its pending manifest are gone; the kept version's manifest stays.
      expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
      expect(await readdir(join(data, ".dsfetch", "manifests"))).toEqual(["swap.json"]);
      // Its removal notice is down: a job leasing it now does not wait.
      expect(await readdir(join(data, ".dsfetch", "removals", "swap"))).toEqual([]);
    } finally {
      await lease?.release();
    }
  });

  it("a refresh on a machine whose clock is ahead of the storage's keeps a dataset in use by another machine's job", async () => {
    // The job's lease was refreshed just now, by a write: the storage's time. By the
    // refreshing machine's clock, 10 minutes ahead, it looked 10 minutes old (stale after 5):
    // removed, and the folder swapped under the job (review, 2026-12-06).
    const { data, entry } = await prefetched("skew");
    await putObject(bucket, "skew/b.txt", "two");
    const leases = join(data, ".dsfetch", "leases", "skew");
    await mkdir(leases, { recursive: true });
    await writeFile(join(leases, "otherhost-ns1.456.cccccccc"), "");
    const storageTime = Date.now.bind(Date);
    const ahead = vi.spyOn(Date, "now").mockImplementation(() => storageTime() + 10 * 60_000);
    try {
      const result = await stage(
        datasetsOf(entry),
        resolveSettings({ storageRoot: dirname(dirname(data)), team: "t" }, {}),
        {},
      );
      expect(result.datasets[0]).toMatchObject({
        ok: true,
        cached: true,
        keptInUse: ["otherhost-ns1 pid 456"],
      });
    } finally {
      ahead.mockRestore();
    }
    expect(await readdir(join(data, "skew"))).toEqual(["a.txt"]);
    expect(await leaseFiles(dirname(dirname(data)), "skew")).toEqual([
      "otherhost-ns1.456.cccccccc",
    ]);
  });

  it("a refresh keeps a dataset whose leases cannot be read (taken to be in use)", async () => {
    const storage = await mkdtemp(join(root, "unreadable-"));
    await putObject(bucket, "unread/a.txt", "one");
    const flags = ["--storage-root", storage, "--team", "t"];
    const entry = { uri: `s3://${bucket}/unread/` };
    const fetchJson = () =>
      runCli(["fetch", "--datasets", "-", "--json", ...flags], {
        env: testEnv(),
        stdin: JSON.stringify([entry]),
      });
    expect((await fetchJson()).code).toBe(0);
    await putObject(bucket, "unread/b.txt", "two");
    const meta = join(storage, "t", "data", ".dsfetch");
    // (Its directory was made at publish: taken away first.)
    await rm(join(meta, "leases", "unread"), { recursive: true, force: true });
    await mkdir(join(meta, "leases"), { recursive: true });
    await writeFile(join(meta, "leases", "unread"), "not a directory");
    const again = await fetchJson();
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout).datasets[0]).toMatchObject({
      cached: true,
      objects: 1,
      keptInUse: [
        // Made first (activeLeasesBeforeRemoval), refused: EEXIST.
        expect.stringMatching(/^unknown holders \(its leases could not be read: (ENOTDIR|EEXIST)/),
      ],
    });
    expect(await readdir(join(storage, "t", "data", "unread"))).toEqual(["a.txt"]);
  });

  describe("a lease taken just after a refresh's or a prune's last look at the leases", () => {
    /**
     * Runs `leaseStaged` for `staged` from inside the remover's last look (it found no lease):
     * the job's lease is written, then the remover is let go after `holdMs`. Whether the job
     * had its answer before the remover went on, and the answer.
     */
    function leaseDuringLastLook(storage: string, staged: StagedDataset, holdMs = 400) {
      const job: {
        answeredBeforeRemoval?: boolean;
        taken?: Promise<Lease | Replaced>;
        waitedFor: string[];
        leasesFound?: string[];
      } = { waitedFor: [] };
      return {
        job,
        hook: async () => {
          let answered = false;
          const taken = leaseStaged(staged, {
            onWaiting: (holders) => job.waitedFor.push(...holders),
          });
          job.taken = taken;
          taken.then(
            () => (answered = true),
            () => (answered = true),
          );
          await expect
            .poll(async () => (await leaseFiles(storage, staged.name)).length, { timeout: 5_000 })
            .toBe(1);
          await sleep(holdMs);
          job.answeredBeforeRemoval = answered;
        },
      };
    }

    it("refresh: the job waits for the swap, then finds the dataset replaced (staged again by stage())", async () => {
      const { storage, data, entry } = await prefetched("look");
      const staged = await stagedNow(data, "look");
      await putObject(bucket, "look/b.txt", "two");
      const { job, hook } = leaseDuringLastLook(storage, staged);
      // The refresh's last look is its first read of the leases after its sync began.
      let synced = false;
      hooks.beforeSync = async () => {
        synced = true;
      };
      hooks.afterLeasesRead = async (found) => {
        if (!synced) return;
        hooks.afterLeasesRead = undefined;
        job.leasesFound = found;
        await hook();
      };
      const refresh = await stage(
        datasetsOf(entry),
        resolveSettings({ storageRoot: storage, team: "t" }, {}),
      );
      expect(refresh.datasets[0]).toMatchObject({ ok: true, cached: false, objects: 2 });
      expect(job.leasesFound).toEqual([]);
      expect(job.answeredBeforeRemoval).toBe(false);
      expect(job.waitedFor).toEqual([expect.stringMatching(new RegExp(` pid ${process.pid}$`))]);
      const taken = await job.taken;
      if (taken !== undefined && "release" in taken) await taken.release();
      // Not held: the version it staged is gone from the path; stage() stages it again.
      expect(taken).toMatchObject({ replacedBy: { kind: "prefix", uri: entry.uri } });
      expect((await readdir(join(data, "look"))).sort()).toEqual(["a.txt", "b.txt"]);
      expect(await leaseFiles(storage, "look")).toEqual([]);
      expect(await readdir(join(data, ".dsfetch", "removals", "look"))).toEqual([]);
    });

    it("prune: the job waits for the removal, then finds the dataset gone", async () => {
      const { storage, data } = await prefetched("plook");
      const staged = await stagedNow(data, "plook");
      const { job, hook } = leaseDuringLastLook(storage, staged);
      // Prune reads the leases twice: in its listing, then under the dataset's lock (the last).
      let reads = 0;
      hooks.afterLeasesRead = async (found) => {
        reads += 1;
        if (reads < 2) return;
        hooks.afterLeasesRead = undefined;
        job.leasesFound = found;
        await hook();
      };
      const result = await prune(storage, "t", { olderThanMs: 0, lockStaleMs: 60_000 });
      expect(result.removed.map((entry) => entry.name)).toEqual(["plook"]);
      expect(job.leasesFound).toEqual([]);
      expect(job.answeredBeforeRemoval).toBe(false);
      expect(job.waitedFor).toHaveLength(1);
      const taken = await job.taken;
      if (taken !== undefined && "release" in taken) await taken.release();
      expect(taken).toEqual({ replacedBy: undefined });
      expect(await readdir(data)).toEqual([".dsfetch"]);
      // The notice is down (prune takes its emptied directory away too).
      const notices = await readdir(join(data, ".dsfetch", "removals", "plook")).catch(
        (error: NodeJS.ErrnoException) => (error.code === "ENOENT" ? [] : Promise.reject(error)),
      );
      expect(notices).toEqual([]);
    });
  });

  it("a refresh whose removal notice was not kept fresh up to its swap posts a new one and reads the leases again", async () => {
    const { storage, data, entry } = await prefetched("rlate");
    await putObject(bucket, "rlate/b.txt", "two");
    let synced = false;
    hooks.beforeSync = async () => {
      synced = true;
    };
    const real = performance.now.bind(performance);
    const clock = vi.spyOn(performance, "now");
    let readsAtSwap = 0;
    try {
      // After the refresh's last look, its clock jumps 31 s with no refresh of its notice.
      hooks.afterLeasesRead = async () => {
        if (!synced) return;
        readsAtSwap += 1;
        if (readsAtSwap === 1) clock.mockImplementation(() => real() + 31_000);
      };
      const result = await stage(
        datasetsOf(entry),
        resolveSettings({ storageRoot: storage, team: "t" }, {}),
      );
      expect(result.datasets[0]).toMatchObject({ ok: true, cached: false, objects: 2 });
    } finally {
      clock.mockRestore();
    }
    expect(readsAtSwap).toBe(2);
    expect((await readdir(join(data, "rlate"))).sort()).toEqual(["a.txt", "b.txt"]);
    expect(await readdir(join(data, ".dsfetch", "removals", "rlate"))).toEqual([]);
  });

  it("prune whose removal notice was not kept fresh (jobs may have stopped waiting) keeps the dataset", async () => {
    const { storage, data } = await prefetched("plate");
    let reads = 0;
    const real = performance.now.bind(performance);
    const clock = vi.spyOn(performance, "now");
    try {
      // After prune's last look, its clock jumps 31 s with no refresh of its notice landed.
      hooks.afterLeasesRead = async () => {
        reads += 1;
        if (reads < 2) return;
        hooks.afterLeasesRead = undefined;
        clock.mockImplementation(() => real() + 31_000);
      };
      const result = await prune(storage, "t", { olderThanMs: 0, lockStaleMs: 60_000 });
      expect(result.removed).toEqual([]);
      expect(result.kept).toEqual([
        expect.objectContaining({
          name: "plate",
          keptBecause: expect.stringContaining("answered too slowly to remove it safely"),
        }),
      ]);
    } finally {
      clock.mockRestore();
    }
    expect(reads).toBe(2);
    expect(await readdir(join(data, "plate"))).toEqual(["a.txt"]);
    // Read-only again (made writable to be moved).
    expect((await stat(join(data, "plate"))).mode & 0o777).toBe(0o555);
    expect(await readdir(join(data, ".dsfetch", "manifests"))).toEqual(["plate.json"]);
    expect(await readdir(join(data, ".dsfetch", "removals", "plate"))).toEqual([]);
  });

  it("removal notices that cannot be read fail the lease with a storage error, not as none", async () => {
    const { storage, data } = await prefetched("nread");
    await rm(join(data, ".dsfetch", "removals", "nread"), { recursive: true, force: true });
    await mkdir(join(data, ".dsfetch", "removals"), { recursive: true });
    await writeFile(join(data, ".dsfetch", "removals", "nread"), "not a directory");
    const staged = await stagedNow(data, "nread");
    await expect(leaseStaged(staged)).rejects.toMatchObject({
      code: "STORAGE",
      message: expect.stringContaining("removals"),
    });
    // Its lease went with the failure.
    expect(await leaseFiles(storage, "nread")).toEqual([]);
  });

  it("a dataset another worker has just published (its manifest not in yet: pending) is held, not staged again", async () => {
    const data = await mkdtemp(join(root, "pending-"));
    const location = locationIn(data, "ds");
    await mkdir(location.path, { recursive: true });
    await writeFile(join(location.path, "f"), "abc");
    await mkdir(join(location.tmpDir, "ds.other-ns1.1.0123456789abcdef"), { recursive: true });
    const manifest = testManifest("s3://b/ds", "0123456789abcdef0123456789abcdef", "f");
    const tree = await treeIdentity(location.path, location.tmpDir);
    await mkdir(join(data, ".dsfetch", "manifests"), { recursive: true });
    await writeFile(
      pendingManifestPath(location, join(location.tmpDir, "ds.other-ns1.1.0123456789abcdef")),
      JSON.stringify({ ...manifest, tree }),
    );
    const staged = withManifest(
      {
        name: "ds",
        uri: manifest.uri,
        kind: "object",
        etag: manifest.etag ?? null,
        versionId: null,
        path: location.path,
        mount: "/data/ds",
        volume: "shared",
        bytes: 3,
        objects: 1,
        cached: false,
        verification: { md5: 1 },
        seconds: 0,
        retries: 0,
        refetchedBytes: 0,
      },
      manifest,
    );
    const lease = await leaseStaged(staged);
    expect(lease).not.toHaveProperty("replacedBy");
    if ("release" in lease) await lease.release();
    // With another version's pending manifest there instead: replaced.
    await writeFile(
      pendingManifestPath(location, join(location.tmpDir, "ds.other-ns1.1.0123456789abcdef")),
      JSON.stringify({ ...manifest, etag: "ffffffffffffffffffffffffffffffff", tree }),
    );
    expect(await leaseStaged(staged)).toMatchObject({
      replacedBy: { etag: "ffffffffffffffffffffffffffffffff" },
    });
  });

  describe("pinned versions", () => {
    let versioned: string;
    beforeAll(async () => {
      versioned = await createBucket("leasepin", { versioned: true });
    });

    async function stagePinned(storage: string, entry: Record<string, string>) {
      const datasets = datasetsOf(entry);
      const events: DsfetchEvent[] = [];
      const result = await stage(
        datasets,
        resolveSettings({ storageRoot: storage, team: "t" }, {}),
        { lease: true, onEvent: (event) => events.push(event) },
      );
      await releaseLeases(result.leases);
      return { result, events };
    }

    it("a versionId replaced by another configuration's pinned version just before the lease: OBJECT_CHANGED at once, naming both", async () => {
      const storage = await mkdtemp(join(root, "pin-version-"));
      const one = await putObject(versioned, "model.bin", "version one");
      const two = await putObject(versioned, "model.bin", "version two!");
      const uri = `s3://${versioned}/model.bin`;
      const flags = ["--storage-root", storage, "--team", "t"];
      let refreshes = 0;
      hooks.beforeLease = async () => {
        refreshes += 1;
        const other = await runCli(["fetch", "--datasets", "-", ...flags], {
          env: testEnv(),
          stdin: JSON.stringify([{ uri, versionId: two.versionId }]),
        });
        expect(other.code).toBe(0);
      };
      const { result } = await stagePinned(storage, { uri, versionId: one.versionId as string });
      expect(refreshes).toBe(1);
      expect(result.datasets[0]).toMatchObject({
        ok: false,
        error: {
          code: "OBJECT_CHANGED",
          message: expect.stringContaining("another configuration stages it under the same name"),
          hint: expect.stringContaining("another name"),
        },
      });
      expect(result.leases).toEqual([]);
    });

    it("an etag pinned alone: a re-upload of the same bytes (another versionId) is the same dataset, not staged again", async () => {
      const storage = await mkdtemp(join(root, "pin-etag-"));
      const { etag } = await putObject(versioned, "labels.bin", "same bytes");
      const uri = `s3://${versioned}/labels.bin`;
      const flags = ["--storage-root", storage, "--team", "t"];
      expect(
        (
          await runCli(["fetch", "--datasets", "-", ...flags], {
            env: testEnv(),
            stdin: JSON.stringify([{ uri, etag }]),
          })
        ).code,
      ).toBe(0);
      hooks.beforeLease = async () => {
        await putObject(versioned, "labels.bin", "same bytes");
        const again = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
          env: testEnv(),
          stdin: JSON.stringify([{ uri, etag }]),
        });
        // The same bytes: nothing downloaded (review, 2026-12-06: it was staged again).
        expect(JSON.parse(again.stdout).datasets[0]).toMatchObject({ cached: true });
      };
      const { result, events } = await stagePinned(storage, { uri, etag });
      expect(result.datasets[0]).toMatchObject({ ok: true, cached: true });
      expect(events.filter((event) => event.type === "info")).toEqual([]);
    });

    it("an etag pinned alone, in use: after a re-upload of the same bytes, another job reuses the copy staged (not an ephemeral download)", async () => {
      const storage = await mkdtemp(join(root, "pin-etag-used-"));
      const { etag } = await putObject(versioned, "weights.bin", "the same bytes");
      const uri = `s3://${versioned}/weights.bin`;
      const settings = resolveSettings({ storageRoot: storage, team: "t" }, {});
      const job = await stage(datasetsOf({ uri, etag }), settings, { lease: true });
      expect(job.datasets[0]).toMatchObject({ ok: true, volume: "shared" });
      try {
        await putObject(versioned, "weights.bin", "the same bytes");
        const events: DsfetchEvent[] = [];
        const other = await stage(datasetsOf({ uri, etag }), settings, {
          onEvent: (event) => events.push(event),
        });
        expect(other.datasets[0]).toMatchObject({
          ok: true,
          cached: true,
          volume: "shared",
          path: (job.datasets[0] as { path: string }).path,
        });
        expect(events.filter((event) => event.type === "warning")).toEqual([]);
      } finally {
        await releaseLeases(job.leases);
      }
    });
  });

  it("a source that changed kind (a folder, now an object of the same URI) is kept while a job uses it, replaced after", async () => {
    const storage = await mkdtemp(join(root, "kind-"));
    await putObject(bucket, "kind/a.txt", "one");
    const settings = resolveSettings({ storageRoot: storage, team: "t" }, {});
    const uri = `s3://${bucket}/kind`;
    const path = join(storage, "t", "data", "kind");
    const job = await stage(datasetsOf({ uri }), settings, { lease: true });
    expect(job.datasets[0]).toMatchObject({ ok: true, kind: "prefix", path });
    try {
      await putObject(bucket, "kind", "an object now");
      const other = await stage(datasetsOf({ uri }), settings);
      // Review, 2026-12-06: the object was swapped in under the job (no lease looked at).
      expect(other.datasets[0]).toMatchObject({
        ok: true,
        cached: true,
        kind: "prefix",
        keptInUse: [expect.stringMatching(/pid \d+/)],
      });
      expect(await readdir(path)).toEqual(["a.txt"]);
      expect(await readFile(join(path, "a.txt"), "utf8")).toBe("one");
    } finally {
      await releaseLeases(job.leases);
    }
    const after = await stage(datasetsOf({ uri }), settings);
    expect(after.datasets[0]).toMatchObject({ ok: true, cached: false, kind: "object" });
    expect(await readdir(path)).toEqual(["kind"]);
  });

  it("a prefetch (no lease asked) holds nothing", async () => {
    const storage = await mkdtemp(join(root, "prefetch-"));
    await putObject(bucket, "pre/a.txt", "one");
    const datasets = datasetsOf({ uri: `s3://${bucket}/pre/` });
    const result = await stage(datasets, resolveSettings({ storageRoot: storage, team: "t" }, {}));
    expect(result.ok).toBe(true);
    expect(result.leases).toEqual([]);
    expect(await leaseFiles(storage, "pre")).toEqual([]);
  });
});
