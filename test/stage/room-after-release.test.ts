// A worker that found the dataset not yet published, then no room for it on shared storage
// and no holder, looks again before it falls back: the holder published (taking the room)
// and released between its two looks. It downloaded the dataset again into an ephemeral
// volume (review of the fetch-once lock, 2026-12-06). Needs root: a tmpfs the size of about
// one copy.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { resolveSettings } from "../../src/config/settings.ts";
import { stage } from "../../src/stage/stage.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { requireRoot } from "../harness/mount-namespace.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";

/** What the next looks at the published dataset see: "absent", or what is there. */
const script = vi.hoisted(() => ({ looks: [] as Array<"absent" | "actual"> }));

vi.mock("../../src/volumes/inspect.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/volumes/inspect.ts")>();
  return {
    ...actual,
    inspectStaged: async (...args: Parameters<typeof actual.inspectStaged>) => {
      const look = script.looks.shift() ?? "actual";
      return look === "absent"
        ? { exists: false, manifest: undefined }
        : actual.inspectStaged(...args);
    },
  };
});

let root: string;
let mount: string;
let bucket: string;
let proxy: FaultProxy;
const body = randomBytes(5 * 1024 * 1024);

beforeAll(async () => {
  requireRoot("a tmpfs the size of one copy of the dataset");
  root = await mkdtemp(join(tmpdir(), "dsfetch-room-release-"));
  mount = join(root, "storage");
  await mkdir(mount);
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mount], {
    encoding: "utf8",
  });
  if (mounted.status !== 0) throw new Error(`mount: ${mounted.stderr}`);
  bucket = await createBucket("roomrelease");
  await putObject(bucket, "set.bin", body);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  spawnSync("umount", [mount]);
  await rm(root, { recursive: true, force: true });
});

describe("no room on shared storage because the dataset was just published there", () => {
  it("uses the published dataset; it does not fall back and download it again", async () => {
    const info = s3Info();
    const datasets = parseDatasetsValue(
      [
        {
          uri: `s3://${bucket}/set.bin`,
          name: "set",
          awsAccessKeyId: info.accessKeyId,
          awsSecretAccessKey: info.secretAccessKey,
          endpoint: proxy.endpoint,
          region: info.region,
        },
      ],
      "test",
      {},
    );
    const settings = resolveSettings(
      { storageRoot: mount, team: "t", ephemeralRoot: join(root, "eph") },
      {},
    );
    // Published by "the first worker": 5 of the tmpfs's 8 MiB, too little left for another.
    expect((await stage(datasets, settings)).ok).toBe(true);
    proxy.resetCounters();
    // This worker's first look came before that publication.
    script.looks = ["absent"];
    const result = await stage(datasets, settings);
    expect(result.datasets[0], JSON.stringify(result)).toMatchObject({
      ok: true,
      cached: true,
      volume: "shared",
    });
    expect(proxy.getBodyBytes()).toBe(0);
  }, 30_000);
});
