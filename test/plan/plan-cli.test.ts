// `dsfetch plan` against a real S3 server: every field of --json for each kind of dataset,
// and the per-dataset errors with their exit codes.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sharedLocation } from "../../src/volumes/layout.ts";
import { buildZip } from "../archive/zip-writer.ts";
import { runCli } from "../harness/cli.ts";
import {
  createBucket,
  deleteObject,
  putMany,
  putMultipart,
  putObject,
  s3Info,
  testEnv,
} from "../harness/s3.ts";

interface PlanJson {
  datasets: Array<
    Record<string, unknown> & { error?: { code: string; message: string; hint?: string } }
  >;
}

let root: string;
let bucket: string;
let versioned: string;
let publicBucket: string;
const small = randomBytes(4096);
const md5 = (data: Buffer) => createHash("md5").update(data).digest("hex");

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-plan-"));
  bucket = await createBucket("plan");
  versioned = await createBucket("plan-versions", { versioned: true });
  publicBucket = await createBucket("plan-public", { publicRead: true });
  await putObject(bucket, "single/train.csv", small);
  await putObject(bucket, "archives/mnist.tar.gz", small);
  await putObject(publicBucket, "open.bin", small);
  // Zips: two files of zeros (600,000 bytes declared, a few KB stored); 20,000 entries with
  // long names (a central directory of ~2.4 MB: read in several ranges); and bytes that are
  // no zip at all.
  await putObject(
    bucket,
    "zips/zeros.zip",
    buildZip([
      { name: "a.bin", data: Buffer.alloc(250_000) },
      { name: "dir/b.bin", data: Buffer.alloc(350_000) },
    ]),
  );
  const many = Array.from({ length: 20_000 }, (_, i) => ({
    name: `shard-${String(i).padStart(6, "0")}-${"x".repeat(60)}.txt`,
    data: String(i),
  }));
  await putObject(bucket, "zips/many.zip", buildZip(many));
  manyDeclared = many.reduce((sum, entry) => sum + entry.data.length, 0);
  await putObject(bucket, "zips/broken.zip", randomBytes(100_000));
});

let manyDeclared = 0;

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function plan(
  datasets: unknown,
  extraArgs: string[] = [],
  env = testEnv() as Record<string, string>,
) {
  const result = await runCli(
    ["plan", "--datasets", "-", "--storage-root", root, "--team", "ml", "--json", ...extraArgs],
    { env, stdin: JSON.stringify(datasets) },
  );
  const json = result.stdout === "" ? undefined : (JSON.parse(result.stdout) as PlanJson);
  return { ...result, json };
}

describe("plan --json", () => {
  it("reports a single object with every field", async () => {
    const { code, json, stderr } = await plan([{ uri: `s3://${bucket}/single/train.csv` }]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(json?.datasets).toEqual([
      {
        name: "train.csv",
        uri: `s3://${bucket}/single/train.csv`,
        kind: "object",
        etag: md5(small),
        versionId: null,
        bytes: 4096,
        objects: 1,
        archive: null,
        volume: "shared",
        path: join(root, "ml", "data", "train.csv"),
        mount: "/data/train.csv",
        cached: false,
      },
    ]);
  });

  it("reports a multipart object with its -N ETag", async () => {
    const body = randomBytes(12 * 1024 * 1024);
    const put = await putMultipart(bucket, "big/model.bin", body, 5 * 1024 * 1024);
    expect(put.etag).toMatch(/-3$/);
    const { code, json } = await plan([
      { uri: `s3://${bucket}/big/model.bin`, etag: `"${put.etag.toUpperCase()}"` },
    ]);
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      name: "model.bin",
      kind: "object",
      etag: put.etag,
      bytes: body.length,
      objects: 1,
      path: join(root, "ml", "data", `model.bin-${put.etag}`),
    });
  });

  it("reports a specific old version of a versioned object", async () => {
    const v1 = randomBytes(1000);
    const v2 = randomBytes(2000);
    const first = await putObject(versioned, "weights.bin", v1);
    const second = await putObject(versioned, "weights.bin", v2);
    expect(first.versionId).toBeDefined();
    expect(second.versionId).not.toBe(first.versionId);
    const { code, json } = await plan([
      { uri: `s3://${versioned}/weights.bin`, versionId: first.versionId },
    ]);
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      kind: "object",
      etag: md5(v1),
      versionId: first.versionId,
      bytes: 1000,
    });
    const latest = await plan([{ uri: `s3://${versioned}/weights.bin` }]);
    expect(latest.json?.datasets[0]).toMatchObject({
      etag: md5(v2),
      versionId: second.versionId,
      bytes: 2000,
    });
  });

  it("lists a prefix of more than one page (1,005 objects) and skips directory markers", async () => {
    const prefixBucket = await createBucket("plan-prefix");
    await putMany(prefixBucket, "images/", 1005, (i) => Buffer.alloc(i % 7, 1));
    await putObject(prefixBucket, "images/empty-folder/", Buffer.alloc(0));
    await putObject(prefixBucket, "other/not-included", small);
    const expectedBytes = Array.from({ length: 1005 }, (_, i) => i % 7).reduce((a, b) => a + b, 0);
    for (const uri of [`s3://${prefixBucket}/images/`, `s3://${prefixBucket}/images`]) {
      const { code, json } = await plan([{ uri }]);
      expect(code).toBe(0);
      expect(json?.datasets[0]).toEqual({
        name: "images",
        uri,
        kind: "prefix",
        etag: null,
        versionId: null,
        bytes: expectedBytes,
        objects: 1005,
        archive: null,
        volume: "shared",
        path: join(root, "ml", "data", "images"),
        mount: "/data/images",
        cached: false,
      });
    }
  });

  it("lists a whole bucket", async () => {
    const whole = await createBucket("plan-whole");
    await putObject(whole, "a.txt", "aaa");
    await putObject(whole, "dir/b.txt", "bb");
    const { code, json } = await plan(
      [{ uri: `s3://${whole}`, name: "whole" }],
      ["--mount-root", "/inputs"],
    );
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      name: "whole",
      kind: "prefix",
      bytes: 5,
      objects: 2,
      mount: "/inputs/whole",
      path: join(root, "ml", "data", "whole"),
    });
  });

  it("reports an archive object's format and strips the extension from the name", async () => {
    const { code, json } = await plan([{ uri: `s3://${bucket}/archives/mnist.tar.gz` }]);
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      name: "mnist",
      kind: "object",
      archive: "tar.gz",
      bytes: 4096,
    });
  });

  it("puts an ephemeral dataset under the ephemeral root", async () => {
    const ephemeral = join(root, "ephemeral");
    const { code, json } = await plan(
      [
        {
          uri: `s3://${bucket}/archives/mnist.tar.gz`,
          volumeOptions: { kind: "dynamic", size: "1Mi" },
        },
      ],
      ["--ephemeral-root", ephemeral],
    );
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      volume: "ephemeral",
      path: join(ephemeral, "mnist"),
    });
  });

  it("reads what a zip's entries declare from its central directory, by ranges, writing nothing", async () => {
    const { code, json, stderr } = await plan([
      { uri: `s3://${bucket}/zips/zeros.zip` },
      { uri: `s3://${bucket}/zips/many.zip` },
    ]);
    expect(code, stderr).toBe(0);
    expect(json?.datasets.map((d) => [d.name, d.archive, d.expandedBytes])).toEqual([
      ["zeros", "zip", 600_000],
      ["many", "zip", manyDeclared],
    ]);
    const human = await runCli(
      ["plan", "--datasets", "-", "--storage-root", root, "--team", "ml"],
      { env: testEnv(), stdin: JSON.stringify([{ uri: `s3://${bucket}/zips/zeros.zip` }]) },
    );
    expect(human.stderr).toMatch(/zeros\s+object\s+\S+ \S+\s+1\s+zip → 585\.9 KiB/);
  });

  it("a zip whose entries do not fit its ephemeral volume: NO_SPACE, as fetch would say after the download", async () => {
    const { code, json } = await plan(
      [
        {
          uri: `s3://${bucket}/zips/zeros.zip`,
          volumeOptions: { kind: "dynamic", size: "500K" },
        },
      ],
      ["--ephemeral-root", join(root, "eph-zip")],
    );
    expect(code).toBe(7);
    expect(json?.datasets[0]).toMatchObject({
      expandedBytes: 600_000,
      error: {
        code: "NO_SPACE",
        message:
          "zeros: the zip archive's entries declare 585.9 KiB (600000 bytes) but its ephemeral volume holds 488.3 KiB (500000 bytes)",
      },
    });
  });

  it("a zip over DSFETCH_MAX_EXPANDED_SIZE on shared storage: NO_SPACE naming the setting", async () => {
    const { code, json } = await plan([{ uri: `s3://${bucket}/zips/zeros.zip` }], [], {
      ...(testEnv() as Record<string, string>),
      DSFETCH_MAX_EXPANDED_SIZE: "500K",
    });
    expect(code).toBe(7);
    expect(json?.datasets[0]).toMatchObject({
      volume: "shared",
      error: {
        code: "NO_SPACE",
        message:
          "zeros: the zip archive's entries declare 585.9 KiB (600000 bytes), more than the limit of 500000 bytes (DSFETCH_MAX_EXPANDED_SIZE)",
      },
    });
  });

  it("a .zip that is no zip: ARCHIVE_INVALID before the download", async () => {
    const { code, json } = await plan([{ uri: `s3://${bucket}/zips/broken.zip` }]);
    expect(code).toBe(8);
    expect(json?.datasets[0]?.error).toMatchObject({ code: "ARCHIVE_INVALID" });
    // Beside what was resolved (it was a null entry).
    expect(json?.datasets[0]).toMatchObject({ kind: "object", bytes: 100_000, archive: "zip" });
    expect(json?.datasets[0]?.error?.message).toMatch(/End of Central Directory/);
  });

  it("says cached only when a published dataset's manifest matches the store", async () => {
    const etag = md5(small);
    const location = sharedLocation(root, "ml", "cachedcsv", etag);
    await mkdir(location.path, { recursive: true });
    await writeFile(join(location.path, "train.csv"), small);
    const dataset = { uri: `s3://${bucket}/single/train.csv`, name: "cachedcsv", etag };
    expect((await plan([dataset])).json?.datasets[0]?.cached).toBe(false);
    await mkdir(join(location.metaDir, "manifests"), { recursive: true });
    const manifest = {
      version: 1,
      name: "cachedcsv",
      uri: dataset.uri,
      // The store it was read from (another store's copy is not this dataset's).
      endpoint: s3Info().endpoint,
      kind: "object",
      etag,
      bytes: 4096,
      files: [{ path: "train.csv", bytes: 4096 }],
      verification: "md5",
      createdAt: new Date().toISOString(),
      host: "test",
    };
    await writeFile(location.manifestPath, JSON.stringify(manifest));
    expect((await plan([dataset])).json?.datasets[0]?.cached).toBe(true);
    await writeFile(location.manifestPath, JSON.stringify({ ...manifest, etag: "0".repeat(32) }));
    expect((await plan([dataset])).json?.datasets[0]?.cached).toBe(false);
  });

  it("shows where fetch would fall back to when shared storage cannot take a dataset, writing nothing", async () => {
    const missing = join(root, "not-mounted");
    const ephemeral = join(root, "fallback-eph");
    const dataset = { uri: `s3://${bucket}/single/train.csv`, name: "fb" };
    const args = ["--storage-root", missing, "--team", "ml", "--ephemeral-root", ephemeral];
    const planned = await runCli(["plan", "--datasets", "-", ...args, "--json"], {
      env: testEnv(),
      stdin: JSON.stringify([dataset]),
    });
    expect(planned.code, planned.stderr).toBe(0);
    expect((JSON.parse(planned.stdout) as PlanJson).datasets[0]).toMatchObject({
      volume: "ephemeral",
      path: join(ephemeral, "fb"),
      cached: false,
      fallback: `shared storage is unavailable: ${missing} does not exist (is the shared volume mounted?)`,
    });
    const human = await runCli(["plan", "--datasets", "-", ...args], {
      env: testEnv(),
      stdin: JSON.stringify([dataset]),
    });
    expect(human.stderr).toContain(
      `fb: shared storage is unavailable: ${missing} does not exist (is the shared volume mounted?); fetch would stage it into an ephemeral volume at ${join(ephemeral, "fb")}\n`,
    );
    expect(await readdir(root)).not.toContain("fallback-eph");
    // Once fetch has staged it there, the plan says it is cached there.
    const fetched = await runCli(["fetch", "--datasets", "-", ...args], {
      env: testEnv(),
      stdin: JSON.stringify([dataset]),
    });
    expect(fetched.code, fetched.stderr).toBe(0);
    const again = await runCli(["plan", "--datasets", "-", ...args, "--json"], {
      env: testEnv(),
      stdin: JSON.stringify([dataset]),
    });
    expect((JSON.parse(again.stdout) as PlanJson).datasets[0]).toMatchObject({
      volume: "ephemeral",
      path: join(ephemeral, "fb"),
      cached: true,
    });
  });

  it("--no-fallback: says the dataset would fail where fetch would have fallen back", async () => {
    const missing = join(root, "not-mounted-nofb");
    const ephemeral = join(root, "fallback-eph-nofb");
    const planned = await runCli(
      [
        "plan",
        "--datasets",
        "-",
        "--storage-root",
        missing,
        "--team",
        "ml",
        "--ephemeral-root",
        ephemeral,
        "--no-fallback",
        "--json",
      ],
      {
        env: testEnv(),
        stdin: JSON.stringify([{ uri: `s3://${bucket}/single/train.csv`, name: "nf" }]),
      },
    );
    const [entry] = (JSON.parse(planned.stdout) as PlanJson).datasets;
    expect(entry).toMatchObject({
      volume: "shared",
      error: {
        code: "STORAGE",
        message: `nf: shared storage is unavailable: ${missing} does not exist (is the shared volume mounted?); not staged into an ephemeral volume instead (--no-fallback)`,
      },
    });
    expect(entry).not.toHaveProperty("fallback");
    expect(await readdir(root)).not.toContain("fallback-eph-nofb");
  });

  it("writes nothing to disk", async () => {
    const before = await readdir(root, { recursive: true });
    await plan([{ uri: `s3://${bucket}/single/train.csv`, name: "nowrite" }]);
    expect(await readdir(root, { recursive: true })).toEqual(before);
  });

  it("reads a public bucket anonymously when no credentials exist", async () => {
    const env: Record<string, string> = {
      AWS_ENDPOINT_URL: s3Info().endpoint,
      AWS_REGION: "us-east-1",
    };
    const { code, json } = await plan([{ uri: `s3://${publicBucket}/open.bin` }], [], env);
    expect(json?.datasets[0]?.error).toBeUndefined();
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({ kind: "object", bytes: 4096 });
  });
});

describe("plan errors", () => {
  it("ETag mismatch: exit 5, expected and found in the message, other datasets still planned", async () => {
    const wrong = "0123456789abcdef0123456789abcdef";
    const { code, json } = await plan([
      { uri: `s3://${bucket}/single/train.csv`, etag: wrong },
      { uri: `s3://${bucket}/archives/mnist.tar.gz` },
    ]);
    expect(code).toBe(5);
    const [failed, ok] = json?.datasets ?? [];
    expect(failed?.error?.code).toBe("ETAG_MISMATCH");
    expect(failed?.error?.message).toContain(wrong);
    expect(failed?.error?.message).toContain(md5(small));
    expect(failed?.error?.message).toContain("train.csv");
    expect(ok?.error).toBeUndefined();
    expect(ok?.kind).toBe("object");
  });

  it("missing object and prefix: exit 3 NOT_FOUND", async () => {
    const { code, json } = await plan([{ uri: `s3://${bucket}/no/such/thing.zip` }]);
    expect(code).toBe(3);
    expect(json?.datasets[0]?.error?.code).toBe("NOT_FOUND");
    expect(json?.datasets[0]?.error?.message).toContain(`s3://${bucket}/no/such/thing.zip`);
  });

  it("missing bucket: exit 3 and the bucket named", async () => {
    const { code, json } = await plan([{ uri: "s3://dsfetch-no-such-bucket-xyz/a.bin" }]);
    expect(code).toBe(3);
    expect(json?.datasets[0]?.error?.code).toBe("NOT_FOUND");
  });

  it("NoSuchVersion: exit 3", async () => {
    await putObject(versioned, "nv.bin", small);
    const { code, json } = await plan([
      { uri: `s3://${versioned}/nv.bin`, versionId: "00000000-0000-0000-0000-000000000000" },
    ]);
    expect(code).toBe(3);
    expect(json?.datasets[0]?.error?.code).toBe("NO_SUCH_VERSION");
    expect(json?.datasets[0]?.error?.message).toContain("00000000-0000-0000-0000-000000000000");
  });

  it("delete marker: exit 3 DELETE_MARKER, with advice to pin a version", async () => {
    const put = await putObject(versioned, "deleted.bin", small);
    const marker = await deleteObject(versioned, "deleted.bin");
    expect(marker).toBeDefined();
    const latest = await plan([{ uri: `s3://${versioned}/deleted.bin` }]);
    expect(latest.code).toBe(3);
    expect(latest.json?.datasets[0]?.error?.code).toBe("DELETE_MARKER");
    expect(latest.json?.datasets[0]?.error?.hint).toContain("versionId");
    const atMarker = await plan([{ uri: `s3://${versioned}/deleted.bin`, versionId: marker }]);
    expect(atMarker.code).toBe(3);
    expect(atMarker.json?.datasets[0]?.error?.code).toBe("DELETE_MARKER");
    const old = await plan([{ uri: `s3://${versioned}/deleted.bin`, versionId: put.versionId }]);
    expect(old.code).toBe(0);
    expect(old.json?.datasets[0]).toMatchObject({ versionId: put.versionId, bytes: 4096 });
  });

  it("wrong keys: exit 4 ACCESS_DENIED and the secret is never printed", async () => {
    const secret = "WrongSecretValue1234567890";
    const { code, json, stdout, stderr } = await plan([
      {
        uri: `s3://${bucket}/single/train.csv`,
        awsAccessKeyId: "WRONGKEYID123",
        awsSecretAccessKey: secret,
      },
    ]);
    expect(code).toBe(4);
    expect(json?.datasets[0]?.error?.code).toBe("ACCESS_DENIED");
    expect(stdout + stderr).not.toContain(secret);
    expect(stdout + stderr).not.toContain("WRONGKEYID123");
  });

  it("etag on a key that turns out to be a folder: exit 2", async () => {
    const { code, json } = await plan([{ uri: `s3://${bucket}/single`, etag: md5(small) }]);
    expect(code).toBe(2);
    expect(json?.datasets[0]?.error?.message).toContain("folder");
  });

  it("ephemeral volume smaller than the object: NO_SPACE before any download", async () => {
    const { code, json } = await plan([
      { uri: `s3://${bucket}/single/train.csv`, volumeOptions: { kind: "dynamic", size: "1K" } },
    ]);
    expect(code).toBe(7);
    expect(json?.datasets[0]?.error?.code).toBe("NO_SPACE");
    expect(json?.datasets[0]?.error?.message).toMatch(/needs 4\.0 KiB .* holds/);
  });

  it("without storage root: exit 2 naming the flag and variable", async () => {
    const result = await runCli(["plan", "--datasets", "-"], {
      env: testEnv(),
      stdin: JSON.stringify([{ uri: `s3://${bucket}/single/train.csv` }]),
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--storage-root (or DSFETCH_STORAGE_ROOT)");
    expect(result.stderr).toContain("--team (or DSFETCH_TEAM)");
  });

  it('a staged copy whose source changed: not cached, and what it replaces is said (it said only "no")', async () => {
    const storage = await mkdtemp(join(root, "stale-"));
    const key = "stale/labels.csv";
    const first = await putObject(bucket, key, "a,b\n");
    const flags = ["--storage-root", storage, "--team", "ml"];
    const input = JSON.stringify([{ uri: `s3://${bucket}/${key}` }]);
    const fetched = await runCli(["fetch", "--datasets", "-", ...flags], {
      env: testEnv(),
      stdin: input,
    });
    expect(fetched.code, fetched.stderr).toBe(0);
    await putObject(bucket, key, "a,b,c\n");
    const json = await runCli(["plan", "--datasets", "-", "--json", ...flags], {
      env: testEnv(),
      stdin: input,
    });
    expect(JSON.parse(json.stdout).datasets[0]).toMatchObject({
      cached: false,
      replaces: { etag: first.etag, versionId: null, stagedAt: expect.any(String) },
    });
    const table = await runCli(["plan", "--datasets", "-", ...flags], {
      env: testEnv(),
      stdin: input,
    });
    expect(table.stderr).toMatch(/labels\.csv\s+object\s+.*\s+no: stale\s+/);
    // A dataset never staged: nothing replaced.
    const fresh = await plan([{ uri: `s3://${bucket}/single/train.csv`, name: "never" }]);
    expect(fresh.json?.datasets[0]?.replaces).toBeUndefined();
  });

  it("human output: a table on stderr, nothing on stdout", async () => {
    const result = await runCli(["plan", "--storage-root", root, "--team", "ml"], {
      env: {
        ...testEnv(),
        DSFETCH_DATASETS: JSON.stringify([{ uri: `s3://${bucket}/single/train.csv` }]),
      },
    });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/NAME\s+KIND\s+SIZE/);
    expect(result.stderr).toMatch(/train\.csv\s+object\s+4\.0 KiB\s+1/);
  });
});
