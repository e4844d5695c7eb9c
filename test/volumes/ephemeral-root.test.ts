// The default ephemeral root is one per user, `<tmpdir>/dsfetch-ephemeral-<uid>`, and is refused
// when it is not this user's own directory (review, 2026-12-05: one shared root, made 0700 by
// its first user, failed every other user with EACCES; a root made in advance by another user
// in /tmp would have held this user's datasets, CWE-377). Needs root: the second user is
// uid 65534 (setpriv), and a root owned by another user is made with chown.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, chown, lstat, mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultEphemeralRoot } from "../../src/config/settings.ts";
import { DsfetchError } from "../../src/errors.ts";
import { ensureDefaultEphemeralRoot } from "../../src/volumes/ephemeral-root.ts";
import { baseEnv, CLI_ENTRY, runCli } from "../harness/cli.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const OTHER_UID = 65534;

/** The DsfetchError `promise` rejects with. */
async function thrown(promise: Promise<unknown>): Promise<DsfetchError> {
  const error = await promise.then(
    () => new Error("expected a DsfetchError, but it resolved"),
    (reason: unknown) => reason,
  );
  if (error instanceof DsfetchError) return error;
  throw error;
}
let scratch: string;
let bucket: string;
const body = randomBytes(64 * 1024);

beforeAll(async () => {
  requireRoot("a second user (setpriv) and directories of another owner (chown)");
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-eph-root-"));
  // A /tmp of its own: world-writable with the sticky bit, like /tmp.
  await chmod(scratch, 0o1777);
  bucket = await createBucket("ephroot");
  await putObject(bucket, "small.bin", body);
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const datasets = () =>
  JSON.stringify([
    { uri: `s3://${bucket}/small.bin`, name: "small", volumeOptions: { kind: "dynamic" } },
  ]);

/** `dsfetch fetch` of one ephemeral dataset with TMPDIR=`tmp` and no --ephemeral-root. */
function fetchAs(uid: number | undefined, tmp: string) {
  const env = baseEnv({ ...testEnv(), TMPDIR: tmp, DSFETCH_EPHEMERAL_ROOT: undefined });
  const args = [CLI_ENTRY, "fetch", "--datasets", "-", "--json"];
  if (uid === undefined)
    return runCli(["fetch", "--datasets", "-", "--json"], { env, stdin: datasets() });
  const result = spawnSync(
    "setpriv",
    ["--reuid", String(uid), "--regid", String(uid), "--clear-groups", process.execPath, ...args],
    { env, input: datasets(), encoding: "utf8", timeout: 60_000 },
  );
  return Promise.resolve({ code: result.status, stdout: result.stdout, stderr: result.stderr });
}

describe("the default ephemeral root", () => {
  it("is one per user: root, then uid 65534, both stage the same dataset", async (ctx) => {
    const tmp = join(scratch, "shared-tmp");
    await mkdir(tmp, { mode: 0o1777 });
    await chmod(tmp, 0o1777);
    // The other user must be able to run this checkout (a clone under /root could not).
    const probe = spawnSync(
      "setpriv",
      [
        "--reuid",
        String(OTHER_UID),
        "--regid",
        String(OTHER_UID),
        "--clear-groups",
        process.execPath,
        "-e",
        `require("fs").accessSync(${JSON.stringify(CLI_ENTRY)})`,
      ],
      { encoding: "utf8" },
    );
    if (probe.status !== 0) {
      ctx.skip(
        `SKIPPED, not passed: uid ${OTHER_UID} cannot read ${CLI_ENTRY}: ${probe.stderr.trim()}`,
      );
      return;
    }
    const first = await fetchAs(undefined, tmp);
    expect(first.code, first.stderr).toBe(0);
    const second = await fetchAs(OTHER_UID, tmp);
    expect(second.code, second.stderr).toBe(0);
    for (const [uid, result] of [
      [0, first],
      [OTHER_UID, second],
    ] as const) {
      const root = join(tmp, `dsfetch-ephemeral-${uid}`);
      const staged = JSON.parse(result.stdout).datasets[0];
      expect(staged).toMatchObject({ volume: "ephemeral", path: join(root, "small") });
      expect(await readFile(join(root, "small", "small.bin"))).toEqual(body);
      const made = await lstat(root);
      expect({ uid: made.uid, mode: (made.mode & 0o777).toString(8) }).toEqual({
        uid,
        mode: "700",
      });
    }
  });

  it("owned by another user: refused before anything is read or written there (exit 7)", async () => {
    const tmp = join(scratch, "planted");
    await mkdir(tmp);
    const root = join(tmp, "dsfetch-ephemeral-0");
    await mkdir(root, { mode: 0o755 });
    await chown(root, OTHER_UID, OTHER_UID);
    const result = await fetchAs(undefined, tmp);
    expect(result.code, result.stderr).toBe(7);
    const error = JSON.parse(result.stdout).datasets[0].error;
    expect(error).toMatchObject({ code: "STORAGE" });
    expect(error.message).toBe(
      `${root}, the default ephemeral root, belongs to uid ${OTHER_UID}, not to this user (uid 0): another user could change the datasets staged there`,
    );
    expect(error.hint).toMatch(/--ephemeral-root/);
    expect(spawnSync("find", [root, "-mindepth", "1"], { encoding: "utf8" }).stdout).toBe("");
  });

  it("is made 0700 when missing, refused when writable by others, a link or another's; absolute with a relative TMPDIR", async () => {
    const saved = process.env.TMPDIR;
    const tmp = join(scratch, "unit");
    await mkdir(tmp);
    process.env.TMPDIR = tmp;
    try {
      const root = defaultEphemeralRoot();
      expect(root).toBe(join(tmp, `dsfetch-ephemeral-${process.getuid?.()}`));
      // Looked at only (plan): not made.
      await ensureDefaultEphemeralRoot(root, { create: false });
      await expect(lstat(root)).rejects.toThrow(/ENOENT/);
      // Made here, not by a later recursive mkdir (a planted one would have been taken).
      await ensureDefaultEphemeralRoot(root);
      expect(((await lstat(root)).mode & 0o777).toString(8)).toBe("700");
      await ensureDefaultEphemeralRoot(root);
      await chmod(root, 0o777);
      expect((await thrown(ensureDefaultEphemeralRoot(root))).message).toMatch(
        /may be written by other users \(mode 777\)/,
      );
      expect((await thrown(ensureDefaultEphemeralRoot(root, { create: false }))).message).toMatch(
        /mode 777/,
      );
      await chmod(root, 0o720);
      expect((await thrown(ensureDefaultEphemeralRoot(root))).message).toMatch(/mode 720/);
      await rm(root, { recursive: true });
      await mkdir(join(tmp, "elsewhere"), { mode: 0o700 });
      await symlink(join(tmp, "elsewhere"), root);
      expect((await thrown(ensureDefaultEphemeralRoot(root))).message).toMatch(
        /is a symbolic link/,
      );
      // A relative TMPDIR: the root is still absolute (run's mount link to it dangled).
      process.env.TMPDIR = "reltmp";
      expect(defaultEphemeralRoot()).toBe(
        join(process.cwd(), "reltmp", `dsfetch-ephemeral-${process.getuid?.()}`),
      );
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  it("given explicitly, even at the default path, is the user's choice: not checked", async () => {
    const tmp = join(scratch, "explicit");
    await mkdir(tmp);
    const root = join(tmp, "dsfetch-ephemeral-0");
    await mkdir(root, { mode: 0o777 });
    await chmod(root, 0o777);
    const result = await runCli(["fetch", "--datasets", "-", "--json"], {
      env: baseEnv({ ...testEnv(), TMPDIR: tmp, DSFETCH_EPHEMERAL_ROOT: root }),
      stdin: datasets(),
    });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).datasets[0]).toMatchObject({ path: join(root, "small") });
  });

  it("plan refuses what fetch would refuse (it said 'cached')", async () => {
    const tmp = join(scratch, "plan");
    await mkdir(tmp);
    const root = join(tmp, "dsfetch-ephemeral-0");
    const fetched = await fetchAs(undefined, tmp);
    expect(fetched.code, fetched.stderr).toBe(0);
    await chmod(root, 0o777);
    const planned = await runCli(["plan", "--datasets", "-", "--json"], {
      env: baseEnv({ ...testEnv(), TMPDIR: tmp }),
      stdin: datasets(),
    });
    expect(planned.code, planned.stderr).toBe(7);
    expect(JSON.parse(planned.stdout).datasets[0].error).toMatchObject({
      code: "STORAGE",
      message: expect.stringMatching(/the default ephemeral root, may be written by other users/),
    });
  });
});
