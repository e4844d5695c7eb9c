// A stale lock this user may not take over: another user's lock in a locks directory this
// user cannot remove it from (one user's umask made it 0755 on a storage several users share;
// here, sticky 1777, which still does: a locks directory this user cannot write at all is now
// found before the lock, and the dataset staged into an ephemeral volume: team-storage.test.ts).
// The waiter could neither age it nor remove it, so the lock never changed, and the wait, which
// ends only on a lock that stops looking stale, went on forever, past DSFETCH_LOCK_WAIT
// (review, 2026-12-06). Now: STORAGE (exit 7) naming the lock and what to do. Needs root:
// the waiter runs as uid 65534 (setpriv).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdir, mkdtemp, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { baseEnv, CLI_ENTRY, runCli } from "../harness/cli.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const OTHER_UID = 65534;
let scratch: string;
let bucket: string;

beforeAll(async () => {
  requireRoot("a second user (setpriv) and a lock of another owner");
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-lock-perm-"));
  await chmod(scratch, 0o755);
  bucket = await createBucket("lockperm");
  await putObject(bucket, "small.bin", randomBytes(4096));
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const datasets = () => JSON.stringify([{ uri: `s3://${bucket}/small.bin`, name: "small" }]);

/** `dsfetch <args>` as uid OTHER_UID; `status` null when it was still running at the timeout. */
function asOtherUser(args: readonly string[], timeoutMs = 30_000) {
  const env = baseEnv({ ...testEnv(), DSFETCH_LOCK_STALE: "5", DSFETCH_LOCK_WAIT: "5" });
  const ids = ["--reuid", String(OTHER_UID), "--regid", String(OTHER_UID), "--clear-groups"];
  const started = performance.now();
  const result = spawnSync("setpriv", [...ids, process.execPath, CLI_ENTRY, ...args], {
    env,
    input: datasets(),
    encoding: "utf8",
    timeout: timeoutMs,
  });
  return { ...result, seconds: (performance.now() - started) / 1000 };
}

/**
 * A storage every user may write, with a sticky locks directory (root's, 1777: nobody removes
 * another user's entries there), holding root's lock of the dataset `small`, left an hour ago
 * by a holder on another machine.
 */
async function storageWithForeignStaleLock(storage: string) {
  const data = join(storage, "t", "data");
  const meta = join(data, ".dsfetch");
  await mkdir(meta, { recursive: true });
  for (const dir of [storage, join(storage, "t"), data, meta]) await chmod(dir, 0o777);
  const locks = join(meta, "locks");
  await mkdir(locks, { recursive: true });
  await chmod(locks, 0o1777);
  const lock = join(locks, "small.lock");
  await mkdir(lock);
  await writeFile(
    `${lock}.holder.json`,
    JSON.stringify({ host: "gone-node", pid: 4242, since: new Date().toISOString() }),
  );
  const anHourAgo = new Date(Date.now() - 3_600_000);
  await utimes(lock, anHourAgo, anHourAgo);
  return { data, lock, anHourAgo };
}

/** uid OTHER_UID can read this checkout (a clone under /root could not). */
function otherUserCanRun(): boolean {
  const ids = ["--reuid", String(OTHER_UID), "--regid", String(OTHER_UID), "--clear-groups"];
  const code = `require("fs").accessSync(${JSON.stringify(CLI_ENTRY)})`;
  return spawnSync("setpriv", [...ids, process.execPath, "-e", code]).status === 0;
}

describe("a stale lock of another user that this user may not take over", () => {
  it("fails the staging with STORAGE (exit 7) naming the lock and what to do, instead of waiting forever", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const storage = join(scratch, "storage");
    const { data, lock, anHourAgo } = await storageWithForeignStaleLock(storage);
    const result = asOtherUser([
      "fetch",
      "--datasets",
      "-",
      "--storage-root",
      storage,
      "--team",
      "t",
    ]);
    expect(result.status, `still waiting after ${result.seconds} s: ${result.stderr}`).toBe(7);
    expect(result.stderr).toContain(`the lock ${lock} of gone-node pid 4242 is stale`);
    expect(result.stderr).toContain("this user may not take it over");
    expect(result.stderr).toContain(`rmdir ${lock}`);
    // Left as it was: root's lock, and nothing published.
    expect((await stat(lock)).mtimeMs).toBe(anHourAgo.getTime());
    await expect(stat(join(data, "small"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("prune keeps that dataset and says why (it waited forever too), and goes on with the others", async (ctx) => {
    if (!otherUserCanRun()) {
      ctx.skip(`SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}`);
      return;
    }
    const storage = join(scratch, "prune-storage");
    await mkdir(storage);
    const published = runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "t"],
      {
        env: testEnv(),
        stdin: datasets(),
      },
    );
    expect((await published).code).toBe(0);
    const { data, lock, anHourAgo } = await storageWithForeignStaleLock(storage);
    const used = join(data, ".dsfetch", "used", "small");
    await utimes(used, anHourAgo, anHourAgo);
    const result = asOtherUser([
      "prune",
      "--older-than",
      "1s",
      "--storage-root",
      storage,
      "--team",
      "t",
      "--json",
    ]);
    expect(result.status, `${result.seconds} s: ${result.stderr}`).toBe(0);
    const { removed, kept } = JSON.parse(result.stdout) as {
      removed: unknown[];
      kept: Array<{ name: string; keptBecause: string }>;
    };
    expect(removed).toEqual([]);
    expect(kept.map((entry) => entry.name)).toEqual(["small"]);
    expect(kept[0]?.keptBecause).toContain("this user may not take it over");
    expect(kept[0]?.keptBecause).toContain(`rmdir ${lock}`);
    await expect(stat(join(data, "small"))).resolves.toBeDefined();
  });
});
