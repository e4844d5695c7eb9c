// What `run` gives its command in the environment (review, 2026-12-05): one DSFETCH_PATH_<NAME>
// per dataset, never two datasets behind one variable, and not dsfetch's own input (which may
// hold keys).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { exists } from "../harness/cli-process.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-run-env-"));
  bucket = await createBucket("runenv");
  await putObject(bucket, "a.txt", "first\n");
  await putObject(bucket, "b.txt", "second\n");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function runArgs(storage: string, command: string[]): string[] {
  return [
    "run",
    "--storage-root",
    storage,
    "--team",
    "ml",
    "--mount-root",
    join(storage, "mnt"),
    // Its own: the default one (per user, in the temporary directory) keeps what earlier runs
    // staged, from other test servers (other endpoints: another store's dataset).
    "--ephemeral-root",
    join(storage, "ephemeral"),
    "--",
    ...command,
  ];
}

describe("run: the command's environment", () => {
  it("two dataset names that give the same DSFETCH_PATH_ variable are refused before anything is staged", async () => {
    const storage = await mkdtemp(join(root, "clash-"));
    const marker = join(storage, "ran");
    const result = await runCli(["--datasets", "-", ...runArgs(storage, ["touch", marker])], {
      env: testEnv(),
      stdin: JSON.stringify([
        { uri: `s3://${bucket}/a.txt`, name: "a-b" },
        { uri: `s3://${bucket}/b.txt`, name: "a_b" },
      ]),
    });
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain(
      'datasets "a-b" and "a_b" would both be given to the command as DSFETCH_PATH_A_B',
    );
    expect(result.stderr).toContain("rename one of them");
    expect(await exists(marker)).toBe(false);
    expect(await exists(join(storage, "ml"))).toBe(false);
  });

  it("DSFETCH_DATASETS, with its keys, is not passed on to the command", async () => {
    const storage = await mkdtemp(join(root, "env-"));
    const info = s3Info();
    const datasets = JSON.stringify([
      {
        uri: `s3://${bucket}/a.txt`,
        name: "first",
        awsAccessKeyId: info.accessKeyId,
        awsSecretAccessKey: info.secretAccessKey,
      },
    ]);
    const result = await runCli(
      runArgs(storage, [
        "sh",
        "-c",
        'cat "$DSFETCH_PATH_FIRST"/a.txt; echo "datasets: $(printenv DSFETCH_DATASETS || echo unset)"',
      ]),
      { env: { ...testEnv(), DSFETCH_DATASETS: datasets } },
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe("first\ndatasets: unset\n");
  });

  it("as root on writable shared storage, run warns that file modes do not protect the shared datasets", async () => {
    if (process.getuid?.() !== 0) throw new Error("this test needs root: the tests run as root");
    const storage = await mkdtemp(join(root, "root-"));
    const result = await runCli(["--datasets", "-", ...runArgs(storage, ["true"])], {
      env: testEnv(),
      stdin: JSON.stringify([
        { uri: `s3://${bucket}/a.txt`, name: "shared-one" },
        {
          uri: `s3://${bucket}/b.txt`,
          name: "own-volume",
          volumeOptions: { kind: "dynamic", size: "1Mi" },
        },
      ]),
    });
    expect(result.code, result.stderr).toBe(0);
    const warning = result.stderr.split("\n").find((line) => line.includes("runs as root"));
    expect(warning).toContain(
      "warning: the command runs as root, which file modes do not stop: it can change the shared datasets shared-one,",
    );
    // Its own ephemeral volume is the job's alone.
    expect(warning).not.toContain("own-volume");
  });
});
