// Fault suite, scenario 3: `dsfetch fetch` killed with SIGKILL while staging into shared
// storage, then run again (SPEC §2, §3: a final path is always complete; a dead holder's lock
// goes stale and its temporary data is cleaned up). Three kill points, each run doing all
// three at once (their lock waits overlap), each on its own storage root and proxy:
// - download: an 8 MiB object through a proxy throttled to 4 MiB/s, killed a random 0-1.5 s
//   after its attempt directory appeared;
// - expansion: a .tar.gz made with the system's tar (320 files, 8 MiB, random content so the
//   download and the expansion go together), throttled the same way, killed a random 0-1.2 s
//   after the first file appeared in the attempt;
// - publish: the same .tar.gz at full speed, killed a random 0-300 ms (log-uniform) after
//   the attempt's manifest.json appeared (the first step of publishing): while the tree is
//   made read-only and synced, around the rename, or after it.
// After the kill the final path must be absent or complete and byte-identical; then a rerun
// (DSFETCH_LOCK_STALE=5, so the dead holder's lock is taken over after 5 s) must succeed
// with identical data and leave nothing in `.dsfetch/tmp`. Where the kills landed is counted.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";
import {
  cliEnv,
  dataRoot,
  diagnostics,
  entries,
  fetchCli,
  leftovers,
  MiB,
  objectBodyBytes,
  RUNS,
  removeAll,
  rngFor,
  scratchDir,
  sha256,
  startCli,
  TEAM,
  treeDigests,
  until,
} from "./helpers.ts";
import { type FaultCase, FaultReport } from "./report.ts";

const rng = rngFor("sigkill");
const report = new FaultReport("sigkill");

let scratch: string;
let bucket: string;
const plain = randomBytes(8 * MiB);
let archiveTree: Map<string, string>;
let archiveBytes: number;

beforeAll(async () => {
  scratch = await scratchDir("sigkill");
  bucket = await createBucket("faults-sigkill");
  // The tree: 320 files in 8 directories, 25.6 KiB on average (8 MiB), random content.
  const tree = join(scratch, "tree");
  for (let d = 0; d < 8; d++) {
    await mkdir(join(tree, `dir${d}`), { recursive: true });
    for (let f = 0; f < 40; f++) {
      await writeFile(join(tree, `dir${d}`, `file${f}.bin`), randomBytes(rng.int(1, 51_200)));
    }
  }
  archiveTree = await treeDigests(tree);
  const archive = join(scratch, "set.tar.gz");
  const dirs = Array.from({ length: 8 }, (_, d) => `dir${d}`);
  execFileSync("tar", ["-czf", archive, "-C", tree, ...dirs]);
  const archiveData = await readFile(archive);
  archiveBytes = archiveData.length;
  await Promise.all([
    putObject(bucket, "plain/blob.bin", plain),
    putObject(bucket, "arch/set.tar.gz", archiveData),
  ]);
  // A first fetch: checks the archive, and fills the CLI's compile cache.
  const storage = join(scratch, "calibrate");
  const result = await fetchCli([{ uri: `s3://${bucket}/arch/set.tar.gz`, name: "set" }], {
    storage,
  });
  expect(result.code, diagnostics(result)).toBe(0);
  expect(await treeDigests(join(dataRoot(storage), "set"))).toEqual(archiveTree);
  console.log(
    `sigkill: archive ${(archiveBytes / MiB).toFixed(1)} MiB, ${archiveTree.size} files; a whole fetch takes ${result.seconds.toFixed(2)} s`,
  );
}, 120_000);

afterAll(async () => {
  await removeAll(scratch);
});

type Phase = "download" | "expansion" | "publish";

interface PhaseSpec {
  uri: string;
  name: string;
  /** What the published dataset directory must hold. */
  expected: () => Map<string, string>;
  throttle: number | undefined;
  /** Resolves when it is time to kill. */
  killPoint: (attemptsDir: string) => Promise<void>;
}

const phases: Record<Phase, () => PhaseSpec> = {
  download: () => {
    const delay = rng.int(0, 1500);
    return {
      uri: `s3://${bucket}/plain/blob.bin`,
      name: "blob",
      expected: () => new Map([["blob.bin", sha256(plain)]]),
      throttle: 4 * MiB,
      killPoint: async (attempts) => {
        await until(async () => (await entries(attempts)).length > 0, 30_000);
        await sleep(delay);
      },
    };
  },
  expansion: () => {
    const delay = rng.int(0, 1200);
    return {
      uri: `s3://${bucket}/arch/set.tar.gz`,
      name: "set",
      expected: () => archiveTree,
      throttle: 4 * MiB,
      killPoint: async (attempts) => {
        await until(async () => {
          for (const attempt of await entries(attempts)) {
            if ((await entries(join(attempts, attempt, "data"))).length > 0) return true;
          }
          return false;
        }, 30_000);
        await sleep(delay);
      },
    };
  },
  publish: () => {
    // Log-uniform over 0-300 ms: publishing takes a few ms to a few hundred (syncfs).
    const delay = Math.round(Math.exp(rng.float(0, Math.log(301)))) - 1;
    return {
      uri: `s3://${bucket}/arch/set.tar.gz`,
      name: "set",
      expected: () => archiveTree,
      throttle: undefined,
      // publish() first writes the attempt's manifest.json, then makes the tree read-only,
      // syncs it, renames it into place, moves the manifest and removes the attempt.
      killPoint: async (attempts) => {
        await until(async () => (await manifestWritten(attempts)) !== undefined, 30_000, 2);
        await sleep(delay);
      },
    };
  },
};

/** The attempt directory whose manifest.json is written (publishing has begun), if any. */
async function manifestWritten(attempts: string): Promise<string | undefined> {
  for (const attempt of await entries(attempts)) {
    if ((await entries(join(attempts, attempt))).includes("manifest.json")) return attempt;
  }
  return undefined;
}

async function killAndRerun(phase: Phase, c: FaultCase, run: number): Promise<void> {
  const spec = phases[phase]();
  await c.run(run, async () => {
    const storage = join(scratch, `${phase}-${run}`);
    const data = dataRoot(storage);
    const finalPath = join(data, spec.name);
    const attempts = join(data, ".dsfetch", "tmp");
    await mkdir(storage, { recursive: true });
    const proxy = await startFaultProxy(s3Info().endpoint);
    const env = cliEnv({
      AWS_ENDPOINT_URL: proxy.endpoint,
      DSFETCH_EPHEMERAL_ROOT: `${storage}.ephemeral`,
      DSFETCH_LOCK_STALE: "5",
      DSFETCH_LOCK_POLL: "0.2",
      DSFETCH_RANGE_SIZE: "1Mi",
      DSFETCH_RANGE_CONCURRENCY: "2",
    });
    try {
      proxy.throttle(spec.throttle);
      const victim = startCli(
        ["fetch", "--datasets", "-", "--storage-root", storage, "--team", TEAM, "--json"],
        env,
        JSON.stringify([{ uri: spec.uri, name: spec.name }]),
      );
      await Promise.race([spec.killPoint(attempts), victim.exit]);
      const delivered = objectBodyBytes(proxy);
      const running = victim.child.exitCode === null && victim.child.signalCode === null;
      victim.child.kill("SIGKILL");
      const end = await victim.exit;
      if (running && end.signal === "SIGKILL") c.count("killed");
      else c.count(`exited first (${end.code})`);

      // Where the kill landed, and the invariant: a final path is absent or complete.
      const published = (await entries(data)).includes(spec.name);
      const inTmp = (await entries(attempts)).length;
      const size = phase === "download" ? plain.length : archiveBytes;
      const publishing = (await manifestWritten(attempts)) !== undefined;
      const manifest = (await entries(join(data, ".dsfetch", "manifests"))).length > 0;
      c.count(
        published
          ? manifest
            ? `after publish${inTmp > 0 ? " (attempt dir left)" : ""}`
            : "renamed, manifest not moved"
          : publishing
            ? "publishing (manifest written)"
            : inTmp > 0
              ? delivered < size
                ? "mid-transfer"
                : "transferred, not published"
              : "before attempt",
      );
      if (published) {
        expect(await treeDigests(finalPath), `${phase}: killed, published`).toEqual(
          spec.expected(),
        );
      }
      // The rerun, at full speed: succeeds once the dead holder's lock is taken over.
      proxy.throttle(undefined);
      const rerun = await fetchCli([{ uri: spec.uri, name: spec.name }], {
        storage,
        env: {
          AWS_ENDPOINT_URL: proxy.endpoint,
          DSFETCH_LOCK_STALE: "5",
          DSFETCH_LOCK_POLL: "0.2",
        },
        timeoutMs: 90_000,
      });
      expect(rerun.code, diagnostics(rerun)).toBe(0);
      expect(rerun.seconds, diagnostics(rerun)).toBeLessThan(30);
      expect(rerun.json?.datasets[0]?.volume).toBe("shared");
      expect(await treeDigests(finalPath)).toEqual(spec.expected());
      expect(await leftovers(data), `${phase}: leftovers after the rerun`).toEqual([]);
      return {
        refetchedBytes: rerun.json?.datasets[0]?.refetchedBytes ?? 0,
        proxyExtraBytes: objectBodyBytes(proxy) - size,
      };
    } finally {
      await proxy.close();
      await removeAll(storage);
      await removeAll(`${storage}.ephemeral`);
    }
  });
}

describe("SIGKILL while staging, then a rerun", () => {
  it(
    `killed during download, expansion, or around publish; the rerun always succeeds (${RUNS} runs)`,
    async () => {
      const cases = {
        download: report.case("download"),
        expansion: report.case("expansion"),
        publish: report.case("publish"),
      };
      for (let run = 0; run < RUNS; run++) {
        await Promise.all(
          (Object.keys(cases) as Phase[]).map((phase) => killAndRerun(phase, cases[phase], run)),
        );
      }
      const failures: string[] = [];
      for (const c of Object.values(cases)) {
        try {
          c.finish();
        } catch (error) {
          failures.push((error as Error).message);
        }
      }
      expect(failures, failures.join("\n\n")).toEqual([]);
    },
    RUNS * 60_000 + 60_000,
  );
});
