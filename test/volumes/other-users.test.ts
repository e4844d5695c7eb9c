// Datasets of one team published and used by several users (uids), as on a team's shared
// storage (review, 2026-12-06):
//   - a teammate under umask 077 wrote a 0600 manifest, and every other user's job failed
//     PATH_TAKEN "dsfetch did not publish it", with a hint to remove a valid dataset;
//   - `prune` stopped at the first dataset another user owns (STORAGE, or a raw EACCES as
//     INTERNAL), and removed nothing after it.
// Needs root: the other user is uid 65534 (setpriv), as in lock-permissions.test.ts.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  rmdir,
  stat,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { locationIn } from "../../src/volumes/layout.ts";
import { writeManifest } from "../../src/volumes/manifest.ts";
import { postRemovalNotice } from "../../src/volumes/removal-notice.ts";
import { baseEnv, CLI_ENTRY, runCli } from "../harness/cli.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const OTHER_UID = 65534;
const IDS = ["--reuid", String(OTHER_UID), "--regid", String(OTHER_UID), "--clear-groups"];
let scratch: string;
let bucket: string;
const OLD_BYTES = randomBytes(4096);
const MINE_BYTES = randomBytes(2048);

beforeAll(async () => {
  requireRoot("a second user (setpriv) and files of another owner");
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-other-users-"));
  await chmod(scratch, 0o755);
  bucket = await createBucket("otherusers");
  await putObject(bucket, "old/file.bin", OLD_BYTES);
  await putObject(bucket, "mine/file.bin", MINE_BYTES);
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const dataset = (name: string) => ({ uri: `s3://${bucket}/${name}/`, name });

/** `dsfetch <args>` as uid OTHER_UID, `stdin` on its standard input. */
function asOtherUser(args: readonly string[], stdin = "") {
  return spawnSync("setpriv", [...IDS, process.execPath, CLI_ENTRY, ...args], {
    env: baseEnv(testEnv()),
    input: stdin,
    encoding: "utf8",
    timeout: 60_000,
  });
}

/** `dsfetch <args>` as root, with the umask `umask`. */
function asRoot(args: readonly string[], stdin: string, umask = "022") {
  const command = `umask ${umask} && exec "$0" "$@"`;
  return spawnSync("sh", ["-c", command, process.execPath, CLI_ENTRY, ...args], {
    env: baseEnv(testEnv()),
    input: stdin,
    encoding: "utf8",
    timeout: 60_000,
  });
}

/** uid OTHER_UID can read this checkout (a clone under /root could not). */
function otherUserCanRun(): boolean {
  const code = `require("fs").accessSync(${JSON.stringify(CLI_ENTRY)})`;
  return spawnSync("setpriv", [...IDS, process.execPath, "-e", code]).status === 0;
}

/**
 * A team's storage every user may write, as a shared group with 2775 would be (the two users
 * here share no group): its data root and the bookkeeping directories.
 */
async function teamStorage(name: string) {
  const storage = join(scratch, name);
  const data = join(storage, "t", "data");
  const meta = join(data, ".dsfetch");
  const kinds = ["manifests", "locks", "tmp", "leases", "removals", "used", "failures"];
  for (const kind of kinds) await mkdir(join(meta, kind), { recursive: true });
  for (const dir of [storage, join(storage, "t"), data, meta, ...kinds.map((k) => join(meta, k))]) {
    await chmod(dir, 0o777);
  }
  const flags = ["--storage-root", storage, "--team", "t"];
  return { storage, data, meta, flags };
}

describe("a manifest another user cannot read", () => {
  it("is written readable by all whatever the umask (pending manifests too)", async () => {
    const dir = await mkdtemp(join(scratch, "umask-"));
    const path = join(dir, "x.json.pending.0123456789abcdef");
    const before = process.umask(0o077);
    try {
      await writeManifest(path, {
        version: 1,
        name: "x",
        uri: "s3://b/x",
        endpoint: undefined,
        kind: "object",
        etag: '"e"',
        versionId: undefined,
        listingDigest: undefined,
        bytes: 1,
        files: [{ path: "x", bytes: 1 }],
        verification: "md5",
        createdAt: new Date().toISOString(),
        host: "h",
      });
    } finally {
      process.umask(before);
    }
    expect((await stat(path)).mode & 0o777).toBe(0o644);
  });

  it("removal notices are readable by all whatever the umask (other users' jobs open them)", async () => {
    const location = locationIn(await mkdtemp(join(scratch, "notice-")), "x");
    const before = process.umask(0o077);
    let notice: Awaited<ReturnType<typeof postRemovalNotice>> | undefined;
    try {
      notice = await postRemovalNotice(location);
      const dir = join(location.metaDir, "removals", "x");
      const [name] = await readdir(dir);
      expect((await stat(join(dir, name ?? ""))).mode & 0o777).toBe(0o644);
    } finally {
      process.umask(before);
      await notice?.withdraw();
    }
  });

  it("a dataset published under umask 077 is reused by another user's job", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await teamStorage("umask-storage");
    const datasets = JSON.stringify([dataset("old")]);
    const published = asRoot(["fetch", "--datasets", "-", ...flags], datasets, "077");
    expect(published.status, published.stderr).toBe(0);
    const manifest = join(meta, "manifests", "old.json");
    expect((await stat(manifest)).mode & 0o777).toBe(0o644);

    const teammate = asOtherUser(["fetch", "--datasets", "-", ...flags, "--json"], datasets);
    expect(teammate.status, teammate.stderr).toBe(0);
    expect(teammate.stderr).not.toContain("did not publish");
    const [staged] = JSON.parse(teammate.stdout).datasets as Array<Record<string, unknown>>;
    expect(staged).toMatchObject({ cached: true, volume: "shared", path: join(data, "old") });
  });

  it("fails the job with STORAGE (exit 7) naming the file, the errno and chmod a+r, never 'did not publish it'; list says why; nothing is removed", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await teamStorage("unreadable-storage");
    const datasets = JSON.stringify([dataset("old")]);
    const published = asRoot(["fetch", "--datasets", "-", ...flags], datasets);
    expect(published.status, published.stderr).toBe(0);
    // As a dsfetch before the fix wrote it under umask 077.
    const manifest = join(meta, "manifests", "old.json");
    await chmod(manifest, 0o600);
    const manifestText = await readFile(manifest, "utf8");

    const job = asOtherUser(["fetch", "--datasets", "-", ...flags, "--json"], datasets);
    expect(job.status, job.stderr).toBe(7);
    const [failed] = JSON.parse(job.stdout).datasets as Array<{
      error: { code: string; message: string; hint: string };
    }>;
    expect(failed?.error.code).toBe("STORAGE");
    expect(failed?.error.message).toContain(`cannot read the manifest ${manifest}`);
    expect(failed?.error.message).toContain("EACCES");
    expect(failed?.error.hint).toContain(
      `ask its owner (uid 0) or root to run: chmod a+r '${manifest}'`,
    );
    for (const said of [job.stderr, job.stdout]) {
      expect(said).not.toContain("did not publish");
      expect(said).not.toContain("rm -r");
    }
    // No private copy on an ephemeral volume either: the data is there, one file unreadable.
    expect(JSON.stringify(failed)).not.toContain("ephemeral");

    // `list` tells the case apart (as before), and `prune` leaves it alone.
    const list = asOtherUser(["list", ...flags]);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stderr).toContain(`its manifest ${manifest} cannot be read by this user (EACCES)`);
    const anHourAgo = new Date(Date.now() - 3_600_000);
    await utimes(join(meta, "used", "old"), anHourAgo, anHourAgo);
    const pruned = asOtherUser(["prune", "--older-than", "1s", ...flags, "--json"]);
    expect(pruned.status, pruned.stderr).toBe(0);
    expect(JSON.parse(pruned.stdout)).toMatchObject({ removed: [] });

    // Left as it was: the dataset's bytes and its manifest.
    expect(await readFile(join(data, "old", "file.bin"))).toEqual(OLD_BYTES);
    expect(await readFile(manifest, "utf8")).toBe(manifestText);
  });

  it("a manifests directory this user may not search: STORAGE naming it, and chmod a+rx", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await teamStorage("unsearchable-storage");
    const datasets = JSON.stringify([dataset("old")]);
    const published = asRoot(["fetch", "--datasets", "-", ...flags], datasets);
    expect(published.status, published.stderr).toBe(0);
    const manifests = join(meta, "manifests");
    await chmod(manifests, 0o700);
    const job = asOtherUser(["fetch", "--datasets", "-", ...flags], datasets);
    expect(job.status, job.stderr).toBe(7);
    expect(job.stderr).toContain(`cannot read the manifest ${join(manifests, "old.json")}`);
    expect(job.stderr).toContain(`EACCES: permission denied: ${manifests} cannot be searched`);
    expect(job.stderr).toContain(`chmod a+rx '${manifests}'`);
    expect(job.stderr).not.toContain("did not publish");
    expect(await readFile(join(data, "old", "file.bin"))).toEqual(OLD_BYTES);
  });
});

describe("prune over another user's dataset", () => {
  /**
   * `old` published by root, `mine` by uid OTHER_UID, both last used 30 days ago, `old` first:
   * prune as OTHER_UID must keep `old` and still remove `mine`.
   */
  async function twoOwners(name: string, bookkeepingWritable: boolean) {
    const team = await teamStorage(name);
    const { meta, flags } = team;
    if (bookkeepingWritable) {
      for (const kind of ["leases", "removals"]) {
        await mkdir(join(meta, kind, "old"), { recursive: true });
        await chmod(join(meta, kind, "old"), 0o777);
      }
    }
    const byRoot = asRoot(["fetch", "--datasets", "-", ...flags], JSON.stringify([dataset("old")]));
    expect(byRoot.status, byRoot.stderr).toBe(0);
    if (!bookkeepingWritable) {
      // As a dsfetch before 2026-12-07 made them under root's umask 022 (this one makes them
      // as writable as the data directory: team-storage.test.ts).
      for (const kind of ["leases", "removals"]) await chmod(join(meta, kind, "old"), 0o755);
    }
    const byOther = asOtherUser(
      ["fetch", "--datasets", "-", ...flags],
      JSON.stringify([dataset("mine")]),
    );
    expect(byOther.status, byOther.stderr).toBe(0);
    const month = Date.now() - 30 * 86_400_000;
    await utimes(join(meta, "used", "old"), new Date(month), new Date(month));
    await utimes(join(meta, "used", "mine"), new Date(month + 1000), new Date(month + 1000));
    return team;
  }

  function pruneAsOther(flags: readonly string[]) {
    const result = asOtherUser(["prune", "--older-than", "1d", ...flags, "--json"]);
    const parsed = JSON.parse(result.stdout || "{}") as {
      removed?: Array<{ name: string }>;
      kept?: Array<{ name: string; keptBecause: string }>;
    };
    return { ...result, ...parsed };
  }

  it("keeps it when its removal notice may not be written (bookkeeping directories an older dsfetch made 0755), says why, and removes the others", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await twoOwners("prune-notice", false);
    const result = pruneAsOther(flags);
    expect(result.status, result.stderr).toBe(0);
    expect(result.removed?.map((entry) => entry.name)).toEqual(["mine"]);
    expect(result.kept?.map((entry) => entry.name)).toEqual(["old"]);
    const why = result.kept?.[0]?.keptBecause ?? "";
    expect(why).toContain("this user may not remove it: writing its removal notice was refused");
    expect(why).toContain(`(EACCES: permission denied, ${join(meta, "removals", "old")}/`);
    expect(why).toContain("it was left whole: run prune as the user who owns these, or as root");
    expect(await readFile(join(data, "old", "file.bin"))).toEqual(OLD_BYTES);
    await expect(stat(join(data, "mine"))).rejects.toMatchObject({ code: "ENOENT" });
    // The human output says it too.
    const human = asOtherUser(["prune", "--older-than", "1d", ...flags]);
    expect(human.status, human.stderr).toBe(0);
    expect(human.stderr).toContain("kept old: this user may not remove it");
  });

  it("keeps it when the move aside is refused (writable bookkeeping directories), says why, and removes the others", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await twoOwners("prune-rename", true);
    const result = pruneAsOther(flags);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stderr).not.toContain("bug in dsfetch");
    expect(result.removed?.map((entry) => entry.name)).toEqual(["mine"]);
    expect(result.kept?.map((entry) => entry.name)).toEqual(["old"]);
    const why = result.kept?.[0]?.keptBecause ?? "";
    expect(why).toContain("this user may not remove it: moving it aside was refused");
    expect(why).toContain(
      `(EACCES: permission denied, ${join(data, "old")} -> ${join(meta, "tmp", "pruned.")}`,
    );
    // Whole, read-only, and still reused.
    expect(await readFile(join(data, "old", "file.bin"))).toEqual(OLD_BYTES);
    expect((await stat(join(data, "old"))).mode & 0o777).toBe(0o555);
    await expect(stat(join(data, "mine"))).rejects.toMatchObject({ code: "ENOENT" });
    const again = asOtherUser(
      ["fetch", "--datasets", "-", ...flags, "--json"],
      JSON.stringify([dataset("old")]),
    );
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).datasets[0]).toMatchObject({ cached: true });
  });

  it("keeps this user's own dataset read-only when the move aside is refused (a tmp directory another user made)", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await twoOwners("prune-own", true);
    await chmod(join(meta, "tmp"), 0o755);
    const result = pruneAsOther(flags);
    expect(result.status, result.stderr).toBe(0);
    expect(result.removed).toEqual([]);
    const why = result.kept?.find((entry) => entry.name === "mine")?.keptBecause ?? "";
    expect(why).toContain(
      `this user may not remove it: moving it aside was refused (EACCES: permission denied, ${join(data, "mine")} -> ${join(meta, "tmp", "pruned.")}`,
    );
    // Made writable to be moved: read-only again, whole.
    expect((await stat(join(data, "mine"))).mode & 0o777).toBe(0o555);
    expect(await readFile(join(data, "mine", "file.bin"))).toEqual(MINE_BYTES);
  });

  it("puts the tree back whole when its manifest may not be removed after the move", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const { data, meta, flags } = await twoOwners("prune-manifest", true);
    // The tree this user's (it may move it), its manifest root's in a manifests directory this
    // user may not write.
    const tree = join(data, "old");
    await chown(tree, OTHER_UID, OTHER_UID);
    const manifests = join(meta, "manifests");
    await chmod(manifests, 0o755);
    const manifestText = await readFile(join(manifests, "old.json"), "utf8");
    const result = pruneAsOther(flags);
    expect(result.status, result.stderr).toBe(0);
    // `mine` too: its manifest is in the same directory.
    expect(result.removed).toEqual([]);
    const why = result.kept?.find((entry) => entry.name === "old")?.keptBecause ?? "";
    expect(why).toContain("this user may not remove it: removing its manifest was refused");
    expect(why).toContain(`(EACCES: permission denied, ${join(manifests, "old.json")})`);
    // Back at its path, read-only, under its manifest; nothing left aside.
    expect(await readFile(join(tree, "file.bin"))).toEqual(OLD_BYTES);
    expect((await stat(tree)).mode & 0o777).toBe(0o555);
    expect(await readFile(join(manifests, "old.json"), "utf8")).toBe(manifestText);
    expect((await readdir(join(meta, "tmp"))).filter((n) => n.startsWith("pruned."))).toEqual([]);
    const again = asOtherUser(
      ["fetch", "--datasets", "-", ...flags, "--json"],
      JSON.stringify([dataset("old")]),
    );
    expect(again.status, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout).datasets[0]).toMatchObject({ cached: true });
  });

  it("any other storage error on the way is STORAGE (exit 7), never INTERNAL, and leaves the dataset whole", async () => {
    const { data, meta, flags } = await teamStorage("prune-other-error");
    const byRoot = asRoot(["fetch", "--datasets", "-", ...flags], JSON.stringify([dataset("old")]));
    expect(byRoot.status, byRoot.stderr).toBe(0);
    const month = new Date(Date.now() - 30 * 86_400_000);
    await utimes(join(meta, "used", "old"), month, month);
    // Where prune moves datasets aside, a file: its mkdir fails (EEXIST), a raw error.
    await rmdir(join(meta, "tmp"));
    await writeFile(join(meta, "tmp"), "");
    const result = await runCli(["prune", "--older-than", "1d", ...flags], { env: testEnv() });
    expect(result.code, result.stderr).toBe(7);
    expect(result.stderr).not.toContain("bug in dsfetch");
    expect(result.stderr).toContain(`cannot write to ${join(data, "old")}`);
    // The file in the way named, not a bare EEXIST (exploratory review, 2026-12-07).
    expect(result.stderr).toContain(
      `${join(meta, "tmp")} is in the way: it exists and is not a directory (move it away)`,
    );
    expect(await readFile(join(data, "old", "file.bin"))).toEqual(OLD_BYTES);
    expect((await stat(join(data, "old"))).mode & 0o777).toBe(0o555);
  });
});
