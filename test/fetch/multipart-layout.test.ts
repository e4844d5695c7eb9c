// Multipart objects whose parts are not all of one size (parts copied from objects of several
// sizes, UploadPartCopy; uploaders that flush uneven parts). The first part's size times the
// count can still fit the object: boundaries guessed from it are wrong, and the recomputed
// ETag then never matched (INTEGRITY at every run, "corrupted in transit"). The last part's
// size gives such layouts away; every part is then asked for.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tar, file as tarFile } from "../archive/tar-helpers.ts";
import { runCli } from "../harness/cli.ts";
import { createBucket, putParts, testEnv } from "../harness/s3.ts";

const MiB = 1024 * 1024;
let root: string;
let bucket: string;
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
// 6 + 5 + 6 + 2 MiB: 4 parts of the first one's 6 MiB would also hold the 19 MiB, ending
// with a 1 MiB part.
const pieces = [6 * MiB, 5 * MiB, 6 * MiB, 2 * MiB].map((size) => randomBytes(size));
const whole = Buffer.concat(pieces);
const inner = randomBytes(19 * MiB);
const archive = tar(tarFile("inside.bin", inner));

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-layout-"));
  bucket = await createBucket("layout");
  await putParts(bucket, "uneven/data.bin", pieces);
  await putParts(bucket, "uneven-folder/data.bin", pieces);
  const cut = [6 * MiB, 5 * MiB, 6 * MiB];
  const parts: Buffer[] = [];
  let offset = 0;
  for (const size of cut) {
    parts.push(archive.subarray(offset, offset + size));
    offset += size;
  }
  parts.push(archive.subarray(offset));
  await putParts(bucket, "uneven-archive/set.tar", parts);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("multipart objects with parts of several sizes", () => {
  it("one object, a folder holding one, and a .tar streamed: verified as multipart-md5, byte-exact", async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const run = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
      {
        env: testEnv(),
        stdin: JSON.stringify([
          { uri: `s3://${bucket}/uneven/data.bin`, name: "one" },
          { uri: `s3://${bucket}/uneven-folder/`, name: "folder" },
          { uri: `s3://${bucket}/uneven-archive/set.tar`, name: "packed" },
        ]),
        timeoutMs: 60_000,
      },
    );
    expect(run.code, run.stderr).toBe(0);
    const results = JSON.parse(run.stdout).datasets;
    for (const result of results) expect(result.verification).toEqual({ "multipart-md5": 1 });
    const data = join(storage, "ml", "data");
    expect(sha(await readFile(join(data, "one", "data.bin")))).toBe(sha(whole));
    expect(sha(await readFile(join(data, "folder", "data.bin")))).toBe(sha(whole));
    expect(sha(await readFile(join(data, "packed", "inside.bin")))).toBe(sha(inner));
  });
});
