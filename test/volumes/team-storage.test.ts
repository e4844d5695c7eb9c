// A team's storage written by several users of one group (a data directory 2775, setgid), as
// platform teams set it up. Until 2026-12-07 the bookkeeping directories (`.dsfetch/locks`,
// `tmp`, `manifests`, `leases/<dataset>`, …) took the first user's umask (0755, or 0700 under
// 077), and every teammate's job then:
//   - failed to stage any new dataset (STORAGE, exit 7: "cannot write to …/locks/x.lock");
//   - used the first user's datasets without a lease, so the first user's prune removed them
//     under the running job;
//   - could not take a dead teammate's stale lock over;
//   - downloaded a changed source whole, then failed STORAGE at the swap (the older copy's
//     read-only directories are its owner's), at every run.
// Needs root: the two users are uids 64001 and 64002 of group 64000 (setpriv).
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { writeManifest } from "../../src/volumes/manifest.ts";
import {
  chmodDir,
  replaceWithEmptyFile,
  rewriteFile,
  writeNewFile,
} from "../../src/volumes/no-follow.ts";
import { makeSharedDir, sharedDirMode, widenBookkeeping } from "../../src/volumes/shared-dirs.ts";
import { makeProbeFile, PROBE_FILE } from "../../src/volumes/storage-probe.ts";
import { baseEnv, CLI_ENTRY, runProgram } from "../harness/cli.ts";
import { testManifest } from "../harness/manifests.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const GROUP = 64000;
const ALICE = 64001;
const BOB = 64002;
let scratch: string;
let bucket: string;

beforeAll(async () => {
  requireRoot("two users of one group (setpriv) sharing a team's storage");
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-team-storage-"));
  await chmod(scratch, 0o755);
  bucket = await createBucket("teamstorage");
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const octal = (mode: number) => (mode & 0o7777).toString(8);

/** A storage root (root's, 0755) whose team directory and data directory are 2775, group GROUP. */
async function teamStorage(name: string) {
  const storage = join(scratch, name);
  const data = join(storage, "t", "data");
  await mkdir(data, { recursive: true });
  for (const dir of [join(storage, "t"), data]) {
    await chown(dir, 0, GROUP);
    await chmod(dir, 0o2775);
  }
  // Each user's own ephemeral root (a fallback goes there).
  const ephemeral = (uid: number) => join(storage, `ephemeral-${uid}`);
  for (const uid of [ALICE, BOB]) {
    await mkdir(ephemeral(uid), { mode: 0o700 });
    await chown(ephemeral(uid), uid, GROUP);
  }
  const flags = (uid: number) => [
    "--storage-root",
    storage,
    "--team",
    "t",
    "--ephemeral-root",
    ephemeral(uid),
  ];
  return { storage, data, meta: join(data, ".dsfetch"), flags, ephemeral };
}

/**
 * `sh -c` argv running dsfetch as `uid` under `umask`, of primary group `gid` (GROUP) and the
 * supplementary `groups` (GROUP).
 */
function asUser(
  uid: number,
  umask: string,
  args: readonly string[],
  gid = GROUP,
  groups = String(GROUP),
): string[] {
  const ids = ["--reuid", String(uid), "--regid", String(gid), "--groups", groups];
  const command = `umask ${umask} && exec "$0" "$@"`;
  return [...ids, "sh", "-c", command, process.execPath, CLI_ENTRY, ...args];
}

function dsfetch(
  uid: number,
  args: readonly string[],
  {
    stdin = "",
    umask = "022",
    env = {},
    gid = GROUP,
    groups = String(GROUP),
  }: {
    stdin?: string;
    umask?: string;
    env?: Record<string, string>;
    gid?: number;
    groups?: string;
  } = {},
) {
  return runProgram("setpriv", asUser(uid, umask, args, gid, groups), {
    env: { ...testEnv(), ...env },
    stdin,
  }).then(({ code, stdout, stderr }) => ({ status: code, stdout, stderr }));
}

function staged(stdout: string): Array<Record<string, unknown>> {
  return (JSON.parse(stdout) as { datasets: Array<Record<string, unknown>> }).datasets;
}

/** Both users can read this checkout (a clone under /root could not). */
function usersCanRun(): boolean {
  const code = `require("fs").accessSync(${JSON.stringify(CLI_ENTRY)})`;
  return (
    spawnSync("setpriv", [
      "--reuid",
      String(BOB),
      "--regid",
      String(GROUP),
      "--groups",
      String(GROUP),
      process.execPath,
      "-e",
      code,
    ]).status === 0
  );
}

/** Where the two users cannot read this checkout: skipped, and said so (never a pass). */
function cannotRun(ctx: TestContext): boolean {
  if (usersCanRun()) return false;
  ctx.skip(`SKIPPED, not passed: uid ${BOB} cannot read ${CLI_ENTRY}`);
  return true;
}

const folder = async (name: string, files: Record<string, Buffer>) => {
  for (const [file, bytes] of Object.entries(files)) {
    await putObject(bucket, `${name}/${file}`, bytes);
  }
  return JSON.stringify([{ uri: `s3://${bucket}/${name}/`, name }]);
};

describe("the mode of a directory dsfetch makes", () => {
  it("follows the directory it is made in: the group's and everyone's write bits, setgid, never sticky", () => {
    expect(octal(sharedDirMode(0o40755))).toBe("755");
    expect(octal(sharedDirMode(0o40700))).toBe("755");
    expect(octal(sharedDirMode(0o42775))).toBe("2775");
    expect(octal(sharedDirMode(0o40770))).toBe("775");
    expect(octal(sharedDirMode(0o40777))).toBe("777");
    expect(octal(sharedDirMode(0o41777))).toBe("755");
    expect(octal(sharedDirMode(0o43777))).toBe("755");
  });

  it("whatever the umask, for every directory of a bookkeeping path, and widens this user's own older ones", async () => {
    const root = await mkdtemp(join(scratch, "modes-"));
    await chown(root, 0, GROUP);
    await chmod(root, 0o2775);
    const before = process.umask(0o077);
    try {
      await makeSharedDir(join(root, ".dsfetch", "leases", "x"));
      for (const dir of [".dsfetch", ".dsfetch/leases", ".dsfetch/leases/x"]) {
        const found = await stat(join(root, dir));
        expect(octal(found.mode), dir).toBe("2775");
        expect(found.gid, dir).toBe(GROUP);
      }
      // An older dsfetch's: 0700 under the same umask; this user's, so given the bits.
      await mkdir(join(root, ".dsfetch", "locks"), { mode: 0o700 });
      await makeSharedDir(join(root, ".dsfetch", "locks"));
      expect(octal((await stat(join(root, ".dsfetch", "locks"))).mode)).toBe("2775");
      // A world-writable sticky parent (a /tmp-like place): nothing shared further.
      const sticky = await mkdtemp(join(scratch, "sticky-"));
      await chmod(sticky, 0o1777);
      await makeSharedDir(join(sticky, "t", "data"));
      expect(octal((await stat(join(sticky, "t"))).mode)).toBe("755");
      expect(octal((await stat(join(sticky, "t", "data"))).mode)).toBe("755");
    } finally {
      process.umask(before);
    }
  });
});

describe("directories there before, and a ruling directory made by a bookkeeping call", () => {
  it("a team's or data directory that exists keeps its owner's mode and group (0770 of another group stays so)", async () => {
    const team = await mkdtemp(join(scratch, "plain-"));
    await chmod(team, 0o775);
    const data = join(team, "data");
    await mkdir(data);
    await chown(data, 0, GROUP);
    await chmod(data, 0o770);
    await makeSharedDir(data, { plain: true });
    const found = await stat(data);
    expect(octal(found.mode)).toBe("770");
    expect(found.gid).toBe(GROUP);
  });

  it("a missing data directory made on the way to a bookkeeping directory is ruled by where it was made", async () => {
    const root = await mkdtemp(join(scratch, "ruled-"));
    await chown(root, 0, GROUP);
    await chmod(root, 0o2775);
    const before = process.umask(0o077);
    try {
      await makeSharedDir(join(root, "t", "data", ".dsfetch", "used"));
    } finally {
      process.umask(before);
    }
    for (const dir of ["t", "t/data", "t/data/.dsfetch", "t/data/.dsfetch/used"]) {
      expect(octal((await stat(join(root, dir))).mode), dir).toBe("2775");
    }
  });

  it("a FIFO where the probe file goes never blocks: makeProbeFile returns at once", async () => {
    const root = await mkdtemp(join(scratch, "fifo-"));
    await mkdir(join(root, ".dsfetch"));
    execFileSync("mkfifo", [join(root, ".dsfetch", PROBE_FILE)]);
    const started = performance.now();
    await makeProbeFile(root);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect((await stat(join(root, ".dsfetch", PROBE_FILE))).isFIFO()).toBe(true);
  });
});

describe("a bookkeeping directory replaced by a symbolic link (a teammate may rename entries of a group-writable .dsfetch)", () => {
  it("is never followed: what it points to keeps its mode, whether the link is the directory or one above it", async () => {
    const root = await mkdtemp(join(scratch, "links-"));
    await chown(root, 0, GROUP);
    await chmod(root, 0o2775);
    const secret = await mkdtemp(join(scratch, "secret-"));
    await chmod(secret, 0o700);
    await mkdir(join(secret, "tmp"), { mode: 0o700 });
    await chmod(join(secret, "tmp"), 0o700);
    await mkdir(join(root, ".dsfetch"));
    await chmod(join(root, ".dsfetch"), 0o755);
    await symlink(secret, join(root, ".dsfetch", "locks"));
    await widenBookkeeping(root);
    await makeSharedDir(join(root, ".dsfetch", "locks"));
    expect(octal((await stat(secret)).mode)).toBe("700");
    // The link one level up: `.dsfetch` itself points at `secret`, whose `tmp` is root's too.
    const other = await mkdtemp(join(scratch, "links-"));
    await chmod(other, 0o2775);
    await symlink(secret, join(other, ".dsfetch"));
    await widenBookkeeping(other);
    await makeSharedDir(join(other, ".dsfetch", "tmp"));
    expect(octal((await stat(secret)).mode)).toBe("700");
    expect(octal((await stat(join(secret, "tmp"))).mode)).toBe("700");
    // The real directory beside them was widened (root's own).
    expect(octal((await stat(join(root, ".dsfetch"))).mode)).toBe("2775");
  });
});

describe("files dsfetch writes where a teammate may plant links (a group-writable .dsfetch)", () => {
  /** A root-only file standing in for /etc/shadow, and a link to it at `at`. */
  async function plantedLink(at: string) {
    const victim = join(await mkdtemp(join(scratch, "victim-")), "secret");
    await writeFile(victim, "root only\n", { mode: 0o600 });
    await chmod(victim, 0o600);
    await symlink(victim, at);
    const unchanged = async () => {
      expect(await readFile(victim, "utf8")).toBe("root only\n");
      expect(octal((await stat(victim)).mode)).toBe("600");
    };
    return { victim, unchanged };
  }

  it("a pending manifest: the link at its name is removed, never written through", async () => {
    const dir = await mkdtemp(join(scratch, "manifests-"));
    const path = join(dir, "x.json.pending.0123456789abcdef.tmp");
    const { unchanged } = await plantedLink(path);
    await writeManifest(path, testManifest("s3://b/x", '"e"', "x"));
    await unchanged();
    expect((await lstat(path)).isFile()).toBe(true);
  });

  it("new files, own files written again, used markers, directories' modes: never through a link", async () => {
    const dir = await mkdtemp(join(scratch, "links-"));
    const fresh = await plantedLink(join(dir, "holder.json.1.ab.tmp"));
    await expect(writeNewFile(join(dir, "holder.json.1.ab.tmp"), "{}")).rejects.toMatchObject({
      code: "EEXIST",
    });
    await fresh.unchanged();
    const lease = await plantedLink(join(dir, "lease"));
    await expect(rewriteFile(join(dir, "lease"), "now")).rejects.toMatchObject({ code: "ELOOP" });
    await lease.unchanged();
    const used = await plantedLink(join(dir, "used"));
    await replaceWithEmptyFile(join(dir, "used"));
    await used.unchanged();
    expect((await lstat(join(dir, "used"))).isFile()).toBe(true);
    const target = await mkdtemp(join(scratch, "target-"));
    await chmod(target, 0o700);
    await symlink(target, join(dir, "dataset"));
    await expect(chmodDir(join(dir, "dataset"), 0o755)).rejects.toBeDefined();
    expect(octal((await stat(target)).mode)).toBe("700");
  });
});

describe.concurrent("two users of one group on a team's storage (2775)", () => {
  it("the second stages a new dataset beside the first's, which the first made under umask 077", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { data, meta, flags } = await teamStorage("new-dataset");
    const first = await folder("a1", { "x.bin": randomBytes(3000) });
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: first,
      umask: "077",
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    for (const dir of ["", "locks", "tmp", "manifests", "leases", "leases/a1", "used"]) {
      const found = await stat(join(meta, dir));
      expect(octal(found.mode), dir).toBe("2775");
      expect(found.gid, dir).toBe(GROUP);
    }
    const bytes = randomBytes(5000);
    const second = await folder("b1", { "y.bin": bytes });
    const byBob = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: second,
    });
    expect(byBob.status, byBob.stderr).toBe(0);
    expect(byBob.stderr).not.toContain("warning");
    expect(staged(byBob.stdout)[0]).toMatchObject({ volume: "shared", path: join(data, "b1") });
    expect(await readFile(join(data, "b1", "y.bin"))).toEqual(bytes);
    expect((await stat(join(data, "b1"))).uid).toBe(BOB);
    // And the first reuses the second's.
    const reused = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE), "--json"], {
      stdin: second,
    });
    expect(reused.status, reused.stderr).toBe(0);
    expect(staged(reused.stdout)[0]).toMatchObject({ cached: true, volume: "shared" });
  });

  it("the second's job holds a lease on the first's dataset, and the first's prune keeps it", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { data, meta, flags, storage } = await teamStorage("lease");
    const datasets = await folder("a2", { "x.bin": randomBytes(3000) });
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: datasets,
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    const mounts = join(storage, "mounts-bob");
    await mkdir(mounts);
    await chown(mounts, BOB, GROUP);
    const release = join(storage, "release");
    // Bob's job: runs until the file `release` exists.
    const job: ChildProcess = spawn(
      "setpriv",
      asUser(BOB, "022", [
        "run",
        "--datasets",
        "-",
        ...flags(BOB),
        "--mount-root",
        mounts,
        "--",
        "sh",
        "-c",
        `while [ ! -e ${release} ]; do sleep 0.1; done`,
      ]),
      { env: baseEnv(testEnv()), stdio: ["pipe", "ignore", "pipe"] },
    );
    let jobErr = "";
    job.stderr?.on("data", (chunk: Buffer) => {
      jobErr += chunk.toString();
    });
    job.stdin?.end(datasets);
    const exited = new Promise<number | null>((resolve) => job.on("exit", (code) => resolve(code)));
    try {
      const leases = join(meta, "leases", "a2");
      for (let i = 0; ; i++) {
        if ((await readdir(leases).catch(() => [])).length > 0) break;
        if (i > 200) throw new Error(`no lease after 20 s: ${jobErr}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const monthAgo = new Date(Date.now() - 30 * 86_400_000);
      await utimes(join(meta, "used", "a2"), monthAgo, monthAgo);
      const pruned = await dsfetch(ALICE, [
        "prune",
        "--older-than",
        "1d",
        ...flags(ALICE).slice(0, 4),
        "--json",
      ]);
      expect(pruned.status, pruned.stderr).toBe(0);
      const result = JSON.parse(pruned.stdout) as {
        removed: Array<{ name: string }>;
        kept: Array<{ name: string; keptBecause: string }>;
      };
      expect(result.removed).toEqual([]);
      expect(result.kept[0]?.keptBecause).toContain("in use by");
      expect((await readdir(join(data, "a2"))).sort()).toEqual(["x.bin"]);
    } finally {
      await writeFile(release, "");
    }
    expect(await exited).toBe(0);
    expect(jobErr).not.toContain("without a lease");
  });

  it("the second takes over the stale lock of the first's dead download", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { data, meta, flags } = await teamStorage("stale-lock");
    const earlier = await folder("a3", { "x.bin": randomBytes(1000) });
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: earlier,
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    // Alice's download of b3 on another machine, dead an hour ago: her lock and holder file.
    const lock = join(meta, "locks", "b3.lock");
    await mkdir(lock);
    await writeFile(
      `${lock}.holder.json`,
      JSON.stringify({ host: "gone-node", pid: 4242, since: new Date().toISOString() }),
    );
    await chown(lock, ALICE, GROUP);
    await chown(`${lock}.holder.json`, ALICE, GROUP);
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(lock, anHourAgo, anHourAgo);
    const bytes = randomBytes(2000);
    const datasets = await folder("b3", { "y.bin": bytes });
    const byBob = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: datasets,
      env: { DSFETCH_LOCK_STALE: "5", DSFETCH_LOCK_WAIT: "60" },
    });
    expect(byBob.status, byBob.stderr).toBe(0);
    expect(byBob.stderr).toContain("waiting for gone-node pid 4242");
    expect(staged(byBob.stdout)[0]).toMatchObject({ volume: "shared", path: join(data, "b3") });
    expect(await readFile(join(data, "b3", "y.bin"))).toEqual(bytes);
    expect(await readdir(join(meta, "locks"))).toEqual([]);
  });

  it("bookkeeping an older dsfetch made 0755: an ephemeral volume, saying whose and what to run; the owner's next run heals it", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { data, meta, flags, ephemeral } = await teamStorage("older");
    const first = await folder("a4", { "x.bin": randomBytes(1000) });
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: first,
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    for (const dir of ["", "locks", "tmp", "manifests", "leases", "used", "removals"]) {
      await chmod(join(meta, dir), 0o755);
    }
    await chmod(join(meta, "leases", "a4"), 0o755);
    const bytes = randomBytes(2000);
    const second = await folder("b4", { "y.bin": bytes });
    const why = `${meta} is not writable by this user (uid ${BOB}): it is uid ${ALICE}'s, group ${GROUP}, mode 0755, where its data directory is group ${GROUP}, mode 2775; its owner (or root) can run \`chgrp -R ${GROUP} ${meta} && chmod -R g+rwX ${meta}\``;

    const strict = await dsfetch(
      BOB,
      ["fetch", "--datasets", "-", ...flags(BOB), "--no-fallback"],
      {
        stdin: second,
      },
    );
    expect(strict.status, strict.stderr).toBe(7);
    expect(strict.stderr).toContain(why);

    const fellBack = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: second,
    });
    expect(fellBack.status, fellBack.stderr).toBe(0);
    expect(fellBack.stderr).toContain(why);
    expect(staged(fellBack.stdout)[0]).toMatchObject({
      volume: "ephemeral",
      path: join(ephemeral(BOB), "b4"),
    });
    await expect(stat(join(data, "b4"))).rejects.toMatchObject({ code: "ENOENT" });

    // Bob's job on Alice's dataset: runs, without a lease, saying whose directory refused it
    // (a lease directory of Alice's under a .dsfetch Bob could write failed it STORAGE).
    const job = await dsfetch(
      BOB,
      ["run", "--datasets", "-", ...flags(BOB), "--no-mount", "--", "true"],
      {
        stdin: first,
      },
    );
    expect(job.status, job.stderr).toBe(0);
    expect(job.stderr).toContain(
      `used without a lease (${join(meta, "leases", "a4")} is not writable by this user; it is uid ${ALICE}'s`,
    );

    // Its manifest 0600, as a dsfetch before 2026-12-06 wrote it under umask 077: Bob's jobs
    // fail STORAGE naming it (deliberate: README "Where data goes").
    await chmod(join(meta, "manifests", "a4.json"), 0o600);
    const unreadable = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB)], {
      stdin: first,
    });
    expect(unreadable.status, unreadable.stderr).toBe(7);
    expect(unreadable.stderr).toContain(join(meta, "manifests", "a4.json"));

    // Alice's next run, which only reuses her dataset, gives her directories the team's bits,
    // and her manifest its read bits.
    const reuse = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: first,
    });
    expect(reuse.status, reuse.stderr).toBe(0);
    for (const dir of ["", "locks", "tmp", "manifests", "leases/a4"]) {
      expect(octal((await stat(join(meta, dir))).mode), dir).toBe("2775");
    }
    expect(octal((await stat(join(meta, "manifests", "a4.json"))).mode)).toBe("644");
    const shared = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: second,
    });
    expect(shared.status, shared.stderr).toBe(0);
    expect(shared.stderr).not.toContain("warning");
    expect(staged(shared.stdout)[0]).toMatchObject({ volume: "shared", path: join(data, "b4") });
    expect(await readFile(join(data, "b4", "y.bin"))).toEqual(bytes);
  });

  it("a changed source whose older copy is the first's: the second stages it into an ephemeral volume before downloading, saying why; the first refreshes it", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { data, flags, ephemeral } = await teamStorage("refresh");
    const old = randomBytes(1000);
    const datasets = await folder("a5", { "x.bin": old });
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: datasets,
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    const added = randomBytes(1500);
    await putObject(bucket, "a5/z.bin", added);

    const why = `${join(data, "a5")} holds an older copy staged by uid ${ALICE}, which this user (uid ${BOB}) may not replace`;
    // plan says so too (it said "shared, stale": review, 2026-12-07).
    const planned = await dsfetch(BOB, ["plan", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: datasets,
    });
    expect(planned.status, planned.stderr).toBe(0);
    expect(planned.stdout).toContain(why);
    expect(planned.stdout).toContain(join(ephemeral(BOB), "a5"));
    const byBob = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: datasets,
    });
    expect(byBob.status, byBob.stderr).toBe(0);
    expect(byBob.stderr).toContain(why);
    expect(staged(byBob.stdout)[0]).toMatchObject({
      volume: "ephemeral",
      path: join(ephemeral(BOB), "a5"),
    });
    expect(await readFile(join(ephemeral(BOB), "a5", "z.bin"))).toEqual(added);
    // Alice's copy untouched; her own run refreshes it.
    expect((await readdir(join(data, "a5"))).sort()).toEqual(["x.bin"]);
    const refreshed = await dsfetch(
      ALICE,
      ["fetch", "--datasets", "-", ...flags(ALICE), "--json"],
      {
        stdin: datasets,
      },
    );
    expect(refreshed.status, refreshed.stderr).toBe(0);
    expect(staged(refreshed.stdout)[0]).toMatchObject({ volume: "shared", cached: false });
    expect((await readdir(join(data, "a5"))).sort()).toEqual(["x.bin", "z.bin"]);
  });

  it.for([
    // The start-up probe's mkdir -p made them 2755 before the storage check could.
    ["a group's (2775)", 0o2775, "2775"] as const,
    // Alice may not give them root's group: its bits as everyone's (0757 shut out Bob, who
    // shares Alice's group and is judged by the group bits alone).
    ["open to everyone (0777, root's group)", 0o777, "777"] as const,
  ])(
    "a missing team and data directory under a storage root %s are made as it lets, and the second user stages beside the first",
    async ([name, rootMode, made], ctx) => {
      if (cannotRun(ctx)) return;
      const storage = join(scratch, `missing-team-${made}`);
      await mkdir(storage);
      await chown(storage, 0, rootMode === 0o777 ? 0 : GROUP);
      await chmod(storage, rootMode);
      const flags = ["--storage-root", storage, "--team", "t", "--no-fallback"];
      const first = await folder(`a6-${made}`, { "x.bin": randomBytes(1000) });
      const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags], {
        stdin: first,
      });
      expect(byAlice.status, byAlice.stderr).toBe(0);
      for (const dir of ["t", "t/data", "t/data/.dsfetch", "t/data/.dsfetch/locks"]) {
        expect(octal((await stat(join(storage, dir))).mode), `${name}: ${dir}`).toBe(made);
      }
      const bytes = randomBytes(1000);
      const second = await folder(`b6-${made}`, { "y.bin": bytes });
      const byBob = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags], { stdin: second });
      expect(byBob.status, byBob.stderr).toBe(0);
      expect(await readFile(join(storage, "t", "data", `b6-${made}`, "y.bin"))).toEqual(bytes);
    },
  );

  it.for([
    ["0755", 0o755],
    // Alice cannot even look into it: whether <root>/t exists is hidden (review, 2026-12-07).
    ["0700", 0o700],
  ] as const)(
    "a missing team directory under a storage root only root may write (%s): the error names the root, its owner and mode, and what to ask for",
    async ([mode, bits], ctx) => {
      if (cannotRun(ctx)) return;
      // Said "<root>/t/data is not writable (EACCES)" before 2026-12-07: a directory that did
      // not exist.
      const storage = join(scratch, `root-only-${mode}`);
      await mkdir(storage);
      await chmod(storage, bits);
      const flags = ["--storage-root", storage, "--team", "t", "--no-fallback"];
      const datasets = await folder(`a9-${mode}`, { "x.bin": randomBytes(100) });
      const ran = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags], { stdin: datasets });
      expect(ran.status, ran.stderr).toBe(7);
      expect(ran.stderr).toContain(
        `${join(storage, "t", "data")} cannot be made: ${storage} is not writable by this user (uid ${ALICE}): it is uid 0's, group 0, mode ${mode} (EACCES); its owner (or root) can make ${join(storage, "t", "data")} with \`mkdir -p\` and give it to this user or its group`,
      );
      expect(await readdir(storage)).toEqual([]);
    },
  );

  it("a group-writable data directory without setgid: the bookkeeping gets its group, not the first user's primary group", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { data, meta, flags } = await teamStorage("no-setgid");
    await chmod(data, 0o775);
    const first = await folder("a7", { "x.bin": randomBytes(1000) });
    // Alice's primary group is her own (64010); the team's group is a supplementary one.
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: first,
      gid: 64010,
      groups: `64010,${GROUP}`,
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    for (const dir of ["", "locks", "tmp", "manifests", "leases/a7"]) {
      const found = await stat(join(meta, dir));
      expect(found.gid, dir).toBe(GROUP);
      expect(octal(found.mode), dir).toBe("775");
    }
    const bytes = randomBytes(1000);
    const second = await folder("b7", { "y.bin": bytes });
    const byBob = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--no-fallback"], {
      stdin: second,
    });
    expect(byBob.status, byBob.stderr).toBe(0);
    expect(await readFile(join(data, "b7", "y.bin"))).toEqual(bytes);
  });

  it("the second user's use of the first's dataset counts as its last use (prune went by the owner's alone)", async (ctx) => {
    if (cannotRun(ctx)) return;
    const { meta, flags } = await teamStorage("last-use");
    const datasets = await folder("a9", { "x.bin": randomBytes(1000) });
    const byAlice = await dsfetch(ALICE, ["fetch", "--datasets", "-", ...flags(ALICE)], {
      stdin: datasets,
      umask: "077",
    });
    expect(byAlice.status, byAlice.stderr).toBe(0);
    const used = join(meta, "used", "a9");
    const tenDaysAgo = new Date(Date.now() - 10 * 86_400_000);
    await utimes(used, tenDaysAgo, tenDaysAgo);
    const byBob = await dsfetch(BOB, ["fetch", "--datasets", "-", ...flags(BOB), "--json"], {
      stdin: datasets,
    });
    expect(byBob.status, byBob.stderr).toBe(0);
    expect(staged(byBob.stdout)[0]).toMatchObject({ cached: true, volume: "shared" });
    expect(Date.now() - (await stat(used)).mtimeMs).toBeLessThan(60_000);
  });
});
