// Storage with bytes free but too few inodes for a folder's files: shared storage is found
// unable to take it before any byte is written (the dataset goes to an ephemeral volume at
// once, downloaded once), an ephemeral volume fails NO_SPACE saying so, and plan agrees.
// Before, the folder was written until the last inode went, then fell back and was
// downloaded again, and plan said it fitted (exploratory tester 2, 2026-12-07).
// Needs root: the storage is a tmpfs of 40 inodes in a mount namespace of the child's own.
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { requireRoot, runCliWithMounts } from "../harness/mount-namespace.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
/** More files than the tmpfs has inodes (40: its root and the layout's directories take some). */
const OBJECTS = 60;

beforeAll(async () => {
  requireRoot("a tmpfs of few inodes in its own mount namespace");
  root = await mkdtemp(join(tmpdir(), "dsfetch-inodes-"));
  bucket = await createBucket("inodes");
  await Promise.all([
    ...Array.from({ length: OBJECTS }, (_, i) => putObject(bucket, `many/f${i}.txt`, `file ${i}`)),
    // 20 objects, each in a directory of its own: 40 inodes, not 20.
    ...Array.from({ length: 20 }, (_, i) => putObject(bucket, `nested/d${i}/f.txt`, `file ${i}`)),
  ]);
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Entry {
  readonly volume?: string;
  readonly fallback?: string;
  readonly error?: { readonly code: string; readonly message: string };
}

/**
 * `dsfetch <command> --json` of the folder with `where` ("shared", or "ephemeral": a dynamic
 * volume) on a tmpfs of 40 inodes and 64 MiB (plenty of bytes), the other root elsewhere.
 */
async function onFewInodes(
  command: "fetch" | "plan",
  where: "shared" | "ephemeral",
  folder = "many",
) {
  const small = await mkdtemp(join(root, `${command}-${where}-`));
  const other = join(small, "..", `${small.split("/").at(-1)}-other`);
  await mkdir(other);
  const onSmall = join(small, "root");
  const args =
    where === "shared"
      ? ["--storage-root", onSmall, "--team", "ml", "--ephemeral-root", other]
      : ["--storage-root", other, "--team", "ml", "--ephemeral-root", onSmall];
  const result = await runCliWithMounts(
    'mount -t tmpfs -o size=64m,nr_inodes=40 tmpfs "$1" && mkdir "$1/root"',
    [small],
    [command, ...args, "--json"],
    {
      ...testEnv(),
      DSFETCH_DATASETS: JSON.stringify([
        {
          uri: `s3://${bucket}/${folder}/`,
          name: folder,
          ...(where === "ephemeral" ? { volumeOptions: { kind: "dynamic", size: "1Gi" } } : {}),
        },
      ]),
    },
  );
  const entry = (JSON.parse(result.stdout) as { datasets: Entry[] }).datasets[0];
  return { result, entry, other };
}

describe("storage with bytes free but too few inodes for a folder", () => {
  it("shared: fetch stages it into an ephemeral volume before writing any of it there, saying why", async () => {
    const { result, entry, other } = await onFewInodes("fetch", "shared");
    expect(result.code, result.stderr).toBe(0);
    expect(entry?.volume).toBe("ephemeral");
    expect(entry?.fallback).toMatch(
      /has \d+ free inodes \(.*df -i\), the dataset needs at least 64$/,
    );
    expect((await readdir(join(other, "many"))).length).toBe(OBJECTS);
  });

  it("a folder's directories count too: 20 objects in 20 directories need 44, more than the 24 its objects alone would", async () => {
    const { result, entry } = await onFewInodes("fetch", "shared", "nested");
    expect(result.code, result.stderr).toBe(0);
    expect(entry?.fallback).toMatch(/free inodes .* the dataset needs at least 44$/);
  });

  it("shared: plan says the same fallback", async () => {
    const { result, entry } = await onFewInodes("plan", "shared");
    expect(result.code, result.stderr).toBe(0);
    expect(entry?.fallback).toMatch(/free inodes .* needs at least 64$/);
  });

  it("ephemeral: fetch fails NO_SPACE (exit 7) before writing, naming the inodes; plan agrees", async () => {
    const fetched = await onFewInodes("fetch", "ephemeral");
    const planned = await onFewInodes("plan", "ephemeral");
    for (const { result, entry } of [fetched, planned]) {
      expect(result.code, result.stderr).toBe(7);
      expect(entry?.error?.code).toBe("NO_SPACE");
      expect(entry?.error?.message).toMatch(
        /^many: .* \(its ephemeral volume\) has \d+ free inodes .* needs at least 64$/,
      );
    }
  });
});

describe("an ephemeral volume whose inodes a killed run's partial download holds", () => {
  /** `dsfetch <command> --json` of the folder, its ephemeral root on a tmpfs of 100 inodes. */
  async function afterAKilledRun(command: "fetch" | "plan") {
    const small = await mkdtemp(join(root, `killed-${command}-`));
    // 50 files in a dead process's attempt of this host (fetch removes it before it looks).
    const attempt = `many.${hostLabel()}.2147483646.0123456789abcdef`;
    const result = await runCliWithMounts(
      [
        'mount -t tmpfs -o size=64m,nr_inodes=100 tmpfs "$1" &&',
        'mkdir -p "$1/eph/.dsfetch/tmp/$2/data" && cd "$1/eph/.dsfetch/tmp/$2/data" &&',
        "for i in $(seq 50); do : > f$i; done",
      ].join(" "),
      [small, attempt],
      [command, "--ephemeral-root", join(small, "eph"), "--json"],
      {
        ...testEnv(),
        DSFETCH_DATASETS: JSON.stringify([
          { uri: `s3://${bucket}/many/`, name: "many", volumeOptions: { kind: "dynamic" } },
        ]),
      },
    );
    const entry = (JSON.parse(result.stdout) as { datasets: Entry[] }).datasets[0];
    return { result, entry };
  }

  it("fetch removes it first and fits; plan agrees (it said NO_SPACE, counting only bytes as reclaimable)", async () => {
    for (const command of ["fetch", "plan"] as const) {
      const { result, entry } = await afterAKilledRun(command);
      expect(result.code, `${command}: ${result.stdout}${result.stderr}`).toBe(0);
      expect(entry?.error).toBeUndefined();
    }
  });
});
