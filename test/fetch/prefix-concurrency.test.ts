// How many objects of a folder are requested at once (fetch/download-prefix.ts): small objects
// are bound by round trips (real S3: 10-50 ms per request), so many are in flight, as long as
// their bodies fit SMALL_BYTES_IN_FLIGHT; large ones by bytes and memory, so at most
// LARGE_OBJECTS_IN_FLIGHT, whatever the concurrency.
// downloadPrefix against the real store, its getter counted.
import { createHash } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { StoreClient } from "../../src/fetch/client.ts";
import {
  DEFAULT_PREFIX_CONCURRENCY,
  downloadPrefix,
  LARGE_OBJECTS_IN_FLIGHT,
  SMALL_BYTES_IN_FLIGHT,
} from "../../src/fetch/download-prefix.ts";
import { ObjectGetter } from "../../src/fetch/object-get.ts";
import type { ListedObject } from "../../src/fetch/resolve.ts";
import { createBucket, putMany, s3Info } from "../harness/s3.ts";

const LARGE_BYTES = 1024 * 1024 + 4096; // just over the one-GET bound of small objects
const SMALL = 200;
const LARGE = LARGE_OBJECTS_IN_FLIGHT + 12;
const MID_BYTES = 1024 * 1024; // the largest fetched with one GET into memory
const MID = SMALL_BYTES_IN_FLIGHT / MID_BYTES + 12;
let bucket: string;
let scratch: string;
type Kind = "small" | "mid" | "large";
const listed: Record<Kind, ListedObject[]> = { small: [], mid: [], large: [] };

const smallBody = (i: number) => Buffer.from(`small object ${i}\n`);
const midBody = (i: number) => Buffer.alloc(MID_BYTES, i + 1);
const largeBody = (i: number) => Buffer.alloc(LARGE_BYTES, i);

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-prefix-concurrency-"));
  bucket = await createBucket("prefix-concurrency");
  for (const [kind, count, body] of [
    ["small", SMALL, smallBody],
    ["mid", MID, midBody],
    ["large", LARGE, largeBody],
  ] as const) {
    const keys = await putMany(bucket, `${kind}/`, count, body);
    listed[kind] = keys.map((key, i) => ({
      key,
      relativePath: key.slice(kind.length + 1),
      bytes: body(i).length,
      etag: createHash("md5").update(body(i)).digest("hex"),
    }));
  }
}, 120_000);
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

/** A client whose GETs are counted: the most started and not yet answered at once. */
function countedClient(): { client: StoreClient; peak: () => number; started: string[] } {
  const started: string[] = [];
  const info = s3Info();
  const getter = new ObjectGetter({
    endpoint: { url: info.endpoint, region: info.region, forcePathStyle: true },
    credentials: async () => ({
      accessKeyId: info.accessKeyId,
      secretAccessKey: info.secretAccessKey,
    }),
  });
  let inFlight = 0;
  let peak = 0;
  const get = getter.get.bind(getter);
  getter.get = async (...args: Parameters<ObjectGetter["get"]>) => {
    started.push(args[0].key);
    inFlight += 1;
    peak = Math.max(peak, inFlight);
    try {
      return await get(...args);
    } finally {
      inFlight -= 1;
    }
  };
  const client: StoreClient = {
    endpointLabel: info.endpoint,
    region: "us-east-1",
    anonymous: false,
    credentialSource: "dataset",
    getter,
  };
  return { client, peak: () => peak, started };
}

async function fetchFolder(kind: Kind): Promise<{ peak: number; dir: string }> {
  const { client, peak } = countedClient();
  const dir = await mkdtemp(join(scratch, `${kind}-`));
  const objects = listed[kind];
  const result = await downloadPrefix({
    client,
    resolution: {
      kind: "prefix",
      bucket,
      prefix: `${kind}/`,
      objects,
      bytes: objects.reduce((sum, object) => sum + object.bytes, 0),
      listingDigest: "test",
    },
    destination: dir,
    errorContext: {
      dataset: kind,
      uri: `s3://${bucket}/${kind}/`,
      bucket,
      endpoint: s3Info().endpoint,
      anonymous: false,
      action: "reading",
    },
  });
  expect(result.verification).toEqual({ md5: objects.length });
  return { peak: peak(), dir };
}

describe("a folder of large objects, then small ones", () => {
  it("small objects start beside the large ones in flight, not after every large one", async () => {
    const { client, started } = countedClient();
    const dir = await mkdtemp(join(scratch, "mixed-"));
    const objects = [
      ...listed.large.map((object) => ({ ...object, relativePath: `L/${object.relativePath}` })),
      ...listed.small.map((object) => ({ ...object, relativePath: `S/${object.relativePath}` })),
    ];
    const concurrency = LARGE_OBJECTS_IN_FLIGHT + 8;
    const result = await downloadPrefix({
      client,
      resolution: {
        kind: "prefix",
        bucket,
        prefix: "",
        objects,
        bytes: objects.reduce((sum, object) => sum + object.bytes, 0),
        listingDigest: "test",
      },
      destination: dir,
      concurrency,
      errorContext: {
        dataset: "mixed",
        uri: `s3://${bucket}/`,
        bucket,
        endpoint: s3Info().endpoint,
        anonymous: false,
        action: "reading",
      },
    });
    expect(result.verification).toEqual({ md5: objects.length });
    // The workers beyond the large objects' turns took small ones at once (waiting for a
    // turn with a large object in hand, they started no small one before every large one
    // was taken).
    // (Not exactly 8: a large object may be done, and the next one started, first.)
    const first = started.slice(0, concurrency);
    expect(first.filter((key) => key.startsWith("small/")).length).toBeGreaterThanOrEqual(4);
    expect((await readdir(join(dir, "L"))).length).toBe(LARGE);
    expect((await readdir(join(dir, "S"))).length).toBe(SMALL);
  }, 60_000);
});

describe("a folder's objects in flight", () => {
  it("small objects: many at once (round trips bind them, not bytes)", async () => {
    const { peak, dir } = await fetchFolder("small");
    expect(DEFAULT_PREFIX_CONCURRENCY).toBeGreaterThanOrEqual(128);
    expect(peak).toBeGreaterThan(100);
    expect(peak).toBeLessThanOrEqual(DEFAULT_PREFIX_CONCURRENCY);
    expect((await readdir(dir)).length).toBe(SMALL);
    expect(await readFile(join(dir, "137"), "utf8")).toBe("small object 137\n");
  }, 60_000);

  it("1 MiB objects, fetched into memory: as many as SMALL_BYTES_IN_FLIGHT holds (peak RSS)", async () => {
    const { peak, dir } = await fetchFolder("mid");
    // At most what the bodies' memory allows (a GET may end before the last one starts).
    expect(peak).toBeLessThanOrEqual(SMALL_BYTES_IN_FLIGHT / MID_BYTES);
    expect(peak).toBeGreaterThanOrEqual(SMALL_BYTES_IN_FLIGHT / MID_BYTES - 8);
    expect((await readdir(dir)).length).toBe(MID);
    for (const i of [0, MID - 1]) {
      expect((await readFile(join(dir, String(i)))).equals(midBody(i))).toBe(true);
    }
  }, 60_000);

  it(`large objects: at most ${LARGE_OBJECTS_IN_FLIGHT} at once, every one complete`, async () => {
    const { peak, dir } = await fetchFolder("large");
    expect(peak).toBeLessThanOrEqual(LARGE_OBJECTS_IN_FLIGHT);
    expect(peak).toBeGreaterThanOrEqual(LARGE_OBJECTS_IN_FLIGHT - 8);
    expect((await readdir(dir)).length).toBe(LARGE);
    for (const i of [0, LARGE_OBJECTS_IN_FLIGHT, LARGE - 1]) {
      expect((await readFile(join(dir, String(i)))).equals(largeBody(i))).toBe(true);
    }
  }, 60_000);
});
