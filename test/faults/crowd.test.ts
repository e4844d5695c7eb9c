// Fault suite, scenario 4: a crowd of workers (SPEC §3: exactly one downloads, the others wait
// and reuse). Real processes started together, DSFETCH_LOCK_POLL=0.2, objects kept small
// (this machine has 2 cores: the processes' startup is most of the cost):
// - "32 on one": 32 `dsfetch fetch` of one 6 MiB object;
// - "8 x 8": 8 datasets (4 MiB objects) and 8 processes that each stage all 8, each with the
//   array rotated by its index, so each dataset is the first of one process and every
//   process meets the others' locks (the alternative, 8 groups of 8 processes on one
//   dataset each, is "32 on one" again four times over).
// Every run: all exit 0, data byte-identical, exactly one process downloaded each dataset
// (`cached: false` once), and the proxy delivered at most 1.05x the total size.
import { randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";
import {
  cliEnv,
  dataRoot,
  diagnostics,
  entries,
  leftovers,
  MiB,
  parseJson,
  RUNS,
  removeAll,
  scratchDir,
  sha256,
  TEAM,
} from "./helpers.ts";
import { FaultReport } from "./report.ts";

const report = new FaultReport("crowd");

let scratch: string;
let bucket: string;
const one = randomBytes(6 * MiB);
const eight = Array.from({ length: 8 }, () => randomBytes(4 * MiB));

beforeAll(async () => {
  scratch = await scratchDir("crowd");
  bucket = await createBucket("faults-crowd");
  await Promise.all([
    putObject(bucket, "one/data.bin", one),
    ...eight.map((data, i) => putObject(bucket, `eight/d${i}.bin`, data)),
  ]);
}, 60_000);

afterAll(async () => {
  await removeAll(scratch);
});

interface Crowd {
  datasets: { uri: string; name: string; data: Buffer }[][];
}

/** Starts one process per datasets array at once; checks the invariants. */
async function crowdRun(crowd: Crowd, storage: string): Promise<{ extra: number; waited: number }> {
  const proxy = await startFaultProxy(s3Info().endpoint);
  try {
    const env = cliEnv({
      AWS_ENDPOINT_URL: proxy.endpoint,
      DSFETCH_EPHEMERAL_ROOT: `${storage}.ephemeral`,
      DSFETCH_LOCK_POLL: "0.2",
    });
    await mkdir(storage, { recursive: true });
    const runs = await Promise.all(
      crowd.datasets.map((list) =>
        runCli(["fetch", "--datasets", "-", "--storage-root", storage, "--team", TEAM, "--json"], {
          env,
          stdin: JSON.stringify(list.map(({ uri, name }) => ({ uri, name }))),
          timeoutMs: 240_000,
        }),
      ),
    );
    for (const run of runs) expect(run.code, diagnostics(run)).toBe(0);
    const all = new Map<string, Buffer>();
    for (const list of crowd.datasets) for (const d of list) all.set(d.name, d.data);
    const fresh = new Map<string, number>();
    for (const [i, run] of runs.entries()) {
      const outcomes = parseJson(run.stdout)?.datasets ?? [];
      expect(outcomes.map((d) => d.name).sort(), diagnostics(run)).toEqual(
        (crowd.datasets[i] ?? []).map((d) => d.name).sort(),
      );
      for (const staged of outcomes) {
        expect(staged.error).toBeUndefined();
        expect(staged.volume).toBe("shared");
        if (!staged.cached) fresh.set(staged.name, (fresh.get(staged.name) ?? 0) + 1);
      }
    }
    // Exactly one process downloaded each dataset.
    expect(Object.fromEntries(fresh)).toEqual(
      Object.fromEntries([...all.keys()].map((n) => [n, 1])),
    );
    const total = [...all.values()].reduce((n, data) => n + data.length, 0);
    const served = proxy.getBodyBytes();
    expect(served).toBeGreaterThanOrEqual(total);
    expect(served).toBeLessThanOrEqual(1.05 * total);
    const data = dataRoot(storage);
    expect((await entries(data)).filter((e) => !e.startsWith(".")).sort()).toEqual(
      [...all.keys()].sort(),
    );
    for (const [name, content] of all) {
      expect(sha256(await readFile(join(data, name, `${name}.bin`)))).toBe(sha256(content));
    }
    expect(await leftovers(data)).toEqual([]);
    return {
      extra: served - total,
      waited: runs.filter((r) => r.stderr.includes("waiting for")).length,
    };
  } finally {
    await proxy.close();
  }
}

describe("a crowd of workers on the same datasets", () => {
  it(
    `32 processes on one dataset: one download, all exit 0 (${RUNS} runs)`,
    async () => {
      const c = report.case("32 on one");
      for (let run = 0; run < RUNS; run++) {
        await c.run(run, async () => {
          const storage = join(scratch, `one-${run}`);
          try {
            const list = [{ uri: `s3://${bucket}/one/data.bin`, name: "data", data: one }];
            const { extra, waited } = await crowdRun(
              { datasets: Array.from({ length: 32 }, () => list) },
              storage,
            );
            c.count("processes that printed 'waiting for'", waited);
            return { proxyExtraBytes: extra };
          } finally {
            await removeAll(storage);
            await removeAll(`${storage}.ephemeral`);
          }
        });
      }
      c.finish();
    },
    RUNS * 120_000 + 30_000,
  );

  it(
    `8 datasets x 8 processes (each stages all 8): one download each, all exit 0 (${RUNS} runs)`,
    async () => {
      const c = report.case("8 x 8");
      const list = eight.map((data, i) => ({
        uri: `s3://${bucket}/eight/d${i}.bin`,
        name: `d${i}`,
        data,
      }));
      for (let run = 0; run < RUNS; run++) {
        await c.run(run, async () => {
          const storage = join(scratch, `eight-${run}`);
          try {
            const rotated = list.map((_, p) => [...list.slice(p), ...list.slice(0, p)]);
            const { extra, waited } = await crowdRun({ datasets: rotated }, storage);
            c.count("processes that printed 'waiting for'", waited);
            return { proxyExtraBytes: extra };
          } finally {
            await removeAll(storage);
            await removeAll(`${storage}.ephemeral`);
          }
        });
      }
      c.finish();
    },
    RUNS * 120_000 + 30_000,
  );
});
