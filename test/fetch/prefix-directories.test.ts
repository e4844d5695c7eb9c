// A folder's directories are made through the thread pool once its files are (network
// storage, DSFETCH_FILE_WRITES=parallel or "auto" turned slow): a synchronous mkdir on a hung
// mount would stop the main thread, and the stall clock with it (found in review). One at a
// time (local disks), they stay synchronous calls. stage() against the real store.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { resolveTuning } from "../../src/config/tuning.ts";
import { stage } from "../../src/stage/stage.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

const calls = vi.hoisted(() => ({ mkdirSync: [] as string[] }));

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  return {
    ...actual,
    mkdirSync: (...args: Parameters<typeof actual.mkdirSync>) => {
      calls.mkdirSync.push(String(args[0]));
      return actual.mkdirSync(...args);
    },
  };
});

const root = mkdtempSync(join(tmpdir(), "dsfetch-prefix-dirs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
beforeEach(() => {
  calls.mkdirSync.length = 0;
});

let bucket: string | undefined;

async function stageFolder(writes: string) {
  if (bucket === undefined) {
    bucket = await createBucket("prefix-dirs");
    await putObject(bucket, "folder/one/a.txt", "a\n");
    await putObject(bucket, "folder/two/deeper/b.txt", "b\n");
  }
  const info = s3Info();
  const datasets = parseDatasetsValue(
    [
      {
        uri: `s3://${bucket}/folder/`,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
      },
    ],
    "test",
    { AWS_ENDPOINT_URL: info.endpoint, AWS_REGION: info.region },
  );
  const storageRoot = mkdtempSync(join(root, "storage-"));
  const settings = resolveSettings({ storageRoot, team: "ml" }, {});
  const result = await stage(datasets, settings, {
    tuning: resolveTuning({ DSFETCH_FILE_WRITES: writes }),
  });
  return { result, storageRoot };
}

describe("a folder's directories", () => {
  it("through the pool when its files are written in parallel: no synchronous mkdir", async () => {
    const { result, storageRoot } = await stageFolder("parallel");
    expect(result.ok).toBe(true);
    const data = join(storageRoot, "ml", "data", "folder");
    expect(readFileSync(join(data, "one", "a.txt"), "utf8")).toBe("a\n");
    expect(readFileSync(join(data, "two", "deeper", "b.txt"), "utf8")).toBe("b\n");
    expect(calls.mkdirSync.filter((path) => /\/(one|deeper)$/.test(path))).toEqual([]);
  });

  it("synchronous calls when files are written one at a time (the control)", async () => {
    const { result } = await stageFolder("serial");
    expect(result.ok).toBe(true);
    expect(calls.mkdirSync.filter((path) => /\/(one|deeper)$/.test(path))).toHaveLength(2);
  });
});
