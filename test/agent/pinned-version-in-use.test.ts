// Two jobs that pin two versions of one object share its path (SPEC §2: no etag in the
// datasets array, so no version in the path). A second job swapped its version in under the
// first, which then read the other version's bytes through its mount (review, 2026-12-05).
// Now the pinned version goes to an ephemeral volume while the other is in use (or, when the
// path is already an ephemeral one, fails PATH_TAKEN), and the job keeps reading its version.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { type Started, start } from "../harness/cli-process.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let v1: string;
let v2: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-pinned-in-use-"));
  bucket = await createBucket("pinned", { versioned: true });
  v1 = (await putObject(bucket, "v.txt", "one")).versionId as string;
  v2 = (await putObject(bucket, "v.txt", "two-two")).versionId as string;
});

interface Job {
  readonly running: Started;
  release(): Promise<void>;
}
const jobs: Job[] = [];

afterAll(async () => {
  // A job left waiting by a failed assertion would loop for good (found: five of them).
  for (const started of jobs) {
    await started.release().catch(() => {});
    started.running.child.kill("SIGKILL");
  }
  await rm(root, { recursive: true, force: true });
});

/** A job (dsfetch run) that reads v.txt, waits for `go`, then reads it again. */
function job(name: string, entry: object, flags: string[], env: Record<string, string>): Job {
  const go = join(root, `go-${name}`);
  const running = start(
    [
      "run",
      "--datasets",
      "-",
      ...flags,
      "--mount-root",
      join(root, `mnt-${name}`),
      "--",
      "sh",
      "-c",
      `cat "$DSFETCH_PATH_V_TXT/v.txt"; echo; while [ ! -e '${go}' ]; do sleep 0.1; done; cat "$DSFETCH_PATH_V_TXT/v.txt"; echo`,
    ],
    env,
    JSON.stringify([entry]),
  );
  const started = { running, release: () => writeFile(go, "") };
  jobs.push(started);
  return started;
}

describe("a pinned version whose path holds another version in use", () => {
  it("shared storage: staged into an ephemeral volume, saying why; the job keeps its version", async () => {
    const storage = join(root, "shared");
    await mkdir(storage);
    const ephemeral = join(root, "eph-1");
    const flags = ["--storage-root", storage, "--team", "t"];
    const env = { ...testEnv(), DSFETCH_EPHEMERAL_ROOT: ephemeral };
    const first = job("a", { uri: `s3://${bucket}/v.txt`, versionId: v1 }, flags, env);
    await expect.poll(() => first.running.stdout(), { timeout: 30_000 }).toContain("one");

    // plan says where fetch will stage it.
    const planned = await runCli(["plan", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: JSON.stringify([{ uri: `s3://${bucket}/v.txt`, versionId: v2 }]),
    });
    expect(planned.code, planned.stderr).toBe(0);
    expect(JSON.parse(planned.stdout).datasets[0]).toMatchObject({
      volume: "ephemeral",
      fallback: expect.stringMatching(/holds another version of .* that jobs are using/),
    });

    const second = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: JSON.stringify([{ uri: `s3://${bucket}/v.txt`, versionId: v2 }]),
    });
    expect(second.code, second.stderr).toBe(0);
    const staged = JSON.parse(second.stdout).datasets[0];
    expect(staged).toMatchObject({ volume: "ephemeral", versionId: v2 });
    expect(staged.fallback).toMatch(
      /holds another version of .* that jobs are using \(.* pid \d+\)/,
    );
    expect(second.stderr).toMatch(/not replaced under them; staging into an ephemeral volume/);
    expect(await readFile(join(staged.path, "v.txt"), "utf8")).toBe("two-two");
    expect(await readFile(join(storage, "t", "data", "v.txt", "v.txt"), "utf8")).toBe("one");

    await first.release();
    expect((await first.running.exit).code, first.running.stderr()).toBe(0);
    expect(first.running.stdout().trim().split("\n")).toEqual(["one", "one"]);

    // No job now: the pinned version replaces the other in shared storage.
    const third = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: JSON.stringify([{ uri: `s3://${bucket}/v.txt`, versionId: v2 }]),
    });
    expect(third.code, third.stderr).toBe(0);
    expect(JSON.parse(third.stdout).datasets[0]).toMatchObject({ volume: "shared" });
    expect(await readFile(join(storage, "t", "data", "v.txt", "v.txt"), "utf8")).toBe("two-two");
  }, 120_000);

  it("an unpinned job's version, replaced by a pinned one: the same (it was switched to v1)", async () => {
    const storage = join(root, "shared-2");
    await mkdir(storage);
    const flags = ["--storage-root", storage, "--team", "t"];
    const env = { ...testEnv(), DSFETCH_EPHEMERAL_ROOT: join(root, "eph-2") };
    const first = job("b", { uri: `s3://${bucket}/v.txt` }, flags, env);
    await expect.poll(() => first.running.stdout(), { timeout: 30_000 }).toContain("two-two");
    const second = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: JSON.stringify([{ uri: `s3://${bucket}/v.txt`, versionId: v1 }]),
    });
    expect(second.code, second.stderr).toBe(0);
    expect(JSON.parse(second.stdout).datasets[0]).toMatchObject({ volume: "ephemeral" });
    await first.release();
    expect((await first.running.exit).code, first.running.stderr()).toBe(0);
    expect(first.running.stdout().trim().split("\n")).toEqual(["two-two", "two-two"]);
  }, 120_000);

  it("an ephemeral path (two jobs of one user share the default root): PATH_TAKEN, nothing replaced", async () => {
    const ephemeral = join(root, "eph-3");
    const flags = ["--storage-root", join(root, "no-shared"), "--team", "t"];
    const env = { ...testEnv(), DSFETCH_EPHEMERAL_ROOT: ephemeral };
    const volume = { kind: "dynamic", size: "1Mi" };
    const first = job(
      "c",
      { uri: `s3://${bucket}/v.txt`, versionId: v1, volumeOptions: volume },
      flags,
      env,
    );
    await expect.poll(() => first.running.stdout(), { timeout: 30_000 }).toContain("one");
    const input = JSON.stringify([
      { uri: `s3://${bucket}/v.txt`, versionId: v2, volumeOptions: volume },
    ]);
    // plan says what fetch will refuse.
    const planned = await runCli(["plan", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: input,
    });
    expect(JSON.parse(planned.stdout).datasets[0].error.code, planned.stderr).toBe("PATH_TAKEN");
    const second = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env,
      stdin: input,
    });
    expect(second.code, second.stderr).toBe(7);
    const error = JSON.parse(second.stdout).datasets[0].error;
    expect(error.code).toBe("PATH_TAKEN");
    expect(error.message).toContain(
      `the pinned version (versionId ${v2}) is not swapped in under them`,
    );
    expect(error.hint).toMatch(/another "name"/);
    await first.release();
    expect((await first.running.exit).code, first.running.stderr()).toBe(0);
    expect(first.running.stdout().trim().split("\n")).toEqual(["one", "one"]);
  }, 120_000);
});
