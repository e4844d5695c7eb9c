// `dsfetch fetch` against a real S3 server: bytes on disk, manifests, verification method,
// exit codes and messages, and that failures leave nothing behind.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
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

interface FetchJson {
  datasets: Array<
    Record<string, unknown> & {
      name: string;
      path?: string;
      verification?: Record<string, number>;
      retries?: number;
      error?: { code: string; message: string; hint?: string };
    }
  >;
}

let root: string;
let bucket: string;
let versioned: string;
const md5 = (data: Buffer) => createHash("md5").update(data).digest("hex");

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-fetch-"));
  bucket = await createBucket("fetch");
  versioned = await createBucket("fetch-versions", { versioned: true });
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fetchDatasets(
  datasets: unknown,
  options: { env?: Record<string, string>; storage?: string } = {},
) {
  const storage = options.storage ?? (await mkdtemp(join(root, "storage-")));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    {
      env: options.env ?? testEnv(),
      stdin: JSON.stringify(datasets),
      timeoutMs: 120_000,
    },
  );
  const json = result.stdout === "" ? undefined : (JSON.parse(result.stdout) as FetchJson);
  return { ...result, json, storage, data: join(storage, "ml", "data") };
}

/** Every path under the data root, excluding dsfetch's own directory. */
async function publishedEntries(dataRoot: string): Promise<string[]> {
  const entries = await readdir(dataRoot, { recursive: true }).catch(() => [] as string[]);
  return entries.filter((entry) => !entry.startsWith(".dsfetch")).sort();
}

async function leftovers(dataRoot: string): Promise<string[]> {
  return readdir(join(dataRoot, ".dsfetch", "tmp")).catch(() => [] as string[]);
}

describe("fetch: one object", () => {
  it("stages a single-part object byte-exact, verified by MD5, with a manifest", async () => {
    const body = randomBytes(3 * 1024 * 1024 + 17);
    const put = await putObject(bucket, "models/weights.bin", body);
    const { code, json, data, stderr } = await fetchDatasets([
      { uri: `s3://${bucket}/models/weights.bin`, etag: put.etag },
    ]);
    expect(code).toBe(0);
    expect(stderr).toContain(
      `weights.bin: staged 3.0 MiB at ${join(data, `weights.bin-${put.etag}`)}`,
    );
    const dir = join(data, `weights.bin-${put.etag}`);
    expect(json?.datasets[0]).toMatchObject({
      name: "weights.bin",
      kind: "object",
      etag: put.etag,
      path: dir,
      bytes: body.length,
      objects: 1,
      cached: false,
      verification: { md5: 1 },
      retries: 0,
    });
    expect(await readdir(dir)).toEqual(["weights.bin"]);
    expect((await readFile(join(dir, "weights.bin"))).equals(body)).toBe(true);
    const manifest = JSON.parse(
      await readFile(join(data, ".dsfetch", "manifests", `weights.bin-${put.etag}.json`), "utf8"),
    );
    expect(manifest).toMatchObject({
      uri: `s3://${bucket}/models/weights.bin`,
      kind: "object",
      etag: put.etag,
      bytes: body.length,
      verification: "md5",
      files: [{ path: "weights.bin", bytes: body.length, digest: `md5:${md5(body)}` }],
    });
    expect(JSON.stringify(manifest)).not.toContain(s3Info().secretAccessKey);
    expect(await leftovers(data)).toEqual([]);
  });

  it("verifies a multipart object (5 MiB parts) as multipart-md5", async () => {
    const body = randomBytes(13 * 1024 * 1024 + 5);
    const put = await putMultipart(bucket, "multi/data.bin", body, 5 * 1024 * 1024);
    expect(put.etag).toMatch(/-3$/);
    const { code, json } = await fetchDatasets([{ uri: `s3://${bucket}/multi/data.bin` }], {
      env: { ...testEnv(), DSFETCH_RANGE_SIZE: "2Mi" },
    });
    expect(code).toBe(0);
    expect(json?.datasets[0]?.verification).toEqual({ "multipart-md5": 1 });
    expect((await readFile(join(json?.datasets[0]?.path as string, "data.bin"))).equals(body)).toBe(
      true,
    );
  });

  it("verifies a large object (hashed in a worker thread) byte-exact", async () => {
    const body = randomBytes(65 * 1024 * 1024 + 11);
    const single = await putObject(bucket, "large/single.bin", body);
    const multi = await putMultipart(bucket, "large/multi.bin", body, 16 * 1024 * 1024);
    expect(multi.etag).toMatch(/-5$/);
    const { code, json } = await fetchDatasets([
      { uri: `s3://${bucket}/large/single.bin`, etag: single.etag },
      { uri: `s3://${bucket}/large/multi.bin` },
    ]);
    expect(code).toBe(0);
    expect(json?.datasets[0]?.verification).toEqual({ md5: 1 });
    expect(json?.datasets[1]?.verification).toEqual({ "multipart-md5": 1 });
    for (const [index, file] of [
      [0, "single.bin"],
      [1, "multi.bin"],
    ] as const) {
      const got = await readFile(join(json?.datasets[index]?.path as string, file));
      expect(md5(got)).toBe(md5(body));
    }
  });

  it("stages an empty object as an empty file", async () => {
    await putObject(bucket, "empty/nothing.dat", Buffer.alloc(0));
    const { code, json } = await fetchDatasets([{ uri: `s3://${bucket}/empty/nothing.dat` }]);
    expect(code).toBe(0);
    expect((await stat(join(json?.datasets[0]?.path as string, "nothing.dat"))).size).toBe(0);
    expect(json?.datasets[0]?.verification).toEqual({ md5: 1 });
  });

  it("fetches an old versionId byte-exact", async () => {
    const v1 = randomBytes(100_000);
    const first = await putObject(versioned, "table.parquet", v1);
    await putObject(versioned, "table.parquet", randomBytes(50_000));
    const { code, json } = await fetchDatasets([
      { uri: `s3://${versioned}/table.parquet`, versionId: first.versionId },
    ]);
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      versionId: first.versionId,
      etag: first.etag,
      bytes: 100_000,
    });
    expect(
      (await readFile(join(json?.datasets[0]?.path as string, "table.parquet"))).equals(v1),
    ).toBe(true);
  });

  it("reuses a published dataset without downloading again", async () => {
    const body = randomBytes(200_000);
    await putObject(bucket, "reuse/r.bin", body);
    const first = await fetchDatasets([{ uri: `s3://${bucket}/reuse/r.bin` }]);
    expect(first.code).toBe(0);
    const second = await fetchDatasets([{ uri: `s3://${bucket}/reuse/r.bin` }], {
      storage: first.storage,
    });
    expect(second.code).toBe(0);
    expect(second.json?.datasets[0]).toMatchObject({
      cached: true,
      path: first.json?.datasets[0]?.path,
    });
  });

  it("a reuse removes what a holder killed after its rename left in tmp (same host, dead pid)", async () => {
    await putObject(bucket, "reuse/left.bin", randomBytes(1000));
    const first = await fetchDatasets([{ uri: `s3://${bucket}/reuse/left.bin` }]);
    expect(first.code).toBe(0);
    const host = hostLabel();
    const tmp = join(first.data, ".dsfetch", "tmp");
    // A pid that cannot be alive (above pid_max), and one that is: only the first goes.
    const dead = join(tmp, `left.bin.${host}.4194999.deadbeef`);
    const alive = join(tmp, `left.bin.${host}.${process.pid}.cafecafe`);
    await mkdir(dead, { recursive: true });
    await mkdir(alive, { recursive: true });
    const second = await fetchDatasets([{ uri: `s3://${bucket}/reuse/left.bin` }], {
      storage: first.storage,
    });
    expect(second.json?.datasets[0]?.cached).toBe(true);
    expect((await readdir(tmp)).sort()).toEqual([basename(alive)]);
  });
});

describe("fetch: failures leave nothing behind", () => {
  it("ETag mismatch: exit 5, expected and found named, nothing published", async () => {
    const put = await putObject(bucket, "mismatch/m.bin", randomBytes(1000));
    const wrong = "ffffffffffffffffffffffffffffffff";
    const { code, json, data } = await fetchDatasets([
      { uri: `s3://${bucket}/mismatch/m.bin`, etag: wrong },
    ]);
    expect(code).toBe(5);
    expect(json?.datasets[0]?.error?.code).toBe("ETAG_MISMATCH");
    expect(json?.datasets[0]?.error?.message).toContain(wrong);
    expect(json?.datasets[0]?.error?.message).toContain(put.etag);
    expect(await publishedEntries(data)).toEqual([]);
    expect(await leftovers(data)).toEqual([]);
  });

  it("ETag mismatch with a versionId pinned too: the hint says one of the two pins is wrong", async () => {
    const put = await putObject(versioned, "both-pinned.bin", randomBytes(1000));
    const { code, json } = await fetchDatasets([
      {
        uri: `s3://${versioned}/both-pinned.bin`,
        versionId: put.versionId,
        etag: "ffffffffffffffffffffffffffffffff",
      },
    ]);
    expect(code).toBe(5);
    const error = json?.datasets[0]?.error;
    expect(error?.code).toBe("ETAG_MISMATCH");
    expect(error?.hint).toContain(`version ${put.versionId} does not have this ETag`);
    expect(error?.hint).not.toContain('pin "versionId"');
  });

  it("the MD5 of a multipart object's bytes pinned as its etag: the hint says the store's ETag is a multipart one, not that the object was replaced", async () => {
    const body = randomBytes(11 * 1024 * 1024);
    const put = await putMultipart(bucket, "multi/pinned.bin", body, 5 * 1024 * 1024);
    const digest = md5(body);
    const { code, json, data } = await fetchDatasets([
      { uri: `s3://${bucket}/multi/pinned.bin`, etag: digest },
    ]);
    expect(code).toBe(5);
    const error = json?.datasets[0]?.error;
    expect(error?.code).toBe("ETAG_MISMATCH");
    expect(error?.message).toContain(`expected ${digest}, the store has ${put.etag}`);
    expect(error?.hint).toContain("the store's ETag is a multipart upload's (3 parts)");
    expect(error?.hint).not.toContain("replaced");
    expect(await publishedEntries(data)).toEqual([]);
  });

  it('a "versionId" on a folder named without its "/": a config error (exit 2), not "no such version"', async () => {
    await putObject(versioned, "vfolder/a.txt", "a");
    await putObject(versioned, "vfolder/b.txt", "b");
    const { code, json } = await fetchDatasets([
      { uri: `s3://${versioned}/vfolder`, versionId: "11111111-1111-1111-1111-111111111111" },
    ]);
    expect(code).toBe(2);
    const error = json?.datasets[0]?.error;
    expect(error?.code).toBe("CONFIG_INVALID");
    expect(error?.message).toContain(
      `"versionId" applies to a single object only, but s3://${versioned}/vfolder is a folder (2 objects`,
    );
  });

  it("NoSuchVersion: exit 3 at once, no retry", async () => {
    await putObject(versioned, "nv.bin", "x");
    const { code, json, stderr } = await fetchDatasets([
      { uri: `s3://${versioned}/nv.bin`, versionId: "11111111-1111-1111-1111-111111111111" },
    ]);
    expect(code).toBe(3);
    expect(json?.datasets[0]?.error?.code).toBe("NO_SUCH_VERSION");
    expect(stderr).not.toContain("retrying");
  });

  it("delete marker: exit 3 DELETE_MARKER, no retry", async () => {
    await putObject(versioned, "gone.bin", "x");
    await deleteObject(versioned, "gone.bin");
    const { code, json, stderr } = await fetchDatasets([{ uri: `s3://${versioned}/gone.bin` }]);
    expect(code).toBe(3);
    expect(json?.datasets[0]?.error?.code).toBe("DELETE_MARKER");
    expect(stderr).not.toContain("retrying");
  });

  it("wrong keys: exit 4 ACCESS_DENIED, no retry, secrets never printed", async () => {
    const secret = "NotTheRightSecret0123456789";
    const { code, json, stdout, stderr } = await fetchDatasets([
      {
        uri: `s3://${bucket}/mismatch/m.bin`,
        awsAccessKeyId: "NOSUCHKEY42",
        awsSecretAccessKey: secret,
      },
    ]);
    expect(code).toBe(4);
    expect(json?.datasets[0]?.error?.code).toBe("ACCESS_DENIED");
    expect(json?.datasets[0]?.error?.hint).toBeTruthy();
    expect(stdout + stderr).not.toContain(secret);
    expect(stdout + stderr).not.toContain("NOSUCHKEY42");
    expect(stderr).not.toContain("retrying");
  });

  it("human output: errors on stderr with the code and a hint, nothing on stdout", async () => {
    const storage = await mkdtemp(join(root, "human-"));
    const result = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml"],
      {
        env: testEnv(),
        stdin: JSON.stringify([{ uri: `s3://${bucket}/no/such/key.bin` }]),
      },
    );
    expect(result.code).toBe(3);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain(
      `dsfetch: error: key.bin: s3://${bucket}/no/such/key.bin does not exist`,
    );
    expect(result.stderr).toContain("[NOT_FOUND]");
    expect(result.stderr).toContain("hint:");
  });

  it("one failing dataset does not stop the others; with --json its error is on stderr too", async () => {
    await putObject(bucket, "mixed/ok.bin", "fine");
    const { code, json, stderr } = await fetchDatasets([
      { uri: `s3://${bucket}/mixed/missing.bin` },
      { uri: `s3://${bucket}/mixed/ok.bin` },
    ]);
    expect(code).toBe(3);
    expect(json?.datasets[0]?.error?.code).toBe("NOT_FOUND");
    expect(json?.datasets[1]).toMatchObject({ name: "ok.bin", cached: false, bytes: 4 });
    // Human output goes to stderr whatever --json says: a log of stderr alone names it.
    expect(stderr).toContain(
      `dsfetch: error: missing.bin: s3://${bucket}/mixed/missing.bin does not exist`,
    );
    expect(stderr).toContain("[NOT_FOUND]");
  });
});

describe("fetch: folders and buckets", () => {
  it("stages a prefix of 2,000 objects completely, keeping relative paths", async () => {
    const many = await createBucket("fetch-many");
    const body = (i: number) => Buffer.from(`object ${i} `.repeat((i % 13) + 1));
    await putMany(many, "shards/a/", 1000, body);
    await putMany(many, "shards/b/", 1000, (i) => body(i + 1000));
    await putObject(many, "shards/marker/", Buffer.alloc(0));
    await putObject(many, "elsewhere.txt", "not part of it");
    const { code, json, data } = await fetchDatasets([{ uri: `s3://${many}/shards/` }]);
    expect(code).toBe(0);
    const entry = json?.datasets[0];
    expect(entry).toMatchObject({
      name: "shards",
      kind: "prefix",
      objects: 2000,
      verification: { md5: 2000 },
    });
    const dir = join(data, "shards");
    const a = await readdir(join(dir, "a"));
    const b = await readdir(join(dir, "b"));
    expect(a.length + b.length).toBe(2000);
    expect(await readdir(dir)).toEqual(["a", "b"]);
    for (const i of [0, 1, 999]) {
      expect((await readFile(join(dir, "a", String(i)))).equals(body(i))).toBe(true);
      expect((await readFile(join(dir, "b", String(i)))).equals(body(i + 1000))).toBe(true);
    }
    expect(await leftovers(data)).toEqual([]);
  });

  it("stages a whole bucket, with a large object among small ones", async () => {
    const whole = await createBucket("fetch-whole");
    const big = randomBytes(5 * 1024 * 1024 + 3);
    await putObject(whole, "big/blob.bin", big);
    await putObject(whole, "small.txt", "small");
    const { code, json, data } = await fetchDatasets(
      [{ uri: `s3://${whole}`, name: "everything" }],
      {
        env: { ...testEnv(), DSFETCH_RANGE_SIZE: "1Mi" },
      },
    );
    expect(code).toBe(0);
    expect(json?.datasets[0]).toMatchObject({
      objects: 2,
      bytes: big.length + 5,
      verification: { md5: 2 },
    });
    expect((await readFile(join(data, "everything", "big", "blob.bin"))).equals(big)).toBe(true);
    expect(await readFile(join(data, "everything", "small.txt"), "utf8")).toBe("small");
  });

  it("signs keys with spaces, Unicode and reserved characters correctly", async () => {
    const odd = await createBucket("fetch-odd");
    const keys = [
      "odd/a b.txt",
      "odd/ünïcödé.txt",
      "odd/plus+eq=amp&.txt",
      "odd/q?h#p%.txt",
      "odd/(paren)'s*~.txt",
    ];
    for (const key of keys) await putObject(odd, key, key);
    const { code, json, data } = await fetchDatasets([{ uri: `s3://${odd}/odd/` }]);
    expect(json?.datasets[0]?.error).toBeUndefined();
    expect(code).toBe(0);
    for (const key of keys) {
      expect(await readFile(join(data, key), "utf8")).toBe(key);
    }
  });

  it("reads a public bucket anonymously when no credentials are configured", async () => {
    const open = await createBucket("fetch-public", { publicRead: true });
    await putObject(open, "pub/readme.txt", "hello");
    const env = { AWS_ENDPOINT_URL: s3Info().endpoint, AWS_REGION: "us-east-1" };
    const { code, json } = await fetchDatasets([{ uri: `s3://${open}/pub/` }], { env });
    expect(json?.datasets[0]?.error).toBeUndefined();
    expect(code).toBe(0);
    expect(await readFile(join(json?.datasets[0]?.path as string, "readme.txt"), "utf8")).toBe(
      "hello",
    );
  });

  it("a broken credential setup fails naming it, even on a public bucket (it went anonymous without a word)", async () => {
    const open = await createBucket("fetch-public", { publicRead: true });
    await putObject(open, "pub/readme.txt", "hello");
    const store = { AWS_ENDPOINT_URL: s3Info().endpoint, AWS_REGION: "us-east-1" };
    const home = await mkdtemp(join(tmpdir(), "dsfetch-aws-home-"));
    await mkdir(join(home, ".aws"));
    await writeFile(
      join(home, ".aws", "credentials"),
      "[p1]\naws_access_key_id=x\naws_secret_access_key=y\n",
    );
    for (const [env, problem] of [
      [
        { AWS_ACCESS_KEY_ID: "AKIDEXAMPLE" },
        "AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY",
      ],
      [
        { AWS_SECRET_ACCESS_KEY: "s3cr3t-value" },
        "AWS_SECRET_ACCESS_KEY is set without AWS_ACCESS_KEY_ID",
      ],
      [
        {
          HOME: home,
          AWS_SHARED_CREDENTIALS_FILE: join(home, ".aws", "credentials"),
          AWS_PROFILE: "nope",
        },
        'AWS_PROFILE is set to "nope", but no credentials could be loaded with it',
      ],
    ] as const) {
      const { code, json } = await fetchDatasets([{ uri: `s3://${open}/pub/` }], {
        env: { ...store, ...env },
      });
      expect(code).toBe(2);
      expect(json?.datasets[0]?.error?.code).toBe("USAGE");
      expect(json?.datasets[0]?.error?.message).toContain(problem);
    }
    // The profile that exists is used (and its keys are wrong for this store: denied, not anonymous).
    const { json } = await fetchDatasets([{ uri: `s3://${open}/pub/` }], {
      env: {
        ...store,
        HOME: home,
        AWS_SHARED_CREDENTIALS_FILE: join(home, ".aws", "credentials"),
        AWS_PROFILE: "p1",
      },
    });
    expect(json?.datasets[0]?.error?.code).toBe("ACCESS_DENIED");
    await rm(home, { recursive: true, force: true });
  });
});
