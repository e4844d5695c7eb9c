// A zip is downloaded whole, then expanded, then removed (stage/expand.ts): the calls on
// storage between those steps (its free-space check before the download, its removal after
// the extraction) run under the staging's stall bound. Storage that hung there left the dataset
// silent and an interrupt unanswered for good (review, 2026-12-06).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { resolveTuning } from "../../src/config/tuning.ts";
import { stage } from "../../src/stage/stage.ts";
import { buildZip } from "../archive/zip-writer.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

/** Set by a test: the removal of a downloaded zip never answers, as on a hung mount. */
const hooks = vi.hoisted(() => ({ hangZipRemoval: false, removalsAsked: 0 }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const rm: typeof actual.rm = (path, options) => {
    if (hooks.hangZipRemoval && String(path).endsWith(".zip")) {
      hooks.removalsAsked += 1;
      return new Promise<void>(() => {});
    }
    return actual.rm(path, options);
  };
  return { ...actual, rm, default: { ...actual, rm } };
});

const root = mkdtempSync(join(tmpdir(), "dsfetch-zip-stall-"));
afterEach(() => {
  hooks.hangZipRemoval = false;
  hooks.removalsAsked = 0;
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function stageZip(abort?: AbortSignal) {
  const bucket = await createBucket("zipstall");
  await putObject(
    bucket,
    "set.zip",
    buildZip([
      { name: "a.txt", data: Buffer.from("one") },
      { name: "b.txt", data: Buffer.from("two") },
    ]),
  );
  const info = s3Info();
  const datasets = parseDatasetsValue(
    [
      {
        uri: `s3://${bucket}/set.zip`,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
        endpoint: info.endpoint,
        region: info.region,
      },
    ],
    "test",
    {},
  );
  const storageRoot = mkdtempSync(join(root, "storage-"));
  const started = performance.now();
  const result = await stage(datasets, resolveSettings({ storageRoot, team: "ml" }, {}), {
    tuning: resolveTuning({ DSFETCH_EXTRACT_STALL_TIMEOUT: "2" }),
    ...(abort === undefined ? {} : { signal: abort }),
  });
  return { result, seconds: (performance.now() - started) / 1000, storageRoot };
}

describe("a zip whose removal after its extraction gets no answer", () => {
  it("as a control, with storage that answers the zip is expanded and published", async () => {
    const { result } = await stageZip();
    expect(result.datasets[0]).toMatchObject({ ok: true });
  });

  it("fails with STALLED naming the removal, after the bound", async () => {
    hooks.hangZipRemoval = true;
    const { result, seconds } = await stageZip();
    expect(hooks.removalsAsked).toBeGreaterThan(0);
    const outcome = result.datasets[0];
    expect(outcome).toMatchObject({ ok: false, error: { code: "STALLED" } });
    expect(outcome?.ok === false ? outcome.error.message : "").toMatch(
      /removing .*archive\.zip got no answer/,
    );
    expect(seconds).toBeLessThan(15);
  }, 30_000);

  it("answers an interrupt while the removal hangs", async () => {
    hooks.hangZipRemoval = true;
    const abort = new AbortController();
    const timer = setInterval(() => {
      if (hooks.removalsAsked > 0) abort.abort(new Error("interrupted"));
    }, 20);
    try {
      const { result } = await stageZip(abort.signal);
      expect(result.datasets[0]).toMatchObject({ ok: false });
    } finally {
      clearInterval(timer);
    }
  }, 30_000);
});
