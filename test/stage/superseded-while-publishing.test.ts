// A worker paused between its tree's rename and its manifest's (a VM paused, a container
// stopped) while the worker that took its lock over published another version there: the
// paused one failed STORAGE "cannot write to …/manifests/…: another worker replaced …", and
// `run` never started its command (exploratory tester 2, 2026-12-07). Now an unpinned
// dataset uses the version that stands, with a warning; a pinned one still fails.
//
// stage() against the real store, with publish wrapped so that the other worker's publish
// lands exactly there (between our tree's rename and our manifest's).
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
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

/**
 * How the other worker's swap meets ours: all at once; our tree moved aside, and theirs in
 * 300 ms later (the gap between its two renames, stretched); or our tree moved aside and
 * nothing put in its place.
 */
type Swap = "at-once" | "with-a-gap" | "nothing-in";

/** Stages `entry` while "another worker" publishes `theirs` (etag) in the middle of our publish. */
async function stageRacing(
  entry: Record<string, unknown>,
  key: string,
  theirEtag: string,
  swap: Swap = "at-once",
) {
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
  let late: Promise<void> | undefined;
  const theirPublish = async () => {
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
    expect(await realPublish(attempt, location, manifest)).toBe(
      swap === "at-once" ? "replaced" : "published",
    );
  };
  race.other = async () => {
    if (swap === "at-once") return theirPublish();
    await rename(location.path, join(root, `aside-${spec.name}`));
    if (swap === "with-a-gap") late = sleep(300).then(theirPublish);
  };
  const events: DsfetchEvent[] = [];
  const result = await stage(datasets, settings, { onEvent: (event) => events.push(event) });
  await late;
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
      lockTakenOver: true,
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

  it("the same version published by the other worker: its copy stands, and --json says the lock was taken over", async () => {
    const put = await putObject(bucket, "same/data.bin", randomBytes(64 * 1024));
    const { result } = await stageRacing(
      { uri: `s3://${bucket}/same/data.bin`, name: "same" },
      "data.bin",
      put.etag,
    );
    const [staged] = result.datasets;
    expect(staged, JSON.stringify(staged)).toMatchObject({
      ok: true,
      cached: false,
      lockTakenOver: true,
      etag: put.etag,
    });
  });

  it("a dataset pinned by its etag is not given another version: STORAGE as before", async () => {
    const put = await putObject(bucket, "pinned/data.bin", randomBytes(64 * 1024));
    const { result } = await stageRacing(
      { uri: `s3://${bucket}/pinned/data.bin`, name: "pinned", etag: put.etag },
      "data.bin",
      "fedcba9876543210fedcba9876543210",
    );
    const [staged] = result.datasets;
    expect(staged).toMatchObject({ ok: false, error: { code: "STORAGE" } });
    const error = staged?.ok === false ? staged.error : undefined;
    // Said as what happened, not as a manifest that could not be written.
    expect(error?.message).toMatch(
      /^pinned: another worker \(which took this one's lock over\) swapped another version \(.*\) in at .* between this one's tree and its manifest$/,
    );
    expect(error?.hint).toMatch(/is not the pinned ETag .*: run again/);
  });

  it("caught between the other worker's two renames (our tree moved aside, theirs not in yet): uses theirs (it failed STORAGE 'is gone')", async () => {
    await putObject(bucket, "gap/data.bin", randomBytes(64 * 1024));
    const { result, location } = await stageRacing(
      { uri: `s3://${bucket}/gap/data.bin`, name: "gap" },
      "data.bin",
      "00112233445566778899aabbccddeeff",
      "with-a-gap",
    );
    const [staged] = result.datasets;
    expect(staged, JSON.stringify(staged)).toMatchObject({
      ok: true,
      lockTakenOver: true,
      etag: "00112233445566778899aabbccddeeff",
    });
    expect(await readFile(join(location.path, "data.bin"), "utf8")).toBe(
      "the other worker's version",
    );
  });

  it("our tree moved away and nothing put in its place: STORAGE saying so, no manifest left naming it", async () => {
    await putObject(bucket, "gone/data.bin", randomBytes(64 * 1024));
    const { result, location } = await stageRacing(
      { uri: `s3://${bucket}/gone/data.bin`, name: "gone" },
      "data.bin",
      "ffeeddccbbaa99887766554433221100",
      "nothing-in",
    );
    const [staged] = result.datasets;
    expect(staged).toMatchObject({ ok: false, error: { code: "STORAGE" } });
    const error = staged?.ok === false ? staged.error : undefined;
    expect(error?.message).toMatch(
      /was moved away by another process while this one published it, and nothing stands there$/,
    );
    expect(await readdir(join(location.manifestPath, ".."))).toEqual([]);
  });
});
