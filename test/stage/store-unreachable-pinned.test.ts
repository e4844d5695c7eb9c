// A store that cannot be reached, and datasets already staged: one pinned by its ETag is used
// from its staged copy, with a warning (`run` starts its command); one not pinned fails, as
// the store may hold another version; so does one pinned to an ETag other than the copy's.
// Before, every one failed TRANSIENT (exit 6) after the retries (exploratory review,
// 2026-12-07: a store outage stopped jobs whose data was all here and verified).

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { sidecarArgs, start, until } from "../harness/cli-process.ts";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;
let etag: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-unreachable-"));
  bucket = await createBucket("unreachable");
  etag = (await putObject(bucket, "model.bin", "weights")).etag;
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("a store that cannot be reached", () => {
  it("a dataset pinned by its ETag and staged is used from its copy, with a warning; one not pinned, or pinned to another ETag, fails TRANSIENT", async () => {
    const storage = await mkdtemp(join(root, "storage-"));
    const args = ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"];
    const pinned = [{ uri: `s3://${bucket}/model.bin`, name: "model", etag }];
    // The store as jobs reach it (the copy's source names its endpoint), gone once staged.
    const store = await startFaultProxy(s3Info().endpoint);
    const env = { ...testEnv(), AWS_ENDPOINT_URL: store.endpoint };
    const staged = await runCli(args, { env, stdin: JSON.stringify(pinned) });
    expect(staged.code, staged.stderr).toBe(0);
    await store.close();

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
    const [offline, unpinned, otherEtag, counted, planned, plannedUnpinned, once] =
      await Promise.all([
        whileAway(args, pinned),
        whileAway(args, unpinnedModel),
        whileAway(args, [{ ...pinned[0], etag: "0".repeat(32) }]),
        whileAway(human, unpinnedModel),
        whileAway(planArgs, pinned),
        whileAway(planArgs, unpinnedModel),
        whileAway(args, unpinnedModel, { DSFETCH_RETRIES: "0" }),
      ]);
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

    for (const run of [unpinned, otherEtag]) {
      expect(run.code, run.stderr).toBe(6);
      expect(JSON.parse(run.stdout).datasets[0].error.code).toBe("TRANSIENT");
      // As DSFETCH_RETRIES says (it said "dsfetch retried" whatever it was, 0 too).
      expect(JSON.parse(run.stdout).datasets[0].error.hint).toContain(
        "(retried up to 2 times: DSFETCH_RETRIES)",
      );
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
