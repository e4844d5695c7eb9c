// A worker paused between its tree's rename and its manifest's (a VM paused, a container
// stopped) while the worker that took its lock over published another version there: the
// paused one failed STORAGE "cannot write to …/manifests/…: another worker replaced …", and
// `run` never started its command (exploratory tester 2, 2026-12-07). Now an unpinned
// dataset uses the version that stands, with a warning; a pinned one still fails.
//
// stage() against the real store, with publish wrapped so that the other worker's publish
// lands exactly there (between our tree's rename and our manifest's).
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import type { DsfetchEvent } from "../../src/events.ts";
import { stage } from "../../src/stage/stage.ts";
import { createAttempt } from "../../src/volumes/attempt.ts";
import type { Manifest, WrittenFiles } from "../../src/volumes/manifest.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

/** The other worker's publish, run once when ours has made its tree read-only. */
const race = vi.hoisted(() => ({ other: undefined as undefined | (() => Promise<void>) }));
vi.mock("../../src/volumes/publish.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/publish.ts")>();
  const publish: typeof actual.publish = (attempt, location, manifest, call, options) =>
    actual.publish(
      attempt,
      location,
      manifest,
      async (what, work, callOptions) => {
        const other = race.other;
        if (other !== undefined && what.startsWith(`making ${location.path} read-only`)) {
          race.other = undefined;
          await other();
        }
        return call === undefined
          ? work(new AbortController().signal, () => {})
          : call(what, work, callOptions);
      },
      options,
    );
  return { ...actual, publish };
});
const { publish: realPublish } = await vi.importActual<
  typeof import("../../src/volumes/publish.ts")
>("../../src/volumes/publish.ts");
const { sharedLocation } = await import("../../src/volumes/layout.ts");

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-superseded-"));
  bucket = await createBucket("superseded");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true, maxRetries: 2 }).catch(() => {});
});

/** Stages `entry` while "another worker" publishes `theirs` (etag) in the middle of our publish. */
async function stageRacing(entry: Record<string, unknown>, key: string, theirEtag: string) {
  const info = s3Info();
  const datasets = parseDatasetsValue(
    [
      {
        ...entry,
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
      },
    ],
    "test",
    { AWS_ENDPOINT_URL: info.endpoint, AWS_REGION: info.region },
  );
  const spec = datasets[0];
  if (spec === undefined) throw new Error("no dataset");
  const storageRoot = await mkdtemp(join(root, "storage-"));
  const settings = resolveSettings({ storageRoot, team: "ml" }, {});
  const location = sharedLocation(storageRoot, "ml", spec.name, spec.etag);
  race.other = async () => {
    const attempt = await createAttempt(location);
    await writeFile(join(attempt.dataDir, key), "the other worker's version");
    const manifest: Manifest<WrittenFiles> = {
      version: 1,
      name: spec.name,
      uri: spec.uri,
      endpoint: info.endpoint,
      kind: "object",
      etag: theirEtag,
      versionId: undefined,
      listingDigest: undefined,
      bytes: 26,
      files: [{ path: key, bytes: 26 }],
      verification: "md5",
      createdAt: new Date().toISOString(),
      host: "other",
    };
    expect(await realPublish(attempt, location, manifest)).toBe("replaced");
  };
  const events: DsfetchEvent[] = [];
  const result = await stage(datasets, settings, { onEvent: (event) => events.push(event) });
  expect(race.other).toBeUndefined();
  const warnings = events.flatMap((event) => (event.type === "warning" ? [event.message] : []));
  return { result, location, warnings };
}

describe("another worker's version swapped in between our tree and our manifest", () => {
  it("an unpinned dataset uses the version that stands, with a warning; nothing of ours left", async () => {
    await putObject(bucket, "set/data.bin", randomBytes(64 * 1024));
    const { result, location, warnings } = await stageRacing(
      { uri: `s3://${bucket}/set/data.bin`, name: "set" },
      "data.bin",
      "0123456789abcdef0123456789abcdef",
    );
    const [staged] = result.datasets;
    expect(staged?.ok, JSON.stringify(staged)).toBe(true);
    expect(staged).toMatchObject({
      ok: true,
      cached: true,
      etag: "0123456789abcdef0123456789abcdef",
    });
    expect(warnings.join("\n")).toMatch(
      /another worker published another version of s3:\/\/.* while this one published its own: using that one/,
    );
    expect(await readFile(join(location.path, "data.bin"), "utf8")).toBe(
      "the other worker's version",
    );
    expect(await readdir(location.tmpDir)).toEqual([]);
  });

  it("a dataset pinned by its etag is not given another version: STORAGE as before", async () => {
    const put = await putObject(bucket, "pinned/data.bin", randomBytes(64 * 1024));
    const { result } = await stageRacing(
      { uri: `s3://${bucket}/pinned/data.bin`, name: "pinned", etag: put.etag },
      "data.bin",
      "fedcba9876543210fedcba9876543210",
    );
    const [staged] = result.datasets;
    expect(staged?.ok).toBe(false);
    expect(JSON.stringify(staged)).toContain("another worker replaced");
  });
});
