// plan checks a zip's entries as the extraction does before its first write (names, types,
// methods, declared sizes, collisions): it passed `../evil.txt` and `dir\b.txt`, which fetch
// then refused after the download (exploratory tester, 2026-12-07).
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildZip } from "../archive/zip-writer.ts";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-plan-zip-"));
  bucket = await createBucket("planzip");
  await Promise.all([
    putObject(bucket, "slip.zip", buildZip([{ name: "../evil.txt", data: "x" }])),
    putObject(bucket, "backslash.zip", buildZip([{ name: "dir\\b.txt", data: "x" }])),
    putObject(
      bucket,
      "twice.zip",
      buildZip([
        { name: "a.txt", data: "1" },
        { name: "A.txt", data: "2" },
      ]),
    ),
    putObject(bucket, "good.zip", buildZip([{ name: "d/ok.txt", data: "fine" }])),
    // "テスト.txt" as Japanese Windows writes it (CP932), no UTF-8 flag, made on FAT.
    putObject(
      bucket,
      "windows.zip",
      buildZip([
        {
          name: Buffer.from([0x83, 0x65, 0x83, 0x58, 0x83, 0x67, 0x2e, 0x74, 0x78, 0x74]),
          data: "x",
          versionMadeBy: 0x0014,
        },
      ]),
    ),
  ]);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("plan of zips fetch would refuse by their entries", () => {
  it("says UNSAFE_PATH as fetch does, naming the entry; a good zip passes", async () => {
    const datasets = ["slip", "backslash", "twice", "good"].map((name) => ({
      uri: `s3://${bucket}/${name}.zip`,
      volumeOptions: { kind: "dynamic", size: "1Gi" },
    }));
    const args = ["--datasets", "-", "--ephemeral-root", join(root, "eph"), "--json"];
    const planned = await runCli(["plan", ...args], {
      env: testEnv(),
      stdin: JSON.stringify(datasets),
    });
    const fetched = await runCli(["fetch", ...args], {
      env: testEnv(),
      stdin: JSON.stringify(datasets),
    });
    expect(planned.code, planned.stderr).toBe(8);
    const errors = (stdout: string) =>
      (
        JSON.parse(stdout) as {
          datasets: { name: string; error?: { code: string; message: string } }[];
        }
      ).datasets.map((entry) => [entry.name, entry.error?.code ?? null]);
    expect(errors(planned.stdout)).toEqual([
      ["slip", "UNSAFE_PATH"],
      ["backslash", "UNSAFE_PATH"],
      ["twice", "UNSAFE_PATH"],
      ["good", null],
    ]);
    expect(errors(planned.stdout)).toEqual(errors(fetched.stdout));
    const messages = (
      JSON.parse(planned.stdout) as { datasets: { error?: { message: string } }[] }
    ).datasets.map((entry) => entry.error?.message ?? "");
    expect(messages[0]).toContain('zip entry "../evil.txt" is refused');
    expect(messages[1]).toContain("contains a backslash");
  });
});

describe("plan of a zip whose names fetch reads as CP437", () => {
  it("gives fetch's warning (it said nothing)", async () => {
    const datasets = [
      { uri: `s3://${bucket}/windows.zip`, volumeOptions: { kind: "dynamic", size: "1Gi" } },
    ];
    const args = ["--datasets", "-", "--ephemeral-root", join(root, "eph-cp437")];
    const planned = await runCli(["plan", ...args], {
      env: testEnv(),
      stdin: JSON.stringify(datasets),
    });
    const fetched = await runCli(["fetch", ...args], {
      env: testEnv(),
      stdin: JSON.stringify(datasets),
    });
    expect(planned.code, planned.stderr).toBe(0);
    expect(fetched.code, fetched.stderr).toBe(0);
    const warning =
      /1 name in the zip archive \("âeâXâg\.txt"\) was not marked UTF-8 and was read as CP437/;
    expect(fetched.stderr).toMatch(warning);
    expect(planned.stderr).toMatch(warning);
  });
});
