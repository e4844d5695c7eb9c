// Processes of one host sharing an ephemeral root download a dataset once (a lock in the
// ephemeral root): the ranks of a node staging a `volumeOptions.kind: "dynamic"` dataset, and
// every worker once shared storage could not take it. Each downloaded it for itself before
// (exploratory tester, 2026-12-07: 8 workers on a node, shared storage full, 8 downloads).
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_ENTRY, type CliResult, runCli } from "../harness/cli.ts";
import { crawlUntilAllAsked } from "../harness/crawl-until-asked.ts";
import { type FaultProxy, startFaultProxy } from "../harness/fault-proxy.ts";
import { requireRoot, runCliWithMounts } from "../harness/mount-namespace.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
const proxies: FaultProxy[] = [];
const body = randomBytes(8 * 1024 * 1024);
const sha = (data: Buffer) => createHash("sha256").update(data).digest("hex");

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-ephemeral-once-"));
  bucket = await createBucket("eonce");
  await putObject(bucket, "set/train.bin", body);
});

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()));
  await rm(root, { recursive: true, force: true });
});

/** `processes` fetches of `datasets` started together, held back until all asked. */
async function herd(args: readonly string[], datasets: unknown, processes: number) {
  const proxy = await startFaultProxy(s3Info().endpoint);
  proxies.push(proxy);
  const env = { ...testEnv(), AWS_ENDPOINT_URL: proxy.endpoint, DSFETCH_LOCK_POLL: "0.2" };
  let runs: CliResult[];
  try {
    const gate = crawlUntilAllAsked(proxy, "set/train.bin", processes, 2 * 1024 * 1024);
    runs = await Promise.all(
      Array.from({ length: processes }, () =>
        runCli(["fetch", "--datasets", "-", "--json", ...args], {
          env,
          stdin: JSON.stringify(datasets),
          timeoutMs: 120_000,
        }),
      ),
    );
    await gate;
  } finally {
    proxy.throttle(undefined);
  }
  for (const run of runs) expect(run.code, run.stderr).toBe(0);
  return { runs, served: proxy.getBodyBytes() };
}

/** One download, the others waited and used it: what a user of the volume would see. */
async function expectFetchedOnce(
  result: Awaited<ReturnType<typeof herd>>,
  ephemeral: string,
): Promise<void> {
  const { runs, served } = result;
  expect(served).toBeGreaterThanOrEqual(body.length);
  expect(served).toBeLessThanOrEqual(1.05 * body.length);
  const reports = runs.map((run) => JSON.parse(run.stdout).datasets[0]);
  expect(reports.filter((report) => report.cached === false).length).toBe(1);
  for (const report of reports) expect(report.path).toBe(join(ephemeral, "train"));
  expect(runs.filter((run) => run.stderr.includes("waiting for")).length).toBeGreaterThan(0);
  expect(sha(await readFile(join(ephemeral, "train", "train.bin")))).toBe(sha(body));
  expect(await readdir(join(ephemeral, ".dsfetch", "tmp"))).toEqual([]);
}

describe.concurrent("processes sharing an ephemeral root", () => {
  it("6 fetches of a dynamic-volume dataset started together: one download, all exit 0", async () => {
    const ephemeral = await mkdtemp(join(root, "dynamic-"));
    const datasets = [
      {
        uri: `s3://${bucket}/set/train.bin`,
        name: "train",
        volumeOptions: { kind: "dynamic", size: "1Gi" },
      },
    ];
    const result = await herd(["--ephemeral-root", ephemeral], datasets, 6);
    await expectFetchedOnce(result, ephemeral);
  });

  it("6 fetches falling back from missing shared storage: one download, all exit 0, each says why", async () => {
    const ephemeral = await mkdtemp(join(root, "fallback-"));
    const datasets = [{ uri: `s3://${bucket}/set/train.bin`, name: "train" }];
    const args = [
      ...["--storage-root", join(root, "not-mounted"), "--team", "ml"],
      ...["--ephemeral-root", ephemeral],
    ];
    const result = await herd(args, datasets, 6);
    await expectFetchedOnce(result, ephemeral);
    for (const run of result.runs) {
      expect(JSON.parse(run.stdout).datasets[0].fallback).toMatch(/not-mounted/);
    }
  });
});

describe("a dead holder's lock in an ephemeral root, from another PID namespace", () => {
  it("is taken over after at most 20 s stale, not DSFETCH_LOCK_STALE's 120 (a container restarted in its pod waited 2-3 minutes)", async () => {
    const ephemeral = await mkdtemp(join(root, "restarted-"));
    const locks = join(ephemeral, ".dsfetch", "locks");
    await mkdir(locks, { recursive: true });
    const lock = join(locks, "train.lock");
    await mkdir(lock);
    // The same pod (host name), another PID namespace: its process cannot be looked up.
    await writeFile(
      `${lock}.holder.json`,
      JSON.stringify({ host: hostname(), pid: 1, since: "x", label: `${hostname()}-ns999-b0` }),
    );
    const aged = new Date(Date.now() - 25_000);
    await utimes(lock, aged, aged);
    const run = await runCli(
      ["fetch", "--datasets", "-", "--json", "--ephemeral-root", ephemeral],
      {
        env: {
          ...testEnv(),
          DSFETCH_LOCK_STALE: "120",
          DSFETCH_LOCK_WAIT: "40",
          DSFETCH_LOCK_POLL: "0.2",
        },
        stdin: JSON.stringify([
          {
            uri: `s3://${bucket}/set/train.bin`,
            name: "train",
            volumeOptions: { kind: "dynamic", size: "1Gi" },
          },
        ]),
        timeoutMs: 90_000,
      },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(sha(await readFile(join(ephemeral, "train", "train.bin")))).toBe(sha(body));
  });
});

describe("a holder killed mid-download in another PID namespace, on an ephemeral volume with room for one copy", () => {
  it("the worker that takes its lock over removes its partial download first and fits (every rank failed NO_SPACE)", async () => {
    requireRoot("a small tmpfs in its own mount namespace");
    const small = join(root, "taken-over");
    await mkdir(small);
    // The dead holder: its lock (aged past the ephemeral bound), holder file and a 6 MiB
    // partial download of the 8 MiB dataset, on a 12 MiB tmpfs: 6 MiB free, too little.
    const label = `${hostname()}-ns999-b000000000000`;
    const mounts = [
      'mount -t tmpfs -o size=12m tmpfs "$1" &&',
      'mkdir -p "$1/eph/.dsfetch/locks/train.lock" "$1/eph/.dsfetch/tmp/$2/data" &&',
      'printf \'{"host":"%s","pid":1,"since":"x","label":"%s"}\' "$3" "$4" > "$1/eph/.dsfetch/locks/train.lock.holder.json" &&',
      'head -c 6291456 /dev/zero > "$1/eph/.dsfetch/tmp/$2/data/train.bin" &&',
      'touch -d "-25 seconds" "$1/eph/.dsfetch/locks/train.lock"',
    ].join(" ");
    const run = await runCliWithMounts(
      mounts,
      [small, `train.${label}.1.0123456789abcdef`, hostname(), label],
      ["fetch", "--ephemeral-root", join(small, "eph"), "--json"],
      {
        ...testEnv(),
        DSFETCH_LOCK_POLL: "0.2",
        DSFETCH_DATASETS: JSON.stringify([
          {
            uri: `s3://${bucket}/set/train.bin`,
            name: "train",
            volumeOptions: { kind: "dynamic", size: "1Gi" },
          },
        ]),
      },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout).datasets[0]).toMatchObject({ cached: false, bytes: body.length });
  });
});

describe("an ephemeral volume with room for one copy", () => {
  it("a second process started while the first downloads waits for it and uses its copy (it failed NO_SPACE: the partial download took the room)", async () => {
    // Needs root: the ephemeral root is a 12 MiB tmpfs in a mount namespace of their own.
    requireRoot("a small tmpfs in its own mount namespace");
    const proxy = await startFaultProxy(s3Info().endpoint);
    proxies.push(proxy);
    const small = join(root, "small");
    await mkdir(small);
    const first = join(root, "first");
    // The first fetch in the background; the second once the first's partial download holds
    // 5 MiB of the 12 (8 MiB needed, 7 free: too little), at most 30 s later.
    const mounts = [
      'mount -t tmpfs -o size=12m tmpfs "$1" && mkdir "$1/eph" &&',
      '{ ( "$2" "$3" fetch --ephemeral-root "$1/eph" --json > "$4.out" 2> "$4.err"; echo $? > "$4.code" ) & } &&',
      'tries=0; until [ "$(du -sk "$1/eph/.dsfetch/tmp" 2>/dev/null | cut -f1)" -ge 5120 ] 2>/dev/null;',
      "do tries=$((tries + 1)); [ $tries -lt 600 ] || exit 98; sleep 0.05; done",
    ].join(" ");
    const datasets = [
      {
        uri: `s3://${bucket}/set/train.bin`,
        name: "train",
        volumeOptions: { kind: "dynamic", size: "1Gi" },
      },
    ];
    proxy.throttle(1024 * 1024);
    let second: Awaited<ReturnType<typeof runCliWithMounts>>;
    try {
      second = await runCliWithMounts(
        mounts,
        [small, process.execPath, CLI_ENTRY, first],
        ["fetch", "--ephemeral-root", join(small, "eph"), "--json"],
        {
          ...testEnv(),
          AWS_ENDPOINT_URL: proxy.endpoint,
          DSFETCH_LOCK_POLL: "0.2",
          DSFETCH_DATASETS: JSON.stringify(datasets),
        },
      );
    } finally {
      proxy.throttle(undefined);
    }
    expect(second.code, second.stderr).toBe(0);
    await expect
      .poll(() => readFile(`${first}.code`, "utf8").catch(() => ""), { timeout: 30_000 })
      .toMatch(/\d/);
    expect(
      (await readFile(`${first}.code`, "utf8")).trim(),
      await readFile(`${first}.err`, "utf8"),
    ).toBe("0");
    const reports = [JSON.parse(await readFile(`${first}.out`, "utf8")), JSON.parse(second.stdout)];
    expect(reports.map((report) => report.datasets[0].cached)).toEqual([false, true]);
    expect(second.stderr).toContain("waiting for");
    expect(proxy.getBodyBytes()).toBeLessThanOrEqual(1.05 * body.length);
  });
});
