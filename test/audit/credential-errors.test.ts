// README audit, 2026-12-07: with AWS_ACCESS_KEY_ID and no AWS_SECRET_ACCESS_KEY, every dataset
// sharing the failed client got the first dataset's error ("labels.txt: …" three times, and
// "dataset": "labels.txt" in the others' --json entries). Each now names its own dataset.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { createBucket, s3Info } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-audit-credentials-"));
  bucket = await createBucket("audit-credentials");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Entry {
  name: string;
  error?: { code: string; message: string; dataset?: string; hint?: string };
}

describe("a broken credential setup, several datasets on one client", () => {
  it("fails each dataset with its own name, in the message and in --json; exit 2 (USAGE)", async () => {
    const datasets = [
      { uri: `s3://${bucket}/labels.txt` },
      { uri: `s3://${bucket}/weights.bin` },
      { uri: `s3://${bucket}/images/` },
    ];
    const result = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", root, "--team", "ml", "--json"],
      {
        env: {
          AWS_ENDPOINT_URL: s3Info().endpoint,
          AWS_REGION: "us-east-1",
          AWS_ACCESS_KEY_ID: "AKIDEXAMPLE",
        },
        stdin: JSON.stringify(datasets),
      },
    );
    expect(result.code, result.stderr).toBe(2);
    const entries = (JSON.parse(result.stdout) as { datasets: Entry[] }).datasets;
    expect(entries.map((entry) => entry.name)).toEqual(["labels.txt", "weights.bin", "images"]);
    for (const { name, error } of entries) {
      expect(error).toMatchObject({
        code: "USAGE",
        dataset: name,
        message: `${name}: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY`,
        hint: expect.stringContaining("fix the credentials in the environment"),
      });
    }
    // On stderr too: one line per dataset, each with its own name.
    for (const name of ["labels.txt", "weights.bin", "images"]) {
      expect(result.stderr).toContain(
        `dsfetch: error: ${name}: AWS_ACCESS_KEY_ID is set without AWS_SECRET_ACCESS_KEY [USAGE]`,
      );
    }
  });
});
