// The command as installed: bin/dsfetch.js runs dist/bundle/ (scripts/bundle.ts, after tsc),
// not the bundle made from src/ that the other tests run. Each program of the bundle runs here against a real S3 server:
// the command, and each worker thread it starts (the main-thread watchdog; the MD5 of a
// large object, with and without direct writes; a tar's extraction and its stream hash; a
// zip's extraction). A worker missing from the bundle, or looked for in the wrong place,
// fails the fetch that needs it. `npm test` builds before it runs the tests.
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildZip } from "../archive/zip-writer.ts";
import { CLI_BIN, REPO_ROOT, runCli } from "../harness/cli.ts";
import { createBucket, putMultipart, putObject, testEnv } from "../harness/s3.ts";

const MiB = 1024 * 1024;
/** Over the 64 MiB from which objects are hashed on a worker thread (fetch/worker-hasher.ts). */
const LARGE = 72 * MiB + 5;

let root: string;
let bucket: string;
let large: Buffer;
const md5 = (data: Buffer) => createHash("md5").update(data).digest("hex");

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-bundle-"));
  bucket = await createBucket("bundle");
  large = randomBytes(LARGE);
  await putMultipart(bucket, "large.bin", large, 8 * MiB);
  // A tar of the large file and a small one, made by the system's tar.
  const tree = join(root, "tree");
  await mkdir(join(tree, "sub"), { recursive: true });
  await writeFile(join(tree, "large.bin"), large);
  await writeFile(join(tree, "sub", "small.txt"), "small\n");
  execFileSync("tar", ["-cf", join(root, "large.tar"), "-C", tree, "large.bin", "sub"]);
  await putMultipart(bucket, "large.tar", await readFile(join(root, "large.tar")), 8 * MiB);
  await putObject(
    bucket,
    "small.zip",
    buildZip([
      { name: "a.txt", data: Buffer.from("alpha\n") },
      { name: "b/c.txt", data: Buffer.from("gamma\n"), method: 0 },
    ]),
  );
}, 120_000);

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

async function fetchWithBin(uri: string, env: Record<string, string> = {}) {
  const storage = await mkdtemp(join(root, "storage-"));
  const result = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
    { entry: CLI_BIN, env: { ...testEnv(), ...env }, stdin: JSON.stringify([{ uri }]) },
  );
  expect(result.code, result.stderr).toBe(0);
  const json = JSON.parse(result.stdout) as {
    datasets: Array<{ path: string; verification: Record<string, number> }>;
  };
  const [dataset] = json.datasets;
  if (dataset === undefined) throw new Error(`no dataset in ${result.stdout}`);
  return dataset;
}

describe("the installed command (the bundle)", () => {
  it("is what bin/dsfetch.js runs, and knows the package's version", async () => {
    expect(await readFile(CLI_BIN, "utf8")).toMatch(/import "\.\.\/dist\/bundle\/dsfetch\.js"/);
    const { version } = JSON.parse(await readFile(join(REPO_ROOT, "package.json"), "utf8")) as {
      version: string;
    };
    const result = await runCli(["--version"], { entry: CLI_BIN });
    expect(result.code).toBe(0);
    expect(`${result.stdout}${result.stderr}`).toContain(version);
    // k8s reads it too, for the image it renders.
    const k8s = await runCli(["k8s", "--datasets", "-", "--storage-claim", "pvc", "--team", "t"], {
      entry: CLI_BIN,
      stdin: JSON.stringify([{ uri: "s3://b/x.tar" }]),
    });
    expect(k8s.code, k8s.stderr).toBe(0);
    expect(k8s.stdout).toContain(`image: "dsfetch:${version}"`);
  });

  it("fetches a large multipart object byte-exact, with direct writes and without", async () => {
    for (const directIo of ["1", "0"]) {
      const dataset = await fetchWithBin(`s3://${bucket}/large.bin`, {
        DSFETCH_DIRECT_IO: directIo,
      });
      expect(dataset.verification).toEqual({ "multipart-md5": 1 });
      expect(md5(await readFile(join(dataset.path, "large.bin")))).toBe(md5(large));
    }
  });

  it("expands a tar on its thread, verified as it streams", async () => {
    const dataset = await fetchWithBin(`s3://${bucket}/large.tar`);
    expect(dataset.verification).toEqual({ "multipart-md5": 1 });
    expect(md5(await readFile(join(dataset.path, "large.bin")))).toBe(md5(large));
    expect(await readFile(join(dataset.path, "sub", "small.txt"), "utf8")).toBe("small\n");
  });

  it("expands a zip on its thread", async () => {
    const dataset = await fetchWithBin(`s3://${bucket}/small.zip`);
    expect(await readFile(join(dataset.path, "a.txt"), "utf8")).toBe("alpha\n");
    expect(await readFile(join(dataset.path, "b", "c.txt"), "utf8")).toBe("gamma\n");
  });
});
