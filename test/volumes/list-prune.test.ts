// `dsfetch list` and `dsfetch prune` on real published datasets.
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { listDatasets } from "../../src/volumes/catalog.ts";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import { acquireLock } from "../../src/volumes/lock.ts";
import { removeTreeReporting } from "../../src/volumes/permissions.ts";
import { prune } from "../../src/volumes/prune.ts";
import { markUsed } from "../../src/volumes/usage.ts";
import { file, tar } from "../archive/tar-helpers.ts";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let storage: string;
let bucket: string;
let data: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-prune-"));
  bucket = await createBucket("prune");
  await putObject(bucket, "a/file.bin", Buffer.alloc(1000, 1));
  await putObject(bucket, "b/file.bin", Buffer.alloc(2000, 2));
  await putObject(bucket, "c/file.bin", Buffer.alloc(3000, 3));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  storage = await mkdtemp(join(root, "storage-"));
  data = join(storage, "ml", "data");
  const datasets = ["a", "b", "c"].map((name) => ({ uri: `s3://${bucket}/${name}/`, name }));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml"],
    {
      env: testEnv(),
      stdin: JSON.stringify(datasets),
    },
  );
  expect(result.code).toBe(0);
});

const flags = () => ["--storage-root", storage, "--team", "ml", "--json"];

async function age(name: string, days: number): Promise<void> {
  const when = new Date(Date.now() - days * 86_400_000);
  await utimes(join(data, ".dsfetch", "used", name), when, when);
}

async function published(): Promise<string[]> {
  return (await readdir(data)).filter((name) => !name.startsWith(".")).sort();
}

/** `prune --older-than 1d --json`, exit 0: what it removed and what it kept, and why. */
async function pruneOlderThanADay() {
  const result = await runCli(["prune", "--older-than", "1d", ...flags()], { env: testEnv() });
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as {
    removed: unknown[];
    kept: Array<{ name: string; keptBecause: string }>;
  };
}

describe("list", () => {
  it("lists every published dataset with size, source, last use and whether it is in use", async () => {
    const result = await runCli(["list", ...flags()], { env: testEnv() });
    expect(result.code).toBe(0);
    const { datasets } = JSON.parse(result.stdout) as { datasets: Array<Record<string, unknown>> };
    expect(datasets.map((d) => [d.name, d.bytes, d.uri, d.inUse])).toEqual([
      ["a", 1000, `s3://${bucket}/a/`, []],
      ["b", 2000, `s3://${bucket}/b/`, []],
      ["c", 3000, `s3://${bucket}/c/`, []],
    ]);
    expect(Date.now() - Date.parse(String(datasets[0]?.lastUsed))).toBeLessThan(60_000);
  });
});

describe("list and prune: a storage root that is not there", () => {
  it("is an error (exit 7) naming it, not an empty list: a volume not mounted, a typo", async () => {
    const missing = join(root, "not-mounted");
    const aFile = join(root, "a-file");
    await writeFile(aFile, "");
    for (const [storageRoot, why] of [
      [missing, `${missing} does not exist (is the shared volume mounted?)`],
      [aFile, `${aFile} is not a directory`],
    ] as const) {
      for (const command of [["list"], ["prune", "--older-than", "7d"]]) {
        const result = await runCli([...command, "--storage-root", storageRoot, "--team", "ml"], {
          env: testEnv(),
        });
        expect(result.code, `${command[0]} ${storageRoot}: ${result.stderr}`).toBe(7);
        expect(result.stderr).toContain(why);
      }
    }
    // A root that is there, with nothing published for the team yet: an empty list.
    const empty = await runCli(["list", "--storage-root", storage, "--team", "other", "--json"], {
      env: testEnv(),
    });
    expect(empty.code, empty.stderr).toBe(0);
    expect(JSON.parse(empty.stdout)).toMatchObject({ datasets: [] });
    // Said, with the teams there (a --team typo listed "0 datasets" and pruned nothing, exit 0).
    const said = `${join(storage, "other")} does not exist: team "other" has staged nothing under ${storage} (teams there: ml); check --team (DSFETCH_TEAM)`;
    expect(empty.stderr).toContain(`dsfetch list: warning: ${said}`);
    const pruned = await runCli(
      ["prune", "--older-than", "7d", "--storage-root", storage, "--team", "other"],
      { env: testEnv() },
    );
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.stderr).toContain(`dsfetch prune: warning: ${said}`);
    // Not for a team that is there.
    const there = await runCli(["list", "--storage-root", storage, "--team", "ml"], {
      env: testEnv(),
    });
    expect(there.stderr).not.toContain("warning");
  });
});

describe("list and prune: an archive's size", () => {
  it("is what it expanded to on the storage, not its download, so that --max-size can bring the total under the cap", async () => {
    // 1 MB of zeros in a .tar.gz of ~1 KB.
    const archive = gzipSync(tar(file("zeros.bin", Buffer.alloc(1_000_000))));
    expect(archive.length).toBeLessThan(10_000);
    await putObject(bucket, "z.tar.gz", archive);
    const fetched = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml"],
      { env: testEnv(), stdin: JSON.stringify([{ uri: `s3://${bucket}/z.tar.gz` }]) },
    );
    expect(fetched.code, fetched.stderr).toBe(0);
    const listed = await runCli(["list", ...flags()], { env: testEnv() });
    const { datasets } = JSON.parse(listed.stdout) as { datasets: Array<Record<string, unknown>> };
    expect(datasets.find((d) => d.name === "z")?.bytes).toBe(1_000_000);
    // a, b, c (6,000 bytes) and z (1,000,000): over 100 KB until z, the least recently used, goes.
    await age("z", 3);
    const pruned = await runCli(["prune", "--max-size", "100K", ...flags()], { env: testEnv() });
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toMatchObject({
      removed: [{ name: "z", bytes: 1_000_000 }],
      remainingBytes: 6000,
    });
    expect(await published()).toEqual(["a", "b", "c"]);
  });
});

describe("prune", () => {
  it("by age: removes only datasets unused for longer, and their manifests", async () => {
    await age("a", 10);
    await age("b", 3);
    const result = await runCli(["prune", "--older-than", "7d", ...flags()], { env: testEnv() });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({
      removed: [{ name: "a", bytes: 1000 }],
      freedBytes: 1000,
    });
    expect(await published()).toEqual(["b", "c"]);
    await expect(stat(join(data, ".dsfetch", "manifests", "a.json"))).rejects.toThrow();
    expect(await readdir(join(data, ".dsfetch", "tmp"))).toEqual([]);
    // Nothing of it is left beside the others: its lease and removal-notice directories were
    // left empty for every dataset ever pruned.
    for (const dir of ["leases", "removals", "used", "failures"]) {
      const left = await readdir(join(data, ".dsfetch", dir)).catch(() => []);
      expect(left, dir).not.toContain("a");
      expect(left, dir).not.toContain("a.json");
    }
  });

  it("to a size budget: least recently used first", async () => {
    await age("c", 5);
    await age("a", 2);
    const result = await runCli(["prune", "--max-size", "2500", ...flags()], { env: testEnv() });
    expect(result.code).toBe(0);
    const parsed = JSON.parse(result.stdout) as {
      removed: Array<{ name: string }>;
      remainingBytes: number;
    };
    // 6000 bytes in all: c (used 5 days ago) goes first, then a (2 days); b fits the budget.
    expect(parsed.removed.map((entry) => entry.name)).toEqual(["c", "a"]);
    expect(parsed.remainingBytes).toBe(2000);
    expect(await published()).toEqual(["b"]);
  });

  it("never removes a dataset in use (a fresh lease of a live process)", async () => {
    await age("a", 30);
    const host = hostLabel();
    await mkdir(join(data, ".dsfetch", "leases", "a"), { recursive: true });
    await writeFile(join(data, ".dsfetch", "leases", "a", `${host}.${process.pid}.test`), "");
    const parsed = await pruneOlderThanADay();
    expect(parsed.removed).toEqual([]);
    expect(parsed.kept[0]?.name).toBe("a");
    expect(parsed.kept[0]?.keptBecause).toContain(`in use by ${host} pid ${process.pid}`);
    expect(await published()).toEqual(["a", "b", "c"]);
  });

  it("never removes a dataset in use when its own clock is ahead of the storage's (the lease's age is the storage's)", async () => {
    // A live job on another machine refreshed its lease just now: a write, so the storage's
    // time. prune and list run on a machine whose clock is 10 minutes ahead of the storage's:
    // by that clock the lease looked 10 minutes old (stale after 5), list removed it, and
    // prune removed the dataset under the job (review, 2026-12-06).
    await age("a", 30);
    const leases = join(data, ".dsfetch", "leases", "a");
    await mkdir(leases, { recursive: true });
    const lease = join(leases, "otherhost-ns1.456.cccccccc");
    await writeFile(lease, "");
    const storageTime = Date.now.bind(Date);
    const ahead = vi.spyOn(Date, "now").mockImplementation(() => storageTime() + 10 * 60_000);
    try {
      await listDatasets(storage, "ml");
      await expect(stat(lease)).resolves.toBeDefined();
      const result = await prune(storage, "ml", {
        olderThanMs: 86_400_000,
        lockStaleMs: 120_000,
      });
      expect(result.removed).toEqual([]);
      expect(result.kept.map((entry) => [entry.name, entry.keptBecause])).toEqual([
        ["a", "in use by otherhost-ns1 pid 456"],
      ]);
    } finally {
      ahead.mockRestore();
    }
    expect(await published()).toEqual(["a", "b", "c"]);
    await expect(stat(lease)).resolves.toBeDefined();
  });

  it("never removes a dataset whose leases cannot be read (taken to be in use), and list says so", async () => {
    await age("a", 30);
    // Not a directory: reading the leases fails with ENOTDIR, not "none there".
    // (Its directory was made at publish: taken away first.)
    await rm(join(data, ".dsfetch", "leases", "a"), { recursive: true, force: true });
    await mkdir(join(data, ".dsfetch", "leases"), { recursive: true });
    await writeFile(join(data, ".dsfetch", "leases", "a"), "");
    const listed = await runCli(["list", ...flags()], { env: testEnv() });
    expect(listed.code).toBe(0);
    const { datasets } = JSON.parse(listed.stdout) as {
      datasets: Array<{ name: string; inUse: string[] }>;
    };
    expect(datasets.find((entry) => entry.name === "a")?.inUse).toEqual([
      expect.stringMatching(/^unknown holders \(its leases could not be read: ENOTDIR/),
    ]);
    const parsed = await pruneOlderThanADay();
    expect(parsed.removed).toEqual([]);
    expect(parsed.kept[0]?.keptBecause).toContain("in use by unknown holders");
    expect(await published()).toEqual(["a", "b", "c"]);
  });

  it("--dry-run removes nothing", async () => {
    await age("a", 30);
    const result = await runCli(["prune", "--older-than", "1d", "--dry-run", ...flags()], {
      env: testEnv(),
    });
    expect(JSON.parse(result.stdout)).toMatchObject({ dryRun: true, removed: [{ name: "a" }] });
    expect(await published()).toEqual(["a", "b", "c"]);
    // Said in words too, in the singular for one ("1 datasets" before).
    const human = await runCli(
      ["prune", "--older-than", "1d", "--dry-run", ...flags().slice(0, -1)],
      {
        env: testEnv(),
      },
    );
    expect(human.stderr).toMatch(/ 1 dataset, /);
  });

  it("--dry-run keeps what the real prune would keep: a dataset being staged right now (its lock held)", async () => {
    await age("a", 30);
    await age("b", 30);
    const held = await acquireLock(locationIn(data, "a").lockPath, "a", {
      timing: { staleMs: 120_000, pollMs: 100, waitMs: 0 },
    });
    if (held.kind !== "acquired") throw new Error("the lock was not taken");
    try {
      for (const dryRun of [["--dry-run"], []]) {
        const result = await runCli(["prune", "--older-than", "1d", ...dryRun, ...flags()], {
          env: testEnv(),
        });
        expect(result.code, result.stderr).toBe(0);
        expect(JSON.parse(result.stdout), dryRun.join(" ")).toMatchObject({
          removed: [{ name: "b" }],
          kept: [{ name: "a", keptBecause: "it is being staged right now" }],
        });
      }
    } finally {
      await held.lock.release();
    }
    expect(await published()).toEqual(["a", "c"]);
  });

  it("needs a criterion, and rejects bad ones with the accepted forms", async () => {
    const none = await runCli(["prune", "--storage-root", storage, "--team", "ml"], {
      env: testEnv(),
    });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("prune needs --older-than and/or --max-size");
    const bad = await runCli(
      ["prune", "--older-than", "7 days", "--storage-root", storage, "--team", "ml"],
      {
        env: testEnv(),
      },
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('"90m", "12h", "7d", "2w"');
    expect(await published()).toEqual(["a", "b", "c"]);
  });
});

describe("prune racing a job", () => {
  it("a dataset a job reuses after the listing (its lease comes only once all are staged) is kept", async () => {
    await age("a", 10);
    const location = locationIn(data, "a");
    let reused = false;
    const result = await prune(storage, "ml", {
      olderThanMs: 7 * 86_400_000,
      lockStaleMs: 120_000,
      // The job's reuse lands between the listing and the removal: it marks the dataset used.
      call: async (what, work) => {
        if (what.startsWith(`reading the leases of ${location.path}`)) {
          await markUsed(location);
          reused = true;
        }
        return work(new AbortController().signal, () => {});
      },
    });
    expect(reused).toBe(true);
    expect(result.removed).toEqual([]);
    expect(result.kept).toEqual([
      expect.objectContaining({
        name: "a",
        keptBecause: expect.stringMatching(/^used since the listing/),
      }),
    ]);
    expect(await published()).toEqual(["a", "b", "c"]);
  });
});

describe("a user's directory where a dataset was removed by hand", () => {
  it("is not listed and not pruned (its manifest names another tree)", async () => {
    await age("a", 10);
    const path = join(data, "a");
    await removeTreeReporting(path, () => {});
    await mkdir(path);
    await writeFile(join(path, "mine.txt"), "the user's own bytes");
    const listed = await runCli(["list", ...flags()], { env: testEnv() });
    expect(
      (JSON.parse(listed.stdout) as { datasets: { name: string }[] }).datasets.map((d) => d.name),
    ).toEqual(["b", "c"]);
    const pruned = await runCli(["prune", "--older-than", "1d", ...flags()], { env: testEnv() });
    expect(pruned.code).toBe(0);
    expect(await readdir(path)).toEqual(["mine.txt"]);
  });
});

describe("failure records", () => {
  it("older than an hour are removed by prune (one of a dataset never published stayed for good)", async () => {
    const failures = join(data, ".dsfetch", "failures");
    await mkdir(failures, { recursive: true });
    const old = join(failures, "gone.json");
    const fresh = join(failures, "recent.json");
    await writeFile(old, "{}");
    await writeFile(fresh, "{}");
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await utimes(old, twoHoursAgo, twoHoursAgo);
    await pruneOlderThanADay();
    expect(await readdir(failures)).toEqual(["recent.json"]);
  });
});

/** A partial download `name` in `tmp`, last touched `minutesAgo` (the storage's time). */
async function plantAttempt(tmp: string, name: string, minutesAgo: number): Promise<void> {
  const dir = join(tmp, name);
  await mkdir(join(dir, "data"), { recursive: true });
  await writeFile(join(dir, "data", "part.bin"), "partial");
  const when = new Date(Date.now() - minutesAgo * 60_000);
  await utimes(join(dir, "data"), when, when);
  await utimes(dir, when, when);
}

describe("abandoned attempts", () => {
  it("of any dataset and host are removed by prune once idle past the bound; live and fresh ones stay", async () => {
    // A holder on another machine died while another worker took over and published: the
    // dataset was cached from then on, and its partial attempt stayed for good (review).
    const tmp = join(data, ".dsfetch", "tmp");
    await mkdir(tmp, { recursive: true });
    const attempt = (name: string, minutesAgo: number) => plantAttempt(tmp, name, minutesAgo);
    const here = hostLabel();
    await attempt("a.other-pod-1.7.0123456789abcdef", 120); // another host, idle 2 h
    await attempt("b.other-pod-2.7.1123456789abcdef", 1); // another host, fresh: may be live
    await attempt(`c.${here}.${process.pid}.2123456789abcdef`, 1); // a live process here
    await attempt(`d.${here}.2147483646.3123456789abcdef`, 1); // a dead pid here
    // A live pid here, but idle 2 h: a live attempt keeps its directory fresh; the pid is
    // another process's now (pids are reused).
    await attempt(`e.${here}.${process.pid}.4123456789abcdef`, 120);
    await pruneOlderThanADay();
    expect((await readdir(tmp)).sort()).toEqual([
      "b.other-pod-2.7.1123456789abcdef",
      `c.${here}.${process.pid}.2123456789abcdef`,
    ]);
  });
});

describe("abandoned attempts, judged by the storage's clock", () => {
  it("another machine's live attempt stays when prune's clock is ahead of the storage's", async () => {
    // Its heartbeat (attempt.ts) is a write: the storage's time. Judged by a clock 15 minutes
    // ahead, a download touched 1 minute ago looked idle for 16 (bound: 10) and was removed
    // under it (review, 2026-12-06); one idle for 2 hours is removed whatever the clock.
    const tmp = join(data, ".dsfetch", "tmp");
    await mkdir(tmp, { recursive: true });
    const attempt = (name: string, minutesAgo: number) => plantAttempt(tmp, name, minutesAgo);
    await attempt("a.other-pod-1.7.0123456789abcdef", 120);
    await attempt("b.other-pod-2.7.1123456789abcdef", 1);
    const storageTime = Date.now.bind(Date);
    const ahead = vi.spyOn(Date, "now").mockImplementation(() => storageTime() + 15 * 60_000);
    try {
      await prune(storage, "ml", { olderThanMs: 86_400_000, lockStaleMs: 120_000 });
    } finally {
      ahead.mockRestore();
    }
    expect(await readdir(tmp)).toEqual(["b.other-pod-2.7.1123456789abcdef"]);
  });
});

describe("a dataset whose manifest is damaged", () => {
  it("is not listed, and list says so (it was left out without a word); prune keeps it", async () => {
    const manifest = join(data, ".dsfetch", "manifests", "b.json");
    await writeFile(manifest, '{"version": 1, "uri": "s3://tru');
    const listed = await runCli(["list", ...flags()], { env: testEnv() });
    expect(listed.code, listed.stderr).toBe(0);
    const json = JSON.parse(listed.stdout) as {
      datasets: { name: string }[];
      unreadable: { path: string; manifest: string; reason: string }[];
    };
    expect(json.datasets.map((d) => d.name)).toEqual(["a", "c"]);
    expect(json.unreadable).toEqual([{ path: join(data, "b"), manifest, reason: "damaged" }]);
    expect(listed.stderr).toContain(
      `dsfetch: warning: ${join(data, "b")} is not listed: its manifest ${manifest} is damaged`,
    );
    const human = await runCli(["list", "--storage-root", storage, "--team", "ml"], {
      env: testEnv(),
    });
    expect(human.stderr).toMatch(/warning: .*\/b is not listed[^\n]*\n[\s\S]*2 datasets/);
    await age("b", 10);
    await pruneOlderThanADay();
    expect(await published()).toEqual(["a", "b", "c"]);
  });

  it("valid JSON with a damaged field is damaged too (list and prune failed as INTERNAL)", async () => {
    const manifests = join(data, ".dsfetch", "manifests");
    const edit = async (name: string, change: (m: Record<string, unknown>) => void) => {
      const path = join(manifests, `${name}.json`);
      const manifest = JSON.parse(await readFile(path, "utf8")) as Record<string, unknown>;
      change(manifest);
      await writeFile(path, JSON.stringify(manifest));
    };
    await edit("b", (m) => {
      m.files = null;
    });
    await edit("c", (m) => {
      m.createdAt = "garbage";
    });
    await rm(join(data, ".dsfetch", "used", "c"));
    const listed = await runCli(["list", ...flags()], { env: testEnv() });
    expect(listed.code, listed.stderr).toBe(0);
    const json = JSON.parse(listed.stdout) as {
      datasets: { name: string }[];
      unreadable: { path: string; reason: string }[];
    };
    expect(json.datasets.map((d) => d.name)).toEqual(["a"]);
    expect(json.unreadable.map((u) => [u.path, u.reason])).toEqual([
      [join(data, "b"), "damaged"],
      [join(data, "c"), "damaged"],
    ]);
    const pruned = await runCli(["prune", "--max-size", "1", ...flags()], { env: testEnv() });
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(await published()).toEqual(["b", "c"]);
  });
});
