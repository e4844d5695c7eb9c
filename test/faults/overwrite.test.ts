// Fault suite, scenario 2: the object is overwritten in the store while dsfetch downloads it
// (SPEC §4: "an object overwritten mid-download is detected, never mixed"). The proxy is
// throttled so the download is slow; at a seeded random point (10-60% delivered) the object
// is replaced with new content of another size, straight to the store. Every run must detect
// it (a ranged GET pinned with If-Match answers 412): without an etag the published file is
// exactly the new content; with the etag pinned the fetch fails (exit 5) and nothing is
// published (no dataset, no manifest, no temporary data). While the new content is written
// the proxy forwards nothing, so the overwrite always lands before the last range is asked
// for (otherwise the old version, read whole, would rightly be published).
import { randomBytes } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putObject, s3Info } from "../harness/s3.ts";
import {
  dataRoot,
  diagnostics,
  entries,
  type FetchResult,
  fetchCli,
  leftovers,
  MiB,
  objectBodyBytes,
  RUNS,
  removeAll,
  rngFor,
  scratchDir,
  sha256,
  until,
} from "./helpers.ts";
import { FaultReport } from "./report.ts";

const rng = rngFor("overwrite");
const report = new FaultReport("overwrite");

let scratch: string;
let bucket: string;

beforeAll(async () => {
  scratch = await scratchDir("overwrite");
  bucket = await createBucket("faults-overwrite");
}, 60_000);

afterAll(async () => {
  await removeAll(scratch);
});

interface Overwritten {
  original: Buffer;
  replacement: Buffer;
  firstEtag: string;
  secondEtag: string;
  result: FetchResult;
  storage: string;
  deliveredBeforeOverwrite: number;
  saw412: boolean;
  proxyExtraBytes: number;
}

/**
 * Uploads an 8-12 MiB object, fetches it through a proxy throttled to 8 MiB/s (1 MiB ranges,
 * two in flight) and overwrites it once a random 10-60% has been delivered, holding the
 * proxy's output while the new content is written.
 */
async function overwriteDuring(key: string, pin: boolean, run: number): Promise<Overwritten> {
  const size = rng.int(8 * MiB, 12 * MiB);
  const original = randomBytes(size);
  const replacement = randomBytes(size + rng.int(1, MiB) * (rng.bool() ? 1 : -1));
  const fraction = rng.float(0.1, 0.6);
  const first = await putObject(bucket, key, original);
  const proxy = await startFaultProxy(s3Info().endpoint);
  const storage = join(scratch, `${pin ? "pinned" : "unpinned"}-${run}`);
  try {
    proxy.throttle(8 * MiB);
    const name = `ds${run}`;
    let finished = false;
    const running = fetchCli(
      [{ uri: `s3://${bucket}/${key}`, name, ...(pin ? { etag: first.etag } : {}) }],
      {
        storage,
        env: {
          AWS_ENDPOINT_URL: proxy.endpoint,
          DSFETCH_RANGE_SIZE: "1Mi",
          DSFETCH_RANGE_CONCURRENCY: "2",
        },
      },
    ).finally(() => {
      finished = true;
    });
    await until(() => finished || objectBodyBytes(proxy) >= size * fraction, 60_000);
    // Nothing more goes to the client while the new content is written (1 byte/s), so it
    // asks for no further range before the overwrite has landed: some range is still to be
    // asked for after it (at most two 1 MiB ranges are in flight beyond what was delivered).
    proxy.throttle(1);
    const deliveredBeforeOverwrite = objectBodyBytes(proxy);
    const second = await putObject(bucket, key, replacement);
    // The rest may go at full speed: the point was to be mid-download when the write landed.
    proxy.throttle(undefined);
    const result = await running;
    const finalSize = pin ? 0 : replacement.length;
    return {
      original,
      replacement,
      firstEtag: first.etag,
      secondEtag: second.etag,
      result,
      storage,
      deliveredBeforeOverwrite,
      saw412: proxy.requests.some((r) => r.status === 412),
      proxyExtraBytes: objectBodyBytes(proxy) - finalSize,
    };
  } finally {
    await proxy.close();
  }
}

/** The overwrite landed mid-download and a pinned ranged GET noticed it. */
function expectDetected(o: Overwritten): void {
  expect(o.deliveredBeforeOverwrite, diagnostics(o.result)).toBeGreaterThan(0);
  expect(o.deliveredBeforeOverwrite).toBeLessThan(o.original.length);
  expect(o.saw412, diagnostics(o.result)).toBe(true);
  expect(`${o.result.stderr}${o.result.stdout}`).toMatch(/overwritten|changed/);
}

describe("an object overwritten during the download", () => {
  it(
    `without an etag: detected, and the new content exactly, never a mix (${RUNS} runs)`,
    async () => {
      const c = report.case("unpinned");
      for (let run = 0; run < RUNS; run++) {
        await c.run(run, async () => {
          const o = await overwriteDuring(`unpinned/${run}.bin`, false, run);
          try {
            expectDetected(o);
            expect(o.result.code, diagnostics(o.result)).toBe(0);
            const [staged] = o.result.json?.datasets ?? [];
            expect(staged?.error).toBeUndefined();
            expect(staged?.etag).toBe(o.secondEtag);
            expect(staged?.bytes).toBe(o.replacement.length);
            const dir = join(dataRoot(o.storage), `ds${run}`);
            expect(await readdir(dir)).toEqual([`${run}.bin`]);
            const published = await readFile(join(dir, `${run}.bin`));
            expect(published.length).toBe(o.replacement.length);
            expect(sha256(published)).toBe(sha256(o.replacement));
            const manifests = join(dataRoot(o.storage), ".dsfetch", "manifests");
            const [manifest] = await readdir(manifests);
            expect(
              JSON.parse(await readFile(join(manifests, manifest as string), "utf8")).etag,
            ).toBe(o.secondEtag);
            expect(await leftovers(dataRoot(o.storage))).toEqual([]);
            c.count("412 seen");
            return {
              refetchedBytes: staged?.refetchedBytes ?? 0,
              proxyExtraBytes: o.proxyExtraBytes,
            };
          } finally {
            await removeAll(o.storage);
            await removeAll(`${o.storage}.ephemeral`);
          }
        });
      }
      c.finish();
    },
    RUNS * 60_000 + 30_000,
  );

  it(
    `with the etag pinned: detected, exit 5, nothing published (${RUNS} runs)`,
    async () => {
      const c = report.case("pinned");
      for (let run = 0; run < RUNS; run++) {
        await c.run(run, async () => {
          const o = await overwriteDuring(`pinned/${run}.bin`, true, run);
          try {
            expectDetected(o);
            expect(o.result.code, diagnostics(o.result)).toBe(5);
            const [staged] = o.result.json?.datasets ?? [];
            expect(["OBJECT_CHANGED", "ETAG_MISMATCH"]).toContain(staged?.error?.code);
            expect(staged?.error?.message).toContain(`ds${run}`);
            const data = dataRoot(o.storage);
            expect((await entries(data)).filter((e) => e !== ".dsfetch")).toEqual([]);
            expect(await entries(join(data, ".dsfetch", "manifests"))).toEqual([]);
            expect(await leftovers(data)).toEqual([]);
            c.count(staged?.error?.code ?? "no code");
            return { proxyExtraBytes: o.proxyExtraBytes };
          } finally {
            await removeAll(o.storage);
            await removeAll(`${o.storage}.ephemeral`);
          }
        });
      }
      c.finish();
    },
    RUNS * 60_000 + 30_000,
  );
});
