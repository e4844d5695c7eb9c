// After a stall the storage may be hung: removing the attempt and releasing the lock there
// must not hold the dataset's STALLED error back (before 2026-12-04 it waited for them, that
// is for the storage, however long it was gone). In-process `stage()`, a real store and a
// real .tar.xz; a stand-in `xz` that stops makes the stall, and the cleanup on "hung storage"
// is made to never finish (the attempt's removal and the lock's release, mocked).
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { resolveTuning } from "../../src/config/tuning.ts";
import type { DsfetchEvent } from "../../src/events.ts";
import { stage } from "../../src/stage/stage.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";
import { file, tar } from "./tar-helpers.ts";

const hang = vi.hoisted(() => ({ on: false, discards: 0, releases: 0 }));

vi.mock("../../src/volumes/attempt.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/attempt.ts")>();
  return {
    ...actual,
    discardAttempt: (attempt: Parameters<typeof actual.discardAttempt>[0]) => {
      if (!hang.on) return actual.discardAttempt(attempt);
      hang.discards += 1;
      return new Promise<void>(() => {});
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
          release: () => {
            hang.releases += 1;
            // The real release runs later, so that the test leaves no lock behind.
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

describe("cleanup after a stall, on storage that does not answer", () => {
  it("STALLED is answered after the bounded cleanup, with a warning for each part given up", async () => {
    const bucket = await createBucket("stalled-cleanup");
    const archive = execFileSync("xz", ["-c"], { input: tar(file("a.txt", "alpha\n")) });
    await putObject(bucket, "ds.tar.xz", archive);
    // A stand-in xz that never reads nor writes (the extraction thread starts it from PATH).
    const bin = join(root, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "xz"), "#!/bin/sh\nexec sleep 600\n");
    chmodSync(join(bin, "xz"), 0o755);
    process.env.PATH = `${bin}:${savedPath ?? "/usr/bin:/bin"}`;
    const info = s3Info();
    const datasets = parseDatasetsValue(
      [
        {
          uri: `s3://${bucket}/ds.tar.xz`,
          awsAccessKeyId: info.accessKeyId,
          awsSecretAccessKey: info.secretAccessKey,
        },
      ],
      "test",
      { AWS_ENDPOINT_URL: info.endpoint, AWS_REGION: info.region },
    );
    const storageRoot = join(root, "storage");
    mkdirSync(storageRoot);
    const settings = resolveSettings({ storageRoot, team: "ml" }, {});
    const events: DsfetchEvent[] = [];
    hang.on = true;
    const started = performance.now();
    const result = await stage(datasets, settings, {
      tuning: resolveTuning({ DSFETCH_EXTRACT_STALL_TIMEOUT: "1" }),
      onEvent: (event) => events.push(event),
    });
    hang.on = false;
    const seconds = (performance.now() - started) / 1000;
    const outcome = result.datasets[0];
    expect(outcome?.ok).toBe(false);
    expect(outcome?.ok === false && outcome.error.code).toBe("STALLED");
    expect(hang.discards).toBe(1);
    expect(hang.releases).toBe(1);
    // The stall (1 s), then at most 5 s for the attempt and 5 s for the lock (and the
    // thread's grace): not the storage's whole absence.
    expect(seconds).toBeLessThan(30);
    const warnings = events
      .filter((event) => event.type === "warning")
      .map((event) => (event as { message: string }).message);
    expect(warnings).toEqual([
      expect.stringMatching(/did not answer within 5 s while removing .*; a later run removes it/),
      expect.stringMatching(
        /did not answer within 5 s while releasing the lock .*DSFETCH_LOCK_STALE/,
      ),
    ]);
  }, 60_000);
});
