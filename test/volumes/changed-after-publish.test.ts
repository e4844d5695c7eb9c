// A published dataset changed afterwards is not reused: a job running as the user that staged
// it can make it writable (`chmod -R u+w`, a script writing its outputs into /data/<name>),
// and every later run reused the changed files as verified (exploratory review, 2026-12-07).
// The manifest records the tree's seal (volumes/tree-seal.ts); a tree that no longer has it
// is staged again, or, while jobs use it, left to them and staged into an ephemeral volume.

import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { locationIn } from "../../src/volumes/layout.ts";
import { takeLease } from "../../src/volumes/usage.ts";
import { CLI_ENTRY, runCli, runProgram } from "../harness/cli.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-changed-"));
let bucket: string;
let etag: string;

beforeAll(async () => {
  bucket = await createBucket("changed");
  await putObject(bucket, "set/a.txt", "alpha\n");
  await putObject(bucket, "set/sub/b.txt", "bravo\n");
  etag = (await putObject(bucket, "model.bin", "weights")).etag;
});
afterAll(() => {
  // Published trees are read-only.
  for (const dir of [root]) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      chmodTree(dir);
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

function chmodTree(dir: string): void {
  chmodSync(dir, 0o755);
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) chmodTree(path);
    else if (entry.isFile()) chmodSync(path, 0o644);
  }
}

function fetchArgs(storage: string): string[] {
  return ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
}

const folder = () => JSON.stringify([{ uri: `s3://${bucket}/set/`, name: "set" }]);

/** A storage root both root and uid 65534 may write (needs root: setpriv). */
function storageForTwoUsers(): string {
  requireRoot("a second user (setpriv)");
  const storage = mkdtempSync(join(root, "storage-"));
  chmodSync(root, 0o755);
  chmodSync(storage, 0o777);
  return storage;
}

/** `args` run as uid 65534 (setpriv), `input` on its standard input. */
function asNobody(
  args: readonly string[],
  input = "",
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const ids = ["--reuid", "65534", "--regid", "65534", "--clear-groups"];
  return runProgram("setpriv", [...ids, ...args], { env: testEnv(), stdin: input }).then(
    ({ code, stdout, stderr }) => ({ status: code, stdout, stderr }),
  );
}

async function stageFolder(storage: string) {
  const run = await runCli(fetchArgs(storage), { env: testEnv(), stdin: folder() });
  expect(run.code, run.stderr).toBe(0);
  return { run, result: JSON.parse(run.stdout).datasets[0] };
}

/** `plan` of the folder: its --json entry, and the human output. */
async function planFolder(storage: string) {
  const args = ["plan", ...fetchArgs(storage).slice(1)];
  const json = await runCli(args, { env: testEnv(), stdin: folder() });
  expect(json.code, json.stderr).toBe(0);
  const human = await runCli(
    args.filter((arg) => arg !== "--json"),
    { env: testEnv(), stdin: folder() },
  );
  expect(human.code, human.stderr).toBe(0);
  return { json: JSON.parse(json.stdout).datasets[0], human: human.stderr };
}

describe.concurrent("a published dataset changed afterwards", () => {
  it("unchanged, it is reused; a file made writable and rewritten longer, cut short, added or removed: staged again, as published", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const { result: first } = await stageFolder(storage);
    const path: string = first.path;
    expect(first.cached).toBe(false);

    // Unchanged: reused, nothing said (no false alarm).
    const again = await stageFolder(storage);
    expect(again.result.cached).toBe(true);
    expect(again.run.stderr).not.toContain("was changed after it was published");

    const changes: [string, () => void, string][] = [
      [
        "a file rewritten, longer",
        () => {
          chmodSync(join(path, "a.txt"), 0o644);
          writeFileSync(join(path, "a.txt"), "ALPHA, again\n");
        },
        "files were renamed, resized, or replaced by others of another kind, with the same number of entries",
      ],
      [
        "a file cut short",
        () => {
          chmodSync(join(path, "sub", "b.txt"), 0o644);
          writeFileSync(join(path, "sub", "b.txt"), "BR");
        },
        "files were renamed, resized, or replaced by others of another kind, with the same number of entries",
      ],
      [
        "a file added",
        () => {
          chmodSync(join(path, "sub"), 0o755);
          writeFileSync(join(path, "sub", "outputs.log"), "epoch 1\n");
        },
        "files or directories were added (net: 1 entry more than when it was published, 4 not 3)",
      ],
      [
        "a file removed",
        () => {
          chmodSync(path, 0o755);
          unlinkSync(join(path, "a.txt"));
        },
        "files or directories were removed (net: 1 entry fewer than when it was published, 2 not 3)",
      ],
      [
        // Root's run read through it and reused it; the job reading it failed on it.
        "a file made unreadable (chmod 0)",
        () => chmodSync(join(path, "sub", "b.txt"), 0o000),
        "files or directories in it were made unreadable (chmod: their owner may no longer read them)",
      ],
    ];
    for (const [what, change, said] of changes) {
      change();
      const { run, result } = await stageFolder(storage);
      expect(result.cached, what).toBe(false);
      expect(run.stderr, what).toContain(`${path} was changed after it was published (`);
      expect(run.stderr, what).toContain(`): ${said}; it is not used`);
      // --json says why it was downloaded again.
      expect(result.replaced, what).toMatchObject({ changed: true, change: said });
      expect(run.stderr, what).toContain("it is not used: a fresh copy of s3://");
      expect(readFileSync(join(path, "a.txt"), "utf8"), what).toBe("alpha\n");
      expect(readFileSync(join(path, "sub", "b.txt"), "utf8"), what).toBe("bravo\n");
      expect(readdirSync(path).sort(), what).toEqual(["a.txt", "sub"]);
      expect(readdirSync(join(path, "sub")).sort(), what).toEqual(["b.txt"]);
      expect(statSync(join(path, "a.txt")).mode & 0o777, what).toBe(0o444);
      expect(statSync(join(path, "sub")).mode & 0o777, what).toBe(0o555);
      expect(statSync(join(path, "sub", "b.txt")).mode & 0o777, what).toBe(0o444);
      // And sealed again: the next run reuses it.
      const next = await stageFolder(storage);
      expect(next.result.cached, what).toBe(true);
      expect(next.run.stderr, what).not.toContain("was changed after it was published");
    }
  }, 120_000);

  it("list --check says which datasets were changed since they were published, and what their files hold now", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const { result } = await stageFolder(storage);
    const path: string = result.path;
    const list = async (...flags: string[]) => {
      const args = ["list", "--storage-root", storage, "--team", "ml", ...flags];
      const json = await runCli([...args, "--json"], { env: testEnv() });
      expect(json.code, json.stderr).toBe(0);
      const human = await runCli(args, { env: testEnv() });
      expect(human.code, human.stderr).toBe(0);
      return { entry: JSON.parse(json.stdout).datasets[0], human: human.stderr };
    };
    expect((await list("--check")).entry).toMatchObject({ state: "intact", bytes: 12 });
    // Without --check, manifests only: no walk, no state.
    expect((await list()).entry.state).toBeUndefined();
    chmodSync(join(path, "sub"), 0o755);
    writeFileSync(join(path, "sub", "outputs.log"), "epoch 1, epoch 2\n");
    const changed = await list("--check");
    expect(changed.entry).toMatchObject({
      state: "changed",
      change:
        "files or directories were added (net: 1 entry more than when it was published, 4 not 3)",
      bytes: 12,
      bytesNow: 29,
    });
    expect(changed.human).toMatch(/STATE/);
    expect(changed.human).toContain(
      `set: ${path} was changed after it was published (files or directories were added (net: 1 entry more than when it was published, 4 not 3)); its files hold 29 B now, not the 12 B listed: the next fetch of it replaces it`,
    );
    const unchanged = await list();
    expect(unchanged.human).not.toMatch(/STATE|was changed/);
  }, 60_000);

  it("a copy of a published dataset (cp -a): refused, naming its manifest and the tree field to remove; reused once it is removed", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const { result } = await stageFolder(storage);
    const path: string = result.path;
    const data = join(storage, "ml", "data");
    const copied = spawnSync("sh", ["-c", 'mv "$0" "$0.old" && cp -a "$0.old" "$0"', path]);
    expect(copied.status, String(copied.stderr)).toBe(0);
    const refused = await runCli(fetchArgs(storage), { env: testEnv(), stdin: folder() });
    expect(refused.code, refused.stderr).toBe(7);
    const manifestPath = join(data, ".dsfetch", "manifests", "set.json");
    const error = JSON.parse(refused.stdout).datasets[0].error;
    expect(error.code).toBe("PATH_TAKEN");
    // It said "no manifest of dsfetch's names it", with one there.
    expect(error.message).toContain(
      `${path} is already there, but its manifest ${manifestPath} names another directory than this one (inode `,
    );
    expect(error.message).toContain("a copy of the storage (cp -a, rsync)");
    expect(error.hint).toContain(`remove the "tree" field from '${manifestPath}'`);
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    delete manifest.tree;
    writeFileSync(manifestPath, JSON.stringify(manifest));
    const reused = await stageFolder(storage);
    expect(reused.result.cached).toBe(true);
    expect(reused.run.stderr).not.toContain("was changed after it was published");
    expect(reused.run.stderr).not.toContain("modification times");
  }, 60_000);

  it("made writable and left as it was, it is the same data: reused, and said (not silently given writable)", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const { result } = await stageFolder(storage);
    const unchanged = await stageFolder(storage);
    expect(unchanged.run.stderr).not.toContain("made writable");
    chmodTree(result.path);
    const again = await stageFolder(storage);
    expect(again.result.cached).toBe(true);
    // --json says it too, for automation (only the warning did).
    expect(again.result.madeWritable).toBe(true);
    expect(again.result.timesChanged).toBeUndefined();
    expect(unchanged.result.madeWritable).toBeUndefined();
    expect(again.run.stderr).not.toContain("was changed after it was published");
    expect(again.run.stderr).not.toContain("modification times");
    expect(again.run.stderr).toContain(
      `files of ${result.path} have been made writable by their owner since it was published (`,
    );
    expect(again.run.stderr).toContain(`the owner can run chmod -R a-w ${result.path}`);
    // What is known, not more: its bytes were not read (it said "the data is as published",
    // also of files edited since: second exploratory tester, 2026-12-08).
    expect(again.run.stderr).toContain(
      "its names and sizes are as published (its bytes were not read",
    );
    expect(again.run.stderr).not.toContain("the data is as published");
    // Not chmod'ed back by name (a link planted mid-walk would be followed).
    expect(statSync(join(result.path, "a.txt")).mode & 0o777).toBe(0o644);
    // plan says it too (it said nothing).
    const plan = await planFolder(storage);
    expect(plan.json).toMatchObject({ cached: true, madeWritable: true });
    expect(plan.json.timesChanged).toBeUndefined();
    expect(plan.human).toContain(
      `set: files of ${result.path} have been made writable by their owner since it was published, or by every user: fetch would use it as it is, and say so`,
    );
  }, 60_000);

  it("a file rewritten in place with as many bytes (only its time differs): used, with a warning that says what to do", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const { result } = await stageFolder(storage);
    const file = join(result.path, "a.txt");
    chmodSync(file, 0o644);
    writeFileSync(file, "ALPHA\n");
    utimesSync(file, new Date(), new Date(Date.now() + 5_000));
    const again = await stageFolder(storage);
    expect(again.result.cached).toBe(true);
    expect(again.result.timesChanged).toBe(true);
    expect(again.run.stderr).toContain(
      `files of ${result.path} have other modification times than when it was published (`,
    );
    expect(again.run.stderr).toContain(`chmod -R u+w ${result.path} && rm -rf ${result.path}`);
    expect(again.run.stderr).not.toContain("was changed after it was published");
    // plan says it too (it said nothing).
    const plan = await planFolder(storage);
    expect(plan.json).toMatchObject({ cached: true, timesChanged: true, madeWritable: true });
    expect(plan.human).toContain(
      `set: files of ${result.path} have other modification times than when it was published, with the same names and sizes`,
    );
  }, 60_000);

  it("a pinned object changed and in use by a job: left to that job, staged into an ephemeral volume; plan says so; once the job is done, staged again in place", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const ephemeral = mkdtempSync(join(root, "ephemeral-"));
    chmodSync(ephemeral, 0o700);
    const datasets = JSON.stringify([{ uri: `s3://${bucket}/model.bin`, name: "model", etag }]);
    const args = [...fetchArgs(storage), "--ephemeral-root", ephemeral];
    const staged = await runCli(args, { env: testEnv(), stdin: datasets });
    expect(staged.code, staged.stderr).toBe(0);
    const path: string = JSON.parse(staged.stdout).datasets[0].path;
    const file = join(path, "model.bin");
    chmodSync(file, 0o644);
    writeFileSync(file, "WEIGHTS, tuned");

    const lease = await takeLease(locationIn(join(storage, "ml", "data"), `model-${etag}`));
    try {
      const plan = await runCli(["plan", ...args.slice(1)], { env: testEnv(), stdin: datasets });
      expect(plan.code, plan.stderr).toBe(0);
      const planned = JSON.parse(plan.stdout).datasets[0];
      expect(planned).toMatchObject({ volume: "ephemeral", path: join(ephemeral, "model") });
      expect(planned.fallback).toContain(
        `${path} was changed after it was published (files were renamed, resized, or replaced by others of another kind, with the same number of entries), and jobs are using it`,
      );

      const busy = await runCli(args, { env: testEnv(), stdin: datasets });
      expect(busy.code, busy.stderr).toBe(0);
      const result = JSON.parse(busy.stdout).datasets[0];
      expect(result.path).toBe(join(ephemeral, "model"));
      // As plan said it (fetch's lacked what changed).
      expect(result.fallback).toBe(planned.fallback);
      expect(readFileSync(join(result.path, "model.bin"), "utf8")).toBe("weights");
      // The job's copy is left as it is.
      expect(readFileSync(file, "utf8")).toBe("WEIGHTS, tuned");

      const strict = await runCli([...args, "--no-fallback"], { env: testEnv(), stdin: datasets });
      expect(strict.code, strict.stderr).toBe(7);
      expect(strict.stderr).toContain(
        `${path} was changed after it was published (files were renamed, resized, or replaced by others of another kind, with the same number of entries)`,
      );
    } finally {
      await lease.release();
    }
    const human = args.filter((arg) => arg !== "--json");
    const plan = await runCli(["plan", ...human.slice(1)], { env: testEnv(), stdin: datasets });
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stderr).toContain("no: changed");
    expect(plan.stderr).toContain(`model: ${path} was changed after it was published (`);
    expect(plan.stderr).toContain(
      "): files were renamed, resized, or replaced by others of another kind, with the same number of entries; fetch would stage it again",
    );
    expect(plan.stderr).toContain("fetch would stage it again");
    const done = await runCli(args, { env: testEnv(), stdin: datasets });
    expect(done.code, done.stderr).toBe(0);
    const result = JSON.parse(done.stdout).datasets[0];
    expect(result).toMatchObject({ path, cached: false });
    expect(readFileSync(file, "utf8")).toBe("weights");
    expect(existsSync(join(ephemeral, "model"))).toBe(true);
  }, 120_000);

  it("a copy of an older version, changed after it was published: plan and fetch --json say it was changed, not only stale", async () => {
    const storage = mkdtempSync(join(root, "storage-"));
    const args = fetchArgs(storage);
    const datasets = JSON.stringify([{ uri: `s3://${bucket}/stale.bin`, name: "stale" }]);
    const old = await putObject(bucket, "stale.bin", "version one");
    const staged = await runCli(args, { env: testEnv(), stdin: datasets });
    expect(staged.code, staged.stderr).toBe(0);
    const path: string = JSON.parse(staged.stdout).datasets[0].path;
    chmodSync(path, 0o755);
    writeFileSync(join(path, "outputs.log"), "epoch 1\n");
    const now = await putObject(bucket, "stale.bin", "version two");
    const change =
      "files or directories were added (net: 1 entry more than when it was published, 2 not 1)";
    const human = ["plan", ...args.slice(1).filter((arg) => arg !== "--json")];
    const [plan, table] = await Promise.all([
      runCli(["plan", ...args.slice(1)], { env: testEnv(), stdin: datasets }),
      runCli(human, { env: testEnv(), stdin: datasets }),
    ]);
    expect(plan.code, plan.stderr).toBe(0);
    // The older version it is (its etag), and that it was changed (it said only the former).
    expect(JSON.parse(plan.stdout).datasets[0]).toMatchObject({
      cached: false,
      etag: now.etag,
      replaces: { etag: old.etag, changed: true, change },
    });
    expect(table.stderr).toContain("no: changed");
    expect(table.stderr).toContain(`stale: ${path} was changed after it was published (`);
    const fetched = await runCli(args, { env: testEnv(), stdin: datasets });
    expect(fetched.code, fetched.stderr).toBe(0);
    expect(fetched.stderr).toContain(`${path} was changed after it was published (`);
    expect(JSON.parse(fetched.stdout).datasets[0]).toMatchObject({
      cached: false,
      etag: now.etag,
      replaced: { etag: old.etag, changed: true, change },
    });
    expect(readdirSync(path)).toEqual(["stale.bin"]);
    expect(readFileSync(join(path, "stale.bin"), "utf8")).toBe("version two");
  });

  it("a directory the owner's job made in it that another user may not read: that user's run stages its own copy (not a failure)", async () => {
    const storage = storageForTwoUsers();
    const { result } = await stageFolder(storage);
    const path: string = result.path;
    chmodSync(path, 0o755);
    const mkdir = spawnSync("sh", ["-c", 'umask 077 && mkdir "$0/outputs"', path]);
    expect(mkdir.status).toBe(0);
    chmodSync(join(storage, "ml", "data"), 0o777);
    const ephemeral = mkdtempSync(join(root, "ephemeral-"));
    chownSync(ephemeral, 65534, 65534);
    chmodSync(ephemeral, 0o700);
    const other = await asNobody(
      [process.execPath, CLI_ENTRY, ...fetchArgs(storage), "--ephemeral-root", ephemeral],
      folder(),
    );
    expect(other.status, other.stderr).toBe(0);
    expect(other.stderr).toContain(`${path} was changed after it was published`);
    expect(other.stderr).toContain(
      "a directory in it cannot be read by this user (EACCES): added or changed since it was published",
    );
    // Not "an older copy": it is this version, changed.
    expect(other.stderr).not.toContain("an older copy");
    expect(other.stderr).toContain(
      `${path} holds a copy changed since it was published, staged by uid 0, which this user (uid 65534) may not replace`,
    );
    const staged = JSON.parse(other.stdout).datasets[0];
    expect(staged.path).toBe(join(ephemeral, "set"));
    expect(readFileSync(join(staged.path, "a.txt"), "utf8")).toBe("alpha\n");
    // The owner's tree, with its job's directory, is left as it is.
    expect(existsSync(join(path, "outputs"))).toBe(true);
  }, 60_000);

  it("a directory its owner's job made unreadable (chmod 0), as a user other than root: replaced, and the old tree removed whole", async () => {
    const storage = storageForTwoUsers();
    const fetch = () =>
      asNobody([process.execPath, CLI_ENTRY, ...fetchArgs(storage), "--no-fallback"], folder());
    const first = await fetch();
    expect(first.status, first.stderr).toBe(0);
    const path: string = JSON.parse(first.stdout).datasets[0].path;
    const job = await asNobody([
      "sh",
      "-c",
      'chmod u+w "$0/sub" && echo out > "$0/sub/out.log" && chmod 0 "$0/sub"',
      path,
    ]);
    expect(job.status, job.stderr).toBe(0);
    const again = await fetch();
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toContain(`${path} was changed after it was published`);
    // Said as it is (it read "files were added, removed, renamed or resized").
    expect(again.stderr).toContain(
      "a directory in it cannot be read by this user (EACCES): added or changed since it was published",
    );
    expect(readFileSync(join(path, "sub", "b.txt"), "utf8")).toBe("bravo\n");
    // Nothing of the replaced tree left in the attempts' directory (it stayed for good).
    const tmp = join(storage, "ml", "data", ".dsfetch", "tmp");
    expect(readdirSync(tmp).filter((name) => name.startsWith("replaced."))).toEqual([]);
  }, 60_000);

  it("the dataset's own directory made unreadable by its owner (chmod 0) in a data directory others may write: staged into an ephemeral volume, the owner told how to undo it", async () => {
    const storage = storageForTwoUsers();
    const ephemeral = mkdtempSync(join(root, "ephemeral-"));
    chownSync(ephemeral, 65534, 65534);
    const args = [...fetchArgs(storage), "--ephemeral-root", ephemeral];
    const first = await asNobody([process.execPath, CLI_ENTRY, ...args], folder());
    expect(first.status, first.stderr).toBe(0);
    const path: string = JSON.parse(first.stdout).datasets[0].path;
    chmodSync(join(storage, "ml", "data"), 0o777);
    expect((await asNobody(["chmod", "0", path])).status).toBe(0);
    const said = `run \`chmod u+rwx ${path}\`, and the next run replaces it`;
    const plan = await asNobody([process.execPath, CLI_ENTRY, "plan", ...args.slice(1)], folder());
    expect(plan.status, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout).datasets[0]).toMatchObject({
      volume: "ephemeral",
      fallback: expect.stringContaining(said),
    });
    // It downloaded the folder, then failed STORAGE at the swap (exit 7), at every run.
    const again = await asNobody([process.execPath, CLI_ENTRY, ...args], folder());
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toContain(said);
    const staged = JSON.parse(again.stdout).datasets[0];
    expect(staged.path).toBe(join(ephemeral, "set"));
    expect(readFileSync(join(staged.path, "a.txt"), "utf8")).toBe("alpha\n");
    // Left as it is: its owner's to open again.
    expect(statSync(path).mode & 0o777).toBe(0);
    chmodSync(path, 0o555);
  }, 60_000);

  it("another user's tree made writable by its owner's job: root's run reuses it and says so, touching nothing", async () => {
    const storage = storageForTwoUsers();
    const staged = await asNobody([process.execPath, CLI_ENTRY, ...fetchArgs(storage)], folder());
    expect(staged.status, staged.stderr).toBe(0);
    const path: string = JSON.parse(staged.stdout).datasets[0].path;
    const job = await asNobody(["chmod", "-R", "u+w", path]);
    expect(job.status).toBe(0);
    const { run, result } = await stageFolder(storage);
    expect(result.cached).toBe(true);
    expect(run.stderr).toContain(
      `files of ${path} have been made writable by their owner since it was published (`,
    );
    expect(statSync(join(path, "a.txt")).mode & 0o777).toBe(0o644);
  }, 60_000);
});
