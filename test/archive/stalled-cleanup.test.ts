// After a stall the storage may be hung: removing the attempt and releasing the lock there
// must not hold the dataset's STALLED error back (before 2026-12-04 it waited for them, that
// is for the storage, however long it was gone). In-process `stage()`, a real store and a
// real .tar.xz; a stand-in `xz` that stops makes the stall, and the cleanup on "hung storage"
// is made to never finish (the attempt's removal and the lock's release, mocked). The same
// bound after an interrupt; any other error still waits for its cleanup.

import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { resolveTuning } from "../../src/config/tuning.ts";
import type { DsfetchEvent } from "../../src/events.ts";
import { stage } from "../../src/stage/stage.ts";
import { stuckThreads } from "../../src/util/stuck-threads.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";
import { standInXzScript } from "../harness/stand-in-xz.ts";
import { file, tar } from "./tar-helpers.ts";

const hang = vi.hoisted(() => ({
  on: false,
  discards: 0,
  releases: 0,
  /** Ends the "hung" removals so far (they wait until then). */
  waiting: [] as (() => void)[],
}));

vi.mock("../../src/volumes/attempt.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/attempt.ts")>();
  return {
    ...actual,
    discardAttempt: (attempt: Parameters<typeof actual.discardAttempt>[0]) => {
      if (!hang.on) return actual.discardAttempt(attempt);
      hang.discards += 1;
      return new Promise<void>((resolve) => {
        hang.waiting.push(() => void actual.discardAttempt(attempt).then(resolve));
      });
    },
  };
});

vi.mock("../../src/volumes/lock.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/lock.ts")>();
  return {
    ...actual,
    acquireLock: async (...args: Parameters<typeof actual.acquireLock>) => {
      const outcome = await actual.acquireLock(...args);
      if (outcome.kind !== "acquired" || !hang.on) return outcome;
      const { lock } = outcome;
      return {
        kind: "acquired" as const,
        lock: {
          holder: lock.holder,
          intact: lock.intact,
          stillHeld: lock.stillHeld,
          release: () => {
            if (!hang.on) return lock.release();
            hang.releases += 1;
            // Never answers; the real release runs later only to stop the lock's refresh
            // timer (the lock's files go with the test's directory in afterAll).
            setTimeout(() => void lock.release(), 15_000).unref();
            return new Promise<void>(() => {});
          },
        },
      };
    },
  };
});

const root = mkdtempSync(join(tmpdir(), "dsfetch-stalled-cleanup-"));
const savedPath = process.env.PATH;
afterAll(() => {
  process.env.PATH = savedPath;
  rmSync(root, { recursive: true, force: true });
});

let bucket: string | undefined;

/** A bucket with `ds.tar.xz` (a real one) and `bad.tar.xz` (not xz at all). */
async function objects(): Promise<string> {
  if (bucket !== undefined) return bucket;
  bucket = await createBucket("stalled-cleanup");
  // The real xz, whatever stand-in is on PATH by now.
  const archive = execFileSync("xz", ["-c"], {
    input: tar(file("a.txt", "alpha\n")),
    env: { ...process.env, PATH: savedPath },
  });
  await putObject(bucket, "ds.tar.xz", archive);
  await putObject(bucket, "bad.tar.xz", "this is not an xz stream, whatever its name says\n");
  return bucket;
}

/** A stand-in xz that never reads nor writes, first on PATH (the extraction thread runs it). */
function stoppedXz(): void {
  const bin = join(root, "bin");
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, "xz"), standInXzScript("exec sleep 600"));
  chmodSync(join(bin, "xz"), 0o755);
  process.env.PATH = `${bin}:${savedPath ?? "/usr/bin:/bin"}`;
}

async function stageOne(
  key: string,
  env: Record<string, string>,
  signal?: AbortSignal,
): Promise<{ result: Awaited<ReturnType<typeof stage>>; warnings: string[]; seconds: number }> {
  const info = s3Info();
  const datasets = parseDatasetsValue(
    [
      {
        uri: `s3://${await objects()}/${key}`,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
      },
    ],
    "test",
    { AWS_ENDPOINT_URL: info.endpoint, AWS_REGION: info.region },
  );
  const storageRoot = mkdtempSync(join(root, "storage-"));
  const settings = resolveSettings({ storageRoot, team: "ml" }, {});
  const events: DsfetchEvent[] = [];
  const started = performance.now();
  const result = await stage(datasets, settings, {
    tuning: resolveTuning(env),
    onEvent: (event) => events.push(event),
    ...(signal === undefined ? {} : { signal }),
  });
  const warnings = events
    .filter((event) => event.type === "warning")
    .map((event) => (event as { message: string }).message);
  return { result, warnings, seconds: (performance.now() - started) / 1000 };
}

const GIVEN_UP = [
  expect.stringMatching(/^removing .* did not finish within 5 s .*a later run removes it$/),
  expect.stringMatching(/^releasing the lock .* did not finish within 5 s .*DSFETCH_LOCK_STALE$/),
];

describe("cleanup on storage that does not answer", () => {
  beforeEach(() => {
    hang.on = true;
    hang.discards = 0;
    hang.releases = 0;
  });
  afterEach(() => {
    hang.on = false;
    for (const end of hang.waiting.splice(0)) end();
    process.env.PATH = savedPath;
  });

  it("after STALLED: the error after at most 5 s of cleanup, with a warning for each part given up", async () => {
    stoppedXz();
    const { result, warnings, seconds } = await stageOne("ds.tar.xz", {
      DSFETCH_EXTRACT_STALL_TIMEOUT: "1",
    });
    const outcome = result.datasets[0];
    expect(outcome?.ok === false && outcome.error.code).toBe("STALLED");
    expect(hang.discards).toBe(1);
    expect(hang.releases).toBe(1);
    // The stall (1 s), then 5 s for the removal and the lock together: not the storage's
    // whole absence (loose, for loaded machines).
    expect(seconds).toBeLessThan(30);
    expect(warnings).toEqual(GIVEN_UP);
    // Both noted as stuck: the CLI ends with SIGKILL rather than hang (cli/finish.ts).
    expect(stuckThreads().slice(-2)).toEqual([
      expect.stringMatching(/^removing \/.*/),
      expect.stringMatching(/^releasing the lock \/.*\.lock$/),
    ]);
  }, 60_000);

  it("after an interrupt (the usual answer to a hang): the same bound", async () => {
    stoppedXz();
    const abort = new AbortController();
    setTimeout(() => abort.abort(new Error("SIGTERM")), 1_500);
    const { result, warnings, seconds } = await stageOne(
      "ds.tar.xz",
      { DSFETCH_EXTRACT_STALL_TIMEOUT: "300" },
      abort.signal,
    );
    expect(result.datasets[0]?.ok).toBe(false);
    expect(hang.discards).toBe(1);
    expect(seconds).toBeLessThan(30);
    expect(warnings).toEqual(GIVEN_UP);
  }, 60_000);

  it("after any other error: the cleanup is waited for (nothing is left behind)", async () => {
    let settled = false;
    const staging = stageOne("bad.tar.xz", {}).then((outcome) => {
      settled = true;
      return outcome;
    });
    await new Promise((resolve) => setTimeout(resolve, 7_000));
    expect(hang.discards).toBe(1);
    expect(settled).toBe(false);
    hang.on = false;
    for (const end of hang.waiting.splice(0)) end();
    const { result, warnings } = await staging;
    const outcome = result.datasets[0];
    expect(outcome?.ok === false && outcome.error.code).toBe("ARCHIVE_INVALID");
    expect(warnings).toEqual([]);
  }, 60_000);
});
