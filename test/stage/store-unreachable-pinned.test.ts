// A store that cannot be reached, and datasets already staged: one pinned by its ETag is used
// from its staged copy, with a warning (`run` starts its command); one not pinned fails, as
// the store may hold another version; so does one pinned to an ETag other than the copy's.
// Before, every one failed TRANSIENT (exit 6) after the retries (exploratory review,
// 2026-12-07: a store outage stopped jobs whose data was all here and verified).
// A dataset pinned only by its versionId (an S3 version is immutable) is used the same way,
// but not one pinned to the versionId "null" (overwritten in place); a copy of the pin changed
// after it was published is not used, and `plan` says so as fetch does (it said only the
// store's error).

import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { locationIn } from "../../src/volumes/layout.ts";
import { takeLease } from "../../src/volumes/usage.ts";
import { type CliResult, runCli } from "../harness/cli.ts";
import { sidecarArgs, start, until } from "../harness/cli-process.ts";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let etag: string;
let versioned: string;
let versionId: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-unreachable-"));
  [bucket, versioned] = await Promise.all([
    createBucket("unreachable"),
    createBucket("unreachable-v", { versioned: true }),
  ]);
  etag = (await putObject(bucket, "model.bin", "weights")).etag;
  const put = await putObject(versioned, "tuned.bin", "tuned weights");
  if (put.versionId === undefined) throw new Error("the store gave no versionId");
  versionId = put.versionId;
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("a store that cannot be reached", () => {
  it('a dataset pinned by its ETag or its versionId and staged is used from its copy, with a warning; one not pinned, pinned to another ETag or to versionId "null", or whose copy changed, fails', async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const args = ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
    const pinned = [{ uri: `s3://${bucket}/model.bin`, name: "model", etag }];
    // Pinned by versionId only (a path without an -<etag>); its copies that are changed after
    // they are published, one of them used by a job; the null version of an unversioned
    // bucket, "pinned".
    const byVersion = (name: string) => ({ uri: `s3://${versioned}/tuned.bin`, name, versionId });
    const nullVersion = {
      uri: `s3://${bucket}/model.bin`,
      name: "null-version",
      versionId: "null",
    };
    const others = [byVersion("tuned"), byVersion("changed"), byVersion("changed-used")];
    // The store as jobs reach it (the copy's source names its endpoint), gone once staged.
    const store = await startFaultProxy(s3Info().endpoint);
    const env = { ...testEnv(), AWS_ENDPOINT_URL: store.endpoint };
    const staged = await runCli(args, {
      env,
      stdin: JSON.stringify([...pinned, ...others, nullVersion]),
    });
    expect(staged.code, staged.stderr).toBe(0);
    await store.close();
    const dataDir = join(storage, "ml", "data");
    // A job's output written into two of them (their owner may make them writable).
    for (const name of ["changed", "changed-used"]) {
      await chmod(join(dataDir, name), 0o755);
      await writeFile(join(dataDir, name, "outputs.log"), "epoch 1\n");
    }
    // A job's lease (as `run` and `sidecar` take) on one of them, by this live process.
    const lease = await takeLease(locationIn(dataDir, "changed-used"));

    // Two retries, not the default six (~20 s of backoff): DSFETCH_RETRIES.
    const away = { ...env, DSFETCH_RETRIES: "2" };
    const human = args.filter((arg) => arg !== "--json");
    const planArgs = ["plan", ...args.slice(1)];
    // A sidecar of the same job: its ready file and its --json "ready" line say so too.
    const readyFile = join(storage, "ready.json");
    const sidecar = start(
      [...sidecarArgs(storage, "127.0.0.1:0", readyFile), "--json"],
      away,
      JSON.stringify(pinned),
    );
    const unpinnedModel = [{ uri: `s3://${bucket}/model.bin`, name: "model" }];
    /** dsfetch with `argv`, the store gone, `datasets` on its standard input. */
    const whileAway = (argv: string[], datasets: unknown, extraEnv: Record<string, string> = {}) =>
      runCli(argv, {
        env: { ...away, ...extraEnv },
        stdin: JSON.stringify(datasets),
        timeoutMs: 90_000,
      });
    // In one array: the first failure's exit code is the run's (PATH_TAKEN, 7), each
    // dataset's outcome is in --json.
    const byVersions = [
      byVersion("changed-used"),
      byVersion("tuned"),
      nullVersion,
      byVersion("changed"),
    ];
    const [offline, unpinned, otherPin, counted, planned, plannedUnpinned, once, ...versionRuns] =
      await Promise.all([
        whileAway(args, pinned),
        whileAway(args, unpinnedModel),
        // Pinned to an ETag, or a version, other than its copy's.
        whileAway(args, [
          { ...pinned[0], etag: "0".repeat(32) },
          { ...byVersion("tuned"), versionId: "0".repeat(32) },
        ]),
        whileAway(human, unpinnedModel),
        whileAway(planArgs, pinned),
        whileAway(planArgs, unpinnedModel),
        whileAway(args, unpinnedModel, { DSFETCH_RETRIES: "0" }),
        // Not retried: the outcome is the same, and the batch is not held for their backoff.
        whileAway(args, byVersions, { DSFETCH_RETRIES: "0" }),
        whileAway(planArgs, byVersions, { DSFETCH_RETRIES: "0" }),
        whileAway(
          planArgs.filter((arg) => arg !== "--json"),
          byVersions,
          { DSFETCH_RETRIES: "0" },
        ),
      ]).finally(() => lease.release());
    expect(once.code, once.stderr).toBe(6);
    expect(JSON.parse(once.stdout).datasets[0].error.hint).toContain(
      "(not retried: DSFETCH_RETRIES=0)",
    );
    // plan says what fetch does (it said TRANSIENT for the pinned copy fetch uses).
    expect(planned.code, planned.stderr).toBe(0);
    const plannedEntry = JSON.parse(planned.stdout).datasets[0];
    expect(plannedEntry).toMatchObject({ name: "model", cached: true, etag });
    expect(plannedEntry.storeUnreachable).toMatch(/\S/);
    expect(plannedUnpinned.code, plannedUnpinned.stderr).toBe(6);
    expect(JSON.parse(plannedUnpinned.stdout).datasets[0].error.code).toBe("TRANSIENT");
    // The first attempt and the two retries DSFETCH_RETRIES allows, no more.
    expect(counted.code, counted.stderr).toBe(6);
    expect(counted.stderr).toContain("model: retrying (attempt 3 in");
    expect(counted.stderr).not.toContain("model: retrying (attempt 4 in");

    expect(offline.code, offline.stderr).toBe(0);
    const result = JSON.parse(offline.stdout).datasets[0];
    expect(result).toMatchObject({ name: "model", cached: true, etag });
    // --json says the store was not asked, and why.
    expect(result.storeUnreachable).toMatch(/\S/);
    expect(JSON.parse(staged.stdout).datasets[0].storeUnreachable).toBeUndefined();
    expect(await readFile(join(result.path, "model.bin"), "utf8")).toBe("weights");
    expect(result.path).toBe(join(storage, "ml", "data", `model-${etag}`));
    expect(offline.stderr).toContain(`: using the copy staged at ${result.path} (`);
    expect(offline.stderr).toContain(`of the pinned ETag ${etag}, verified then by md5`);

    // Pinned by versionId only: its copy is used too, in fetch and in plan. Pinned to the
    // versionId "null" (a null version is overwritten in place): not a pin, as unpinned.
    // A copy of the pin changed after it was published: not used (the store's error), and
    // plan says why, in --json and under its table, as fetch's warning does; while a job uses
    // it, PATH_TAKEN in both.
    const [versionFetch, versionPlan, versionTable] = versionRuns as [
      CliResult,
      CliResult,
      CliResult,
    ];
    const tunedPath = join(dataDir, "tuned");
    const changedPath = join(dataDir, "changed");
    const change =
      "files or directories were added (net: 1 entry more than when it was published, 2 not 1)";
    for (const run of [versionFetch, versionPlan, versionTable]) {
      expect(run.code, run.stderr).toBe(7);
    }
    for (const run of [versionFetch, versionPlan]) {
      const [used, tuned, nulled, altered] = JSON.parse(run.stdout).datasets;
      expect(tuned).toMatchObject({ name: "tuned", cached: true, versionId, path: tunedPath });
      expect(tuned.storeUnreachable).toMatch(/\S/);
      expect(nulled).toMatchObject({ name: "null-version", error: { code: "TRANSIENT" } });
      expect(altered).toMatchObject({ name: "changed", error: { code: "TRANSIENT" } });
      expect(altered.storeUnreachable).toBeUndefined();
      expect(used.error.code).toBe("PATH_TAKEN");
      expect(used.error.message).toContain(
        `${join(dataDir, "changed-used")} was changed after it was published (${change}), and jobs are using it (`,
      );
    }
    expect(versionFetch.stderr).toContain(`: using the copy staged at ${tunedPath} (`);
    expect(versionFetch.stderr).toContain(`of the pinned version ${versionId}, verified then by`);
    expect(versionFetch.stderr).toContain(`${changedPath} was changed after it was published (`);
    // plan's entry of the changed copy says so (it had only the store's error).
    expect(JSON.parse(versionPlan.stdout).datasets[3]).toMatchObject({
      cached: false,
      replaces: { versionId, changed: true, change },
    });
    expect(versionTable.stderr).toContain(`tuned: the store cannot be reached (`);
    expect(versionTable.stderr).toContain(
      `fetch would use the copy staged at ${tunedPath} of the pinned version (ETag `,
    );
    expect(versionTable.stderr).toContain(
      `changed: ${changedPath} was changed after it was published (`,
    );
    expect(versionTable.stderr).toContain(
      `): ${change}; fetch would not use it, and would stage it again once the error below is resolved`,
    );
    expect(versionTable.stderr).toContain("[PATH_TAKEN]");

    for (const run of [unpinned, otherPin]) {
      expect(run.code, run.stderr).toBe(6);
      for (const entry of JSON.parse(run.stdout).datasets) {
        // As DSFETCH_RETRIES says (it said "dsfetch retried" whatever it was, 0 too).
        expect(entry).toMatchObject({
          error: {
            code: "TRANSIENT",
            hint: expect.stringContaining("(retried up to 2 times: DSFETCH_RETRIES)"),
          },
        });
      }
      expect(run.stderr).not.toContain("using the copy staged");
    }

    try {
      await until(async () => sidecar.stdout().includes('"type":"ready"'), 60_000);
      const ready = JSON.parse(await readFile(readyFile, "utf8"));
      expect(ready).toMatchObject({
        ready: true,
        datasets: [{ name: "model", path: result.path }],
      });
      expect(ready.datasets[0].storeUnreachable).toMatch(/\S/);
      const line = sidecar
        .stdout()
        .split("\n")
        .find((text) => text.includes('"type":"ready"'));
      expect(JSON.parse(line ?? "{}")).toMatchObject({
        datasets: 1,
        usedOffline: [{ name: "model", storeUnreachable: expect.stringMatching(/\S/) }],
      });
    } finally {
      sidecar.child.kill("SIGTERM");
      expect((await sidecar.exit).code, sidecar.stderr()).toBe(0);
    }
  }, 120_000);
});
