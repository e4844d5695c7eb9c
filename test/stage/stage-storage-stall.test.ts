// Shared storage that stops answering outside a download (reading a published manifest,
// publishing, a lock's wait): STALLED after DSFETCH_EXTRACT_STALL_TIMEOUT, an interrupt
// answered, nothing published, nothing raced. Before session 16 each of these waited for the
// storage for good: measured on a FUSE mount frozen at publish's rename, `dsfetch fetch`
// printed nothing and did not answer SIGTERM; a lock's waiter on storage that hung while it
// waited never looked at its own bound again.
//
// The calls here are really stuck in the kernel: a FIFO where a file is read (open(2) waits
// for a writer, as on a mount whose server is gone), opened for writing after each test so
// that no thread stays blocked.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { DEFAULT_TUNING, resolveTuning } from "../../src/config/tuning.ts";
import type { DsfetchEvent } from "../../src/events.ts";
import { stage } from "../../src/stage/stage.ts";
import { stuckThreads } from "../../src/util/stuck-threads.ts";
import { type DatasetLocation, sharedLocation } from "../../src/volumes/layout.ts";
import { acquireLock } from "../../src/volumes/lock.ts";
import { runCli } from "../harness/cli.ts";
import { unblockFifo } from "../harness/fifos.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

/** Set by a test: called once the download is over, before publishing; and when marking use. */
const hooks = vi.hoisted(() => ({
  downloaded: undefined as (() => void) | undefined,
  markingUsed: undefined as (() => void) | undefined,
}));

vi.mock("../../src/volumes/usage.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/usage.ts")>();
  return {
    ...actual,
    markUsed: async (location: Parameters<typeof actual.markUsed>[0]) => {
      hooks.markingUsed?.();
      return actual.markUsed(location);
    },
  };
});

vi.mock("../../src/fetch/download-object.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/fetch/download-object.ts")>();
  return {
    ...actual,
    downloadObject: async (options: Parameters<typeof actual.downloadObject>[0]) => {
      const result = await actual.downloadObject(options);
      hooks.downloaded?.();
      return result;
    },
  };
});

/**
 * The bound (a few seconds: every call of the staging runs under it, and on a loaded
 * machine a healthy one must never reach it).
 */
const STALL = "3";

const root = mkdtempSync(join(tmpdir(), "dsfetch-storage-stall-"));
const fifos: string[] = [];
afterEach(() => {
  hooks.downloaded = undefined;
  hooks.markingUsed = undefined;
  for (const fifo of fifos.splice(0)) unblockFifo(fifo);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

/**
 * A FIFO at `path`, opened for writing after the test when `unblockAfter` (the in-process
 * tests' blocked threads). Not for the CLI's tests: their processes end themselves, and they
 * run concurrently, so another test's afterEach would unblock their reads mid-test.
 */
function fifoAt(path: string, unblockAfter = true): void {
  mkdirSync(join(path, ".."), { recursive: true });
  rmSync(path, { force: true });
  execFileSync("mkfifo", [path]);
  if (unblockAfter) fifos.push(path);
}

let bucket: string | undefined;

async function datasetsArray() {
  if (bucket === undefined) {
    bucket = await createBucket("storage-stall");
    await putObject(bucket, "blob.bin", Buffer.alloc(100_000, 7));
  }
  const info = s3Info();
  return [
    {
      uri: `s3://${bucket}/blob.bin`,
      awsAccessKeyId: info.accessKeyId,
      awsSecretAccessKey: info.secretAccessKey,
      endpoint: info.endpoint,
      region: info.region,
    },
  ];
}

interface Staging {
  readonly storageRoot: string;
  readonly location: DatasetLocation;
}

function newStorage(): Staging {
  const storageRoot = mkdtempSync(join(root, "storage-"));
  return { storageRoot, location: sharedLocation(storageRoot, "ml", "blob.bin", undefined) };
}

async function stageBlob(
  staging: Staging,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<{
  result: Awaited<ReturnType<typeof stage>>;
  seconds: number;
  warnings: string[];
}> {
  const datasets = parseDatasetsValue(await datasetsArray(), "test", {});
  const settings = resolveSettings({ storageRoot: staging.storageRoot, team: "ml" }, {});
  const warnings: string[] = [];
  const started = performance.now();
  const result = await stage(datasets, settings, {
    tuning: resolveTuning(env),
    onEvent: (event: DsfetchEvent) => {
      if (event.type === "warning") warnings.push(event.message);
    },
    ...(signal === undefined ? {} : { signal }),
  });
  return { result, seconds: (performance.now() - started) / 1000, warnings };
}

function errorOf(result: Awaited<ReturnType<typeof stage>>) {
  const outcome = result.datasets[0];
  return outcome?.ok === false ? outcome.error : undefined;
}

/** What is at the dataset's final path, or undefined. */
function published(location: DatasetLocation): string[] | undefined {
  return existsSync(location.path) ? readdirSync(location.path) : undefined;
}

describe("storage that stops answering outside the download", () => {
  it("as a control, with storage that answers the dataset is staged", async () => {
    const staging = newStorage();
    const { result } = await stageBlob(staging, { DSFETCH_EXTRACT_STALL_TIMEOUT: STALL });
    expect(result.ok).toBe(true);
    expect(published(staging.location)).toEqual(["blob.bin"]);
  });

  it("a published manifest that is never read: STALLED naming it, after the bound", async () => {
    const staging = newStorage();
    mkdirSync(staging.location.path, { recursive: true });
    writeFileSync(join(staging.location.path, "old.bin"), "old");
    fifoAt(staging.location.manifestPath);
    const { result, seconds } = await stageBlob(staging, { DSFETCH_EXTRACT_STALL_TIMEOUT: STALL });
    const error = errorOf(result);
    expect(error?.code).toBe("STALLED");
    expect(error?.exitCode).toBe(10);
    expect(error?.message).toBe(
      `blob.bin: reading ${staging.location.manifestPath} got no answer from the storage for ${STALL} s`,
    );
    // The bound and the grace (no longer than the bound; loose, for loaded machines): not the
    // storage's whole absence.
    expect(seconds).toBeLessThan(30);
    // What was there stays as it was.
    expect(published(staging.location)).toEqual(["old.bin"]);
    expect(stuckThreads()).toContain(
      `reading ${staging.location.manifestPath} got no answer from the storage`,
    );
  }, 60_000);

  it("publishing that gets no answer: STALLED, nothing published, and the attempt left alone while the call is pending", async () => {
    const staging = newStorage();
    // Once the download is over, another tree appears at the final path (the rename then
    // fails with ENOTEMPTY) whose manifest is never read: publishing hangs on it.
    hooks.downloaded = () => {
      mkdirSync(staging.location.path, { recursive: true });
      writeFileSync(join(staging.location.path, "other.bin"), "other");
      fifoAt(staging.location.manifestPath);
    };
    const { result, seconds, warnings } = await stageBlob(staging, {
      DSFETCH_EXTRACT_STALL_TIMEOUT: STALL,
    });
    const error = errorOf(result);
    expect(error?.code).toBe("STALLED");
    expect(error?.message).toBe(
      `blob.bin: reading ${staging.location.manifestPath} got no answer from the storage for ${STALL} s`,
    );
    expect(seconds).toBeLessThan(30);
    expect(published(staging.location)).toEqual(["other.bin"]);
    // A call given up on may still run when the storage answers (a rename of the attempt
    // into place): the attempt is not removed under it, and the user is told.
    const attempts = readdirSync(staging.location.tmpDir);
    expect(attempts).toHaveLength(1);
    expect(readdirSync(join(staging.location.tmpDir, attempts[0] as string, "data"))).toEqual([
      "blob.bin",
    ]);
    expect(warnings).toContainEqual(
      expect.stringMatching(
        /^left .*\/tmp\/blob\.bin\..* in place: reading .*blob\.bin\.json has had no answer yet \(the storage may be hung\); a later run removes it$/,
      ),
    );
    // The lock is released all the same.
    expect(existsSync(staging.location.lockPath)).toBe(false);
  }, 60_000);

  it("an interrupt while publishing gets no answer is answered without waiting for the storage", async () => {
    const staging = newStorage();
    const abort = new AbortController();
    hooks.downloaded = () => {
      mkdirSync(staging.location.path, { recursive: true });
      writeFileSync(join(staging.location.path, "other.bin"), "other");
      fifoAt(staging.location.manifestPath);
      setTimeout(() => abort.abort(new Error("SIGTERM")), 500);
    };
    const { result, seconds } = await stageBlob(
      staging,
      { DSFETCH_EXTRACT_STALL_TIMEOUT: "300" },
      abort.signal,
    );
    expect(errorOf(result)?.code).toBe("INTERRUPTED");
    expect(seconds).toBeLessThan(30);
    expect(published(staging.location)).toEqual(["other.bin"]);
  }, 60_000);

  it("an interrupt answered by the last call (marking use, after publishing) is an interrupt, not a success", async () => {
    const staging = newStorage();
    const abort = new AbortController();
    hooks.markingUsed = () => abort.abort(new Error("SIGTERM"));
    const { result } = await stageBlob(
      staging,
      { DSFETCH_EXTRACT_STALL_TIMEOUT: STALL },
      abort.signal,
    );
    expect(errorOf(result)?.code).toBe("INTERRUPTED");
  }, 60_000);

  it("a waiter whose storage hangs while it waits: STALLED after the bound, not a wait for good", async () => {
    const staging = newStorage();
    // Another worker holds the lock; then its holder file stops answering (the waiter reads
    // it on every poll to say whom it waits for).
    mkdirSync(join(staging.location.lockPath, ".."), { recursive: true });
    const held = await acquireLock(staging.location.lockPath, "blob.bin", {
      timing: DEFAULT_TUNING.lock,
    });
    if (held.kind !== "acquired") throw new Error("the test could not take the lock");
    fifoAt(`${staging.location.lockPath}.holder.json`);
    try {
      const { result, seconds } = await stageBlob(staging, {
        DSFETCH_EXTRACT_STALL_TIMEOUT: STALL,
        DSFETCH_LOCK_WAIT: "3600",
      });
      const error = errorOf(result);
      expect(error?.code).toBe("STALLED");
      expect(error?.message).toBe(
        `blob.bin: reading ${staging.location.lockPath}.holder.json got no answer from the storage for ${STALL} s`,
      );
      expect(seconds).toBeLessThan(30);
      expect(published(staging.location)).toBeUndefined();
    } finally {
      await held.lock.release();
    }
  }, 60_000);
});

// Concurrent: each test is CLI processes that wait out the bound on storage of their own
// (one after another: ~20 s).
describe.concurrent("dsfetch fetch on storage that stops answering", () => {
  it("says STALLED, names the call, and ends with its exit code (10) instead of hanging", async () => {
    const staging = newStorage();
    mkdirSync(staging.location.path, { recursive: true });
    writeFileSync(join(staging.location.path, "old.bin"), "old");
    fifoAt(staging.location.manifestPath, false);
    const datasetsFile = join(root, "datasets.json");
    writeFileSync(datasetsFile, JSON.stringify(await datasetsArray()));
    const started = performance.now();
    const ran = await runCli(
      ["fetch", "--datasets", datasetsFile, "--storage-root", staging.storageRoot, "--team", "ml"],
      { env: { DSFETCH_EXTRACT_STALL_TIMEOUT: STALL }, timeoutMs: 50_000 },
    );
    expect((performance.now() - started) / 1000).toBeLessThan(40);
    expect(ran).toMatchObject({ code: 10, signal: null });
    expect(ran.stderr).toContain(
      `blob.bin: reading ${staging.location.manifestPath} got no answer from the storage for ${STALL} s [STALLED]`,
    );
    expect(ran.stderr).toContain(
      "replaces itself with a process that exits with its exit code, 10",
    );
    expect(published(staging.location)).toEqual(["old.bin"]);
  }, 60_000);

  it("plan says STALLED for a dataset whose manifest gets no answer, and ends", async () => {
    const staging = newStorage();
    mkdirSync(staging.location.path, { recursive: true });
    fifoAt(staging.location.manifestPath, false);
    const started = performance.now();
    const ran = await runCli(
      ["plan", "--datasets", "-", "--storage-root", staging.storageRoot, "--team", "ml"],
      {
        env: { DSFETCH_EXTRACT_STALL_TIMEOUT: STALL },
        stdin: JSON.stringify(await datasetsArray()),
        timeoutMs: 50_000,
      },
    );
    expect((performance.now() - started) / 1000).toBeLessThan(40);
    expect(ran).toMatchObject({ code: 10, signal: null });
    expect(ran.stderr).toContain(
      `blob.bin: reading ${staging.location.manifestPath} got no answer from the storage for ${STALL} s`,
    );
    expect(ran.stderr).toContain("STALLED");
  }, 60_000);

  it("list and prune (a cron job) say STALLED and end, instead of waiting for good", async () => {
    const staging = newStorage();
    mkdirSync(staging.location.path, { recursive: true });
    fifoAt(staging.location.manifestPath, false);
    // Both at once (each waits out the bound on its own).
    const commands = [["list"], ["prune", "--older-than", "1d"]];
    const started = performance.now();
    const runs = await Promise.all(
      commands.map((command) =>
        runCli([...command, "--storage-root", staging.storageRoot, "--team", "ml"], {
          env: { DSFETCH_EXTRACT_STALL_TIMEOUT: STALL },
          timeoutMs: 50_000,
        }),
      ),
    );
    expect((performance.now() - started) / 1000).toBeLessThan(40);
    for (const [i, ran] of runs.entries()) {
      // STALLED's code, from the process dsfetch replaced itself with (cli/finish.ts).
      expect(ran).toMatchObject({ code: 10, signal: null });
      expect(ran.stderr).toContain(
        `dsfetch ${commands[i]?.[0]}: reading ${staging.location.manifestPath} got no answer from the storage for ${STALL} s [STALLED]`,
      );
    }
  }, 120_000);
});
