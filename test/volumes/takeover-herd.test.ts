import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { deadPid } from "../harness/children.ts";
import { runCli } from "../harness/cli.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let proxy: FaultProxy;
const body = randomBytes(8 * 1024 * 1024);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");
const WAITERS = 16;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-herd-"));
  bucket = await createBucket("herd");
  await putObject(bucket, "train.bin", body);
  proxy = await startFaultProxy(s3Info().endpoint);
});

afterAll(async () => {
  await proxy.close();
  await rm(root, { recursive: true, force: true });
});

interface Left {
  readonly holder: { host: string; pid: number; since: string; label: string };
  /** Seconds since the holder last refreshed its lock. */
  readonly ageSeconds: number;
  readonly stale: string;
  /** A claim on the lock by a waiter that died before taking it over. */
  readonly deadClaim?: boolean;
}

const cases: { title: string; left: () => Left }[] = [
  {
    title: "a lock left an hour ago by another machine",
    left: () => ({
      holder: { host: "gone-node", pid: 4242, since: "2026-12-06T00:00:00Z", label: "gone-node" },
      ageSeconds: 3600,
      stale: "5",
    }),
  },
  {
    title:
      "a lock of this host whose holder's process is gone (taken over once it missed a refresh)",
    left: () => ({
      holder: { host: "this", pid: deadPid(), since: new Date().toISOString(), label: hostLabel() },
      ageSeconds: 20,
      stale: "40",
    }),
  },
  {
    title:
      "a lock left by another machine, claimed by a waiter that died before taking it over (the claim is passed over)",
    left: () => ({
      holder: { host: "gone-node", pid: 4242, since: "2026-12-06T00:00:00Z", label: "gone-node" },
      ageSeconds: 3600,
      stale: "5",
      deadClaim: true,
    }),
  },
];

describe(`a stale lock taken over by ${WAITERS} waiters at once`, () => {
  for (const { title, left } of cases) {
    it(`${title}: one download, all exit 0, no claim left`, async () => {
      const storage = await mkdtemp(join(root, "herd-"));
      const data = join(storage, "ml", "data");
      const locks = join(data, ".dsfetch", "locks");
      const lock = join(locks, "train.lock");
      const plan = left();
      await mkdir(lock, { recursive: true });
      await writeFile(`${lock}.holder.json`, JSON.stringify(plan.holder));
      const then = new Date(Date.now() - plan.ageSeconds * 1000);
      await utimes(lock, then, then);
      if (plan.deadClaim === true) {
        const { ino, mtimeMs } = await stat(lock);
        await mkdir(`${lock}.takeover-${ino}-${Math.round(mtimeMs)}-1`);
      }
      proxy.resetCounters();
      const runs = await Promise.all(
        Array.from({ length: WAITERS }, () =>
          runCli(
            ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
            {
              env: {
                ...testEnv(),
                AWS_ENDPOINT_URL: proxy.endpoint,
                DSFETCH_LOCK_STALE: plan.stale,
                DSFETCH_LOCK_POLL: "0.2",
              },
              stdin: JSON.stringify([{ uri: `s3://${bucket}/train.bin`, name: "train" }]),
              timeoutMs: 120_000,
            },
          ),
        ),
      );
      for (const run of runs) expect(run.code, run.stderr).toBe(0);
      const fresh = runs.filter((run) => JSON.parse(run.stdout).datasets[0].cached === false);
      expect(fresh.length).toBe(1);
      expect(proxy.getBodyBytes()).toBeLessThanOrEqual(1.05 * body.length);
      expect(runs.filter((run) => run.stderr.includes("waiting for")).length).toBeGreaterThan(0);
      expect(sha(await readFile(join(data, "train", "train.bin")))).toBe(sha(body));
      // The lock was released by its new holder; every claim went with the takeover.
      expect(await readdir(locks)).toEqual([]);
    }, 150_000);
  }
});
