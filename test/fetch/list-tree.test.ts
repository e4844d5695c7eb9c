// Listing a folder with several requests at once (src/fetch/list-tree.ts): the same keys in
// the same order (so the listing digest of a staged folder is unchanged) as one listing page
// after the other, for every layout; several requests in flight where there are directories;
// one listing after the other where the store's order is not UTF-8 byte order or it ignores
// start-after. Against a ListObjectsV2 written here (pages of 5 keys, so that every path
// pages) and against MinIO.
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { ClientPool } from "../../src/fetch/client.ts";
import { type ListedEntry, type ListPage, listObjectsPage } from "../../src/fetch/list-objects.ts";
import {
  compareUtf8,
  listTree,
  MAX_DIRECTORIES,
  type PageRequest,
} from "../../src/fetch/list-tree.ts";
import { resolveDataset } from "../../src/fetch/resolve.ts";
import { type FaultProxy, isListObjectsV2, startFaultProxy } from "../harness/fault-proxy.ts";
import { createBucket, putMany, putObject, s3Info } from "../harness/s3.ts";

const byUtf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

/** ListObjectsV2 over `keys` as S3 answers it (UTF-8 order unless `order` says otherwise). */
function fakeStore(
  keys: readonly string[],
  options: {
    pageSize?: number;
    ignoreStartAfter?: boolean;
    order?: "utf8" | "reversed";
    delayMs?: number;
    refuse?: (request: PageRequest) => void;
  } = {},
) {
  const sorted = [...keys].sort(byUtf8);
  if (options.order === "reversed") sorted.reverse();
  const pageSize = options.pageSize ?? 5;
  const stats = {
    requests: [] as PageRequest[],
    inFlight: 0,
    maxInFlight: 0,
    aborted: 0,
    /** The continuation token of the first page of the plain listing (see `plainAfterAll`). */
    firstToken: undefined as string | undefined,
  };
  const fetchPage = async (request: PageRequest): Promise<ListPage> => {
    stats.requests.push(request);
    stats.inFlight += 1;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    await new Promise((resolve) => setTimeout(resolve, options.delayMs ?? 2));
    stats.inFlight -= 1;
    if (request.signal?.aborted === true) {
      stats.aborted += 1;
      throw new Error("aborted");
    }
    options.refuse?.(request);
    // The token is the index of the next key in `sorted`.
    let at = request.continuationToken === undefined ? 0 : Number(request.continuationToken);
    const entries: ListedEntry[] = [];
    const prefixes: string[] = [];
    while (at < sorted.length && entries.length + prefixes.length < pageSize) {
      const key = sorted[at] as string;
      at += 1;
      if (!key.startsWith(request.prefix)) continue;
      if (
        request.continuationToken === undefined &&
        request.startAfter !== undefined &&
        options.ignoreStartAfter !== true &&
        byUtf8(key, request.startAfter) <= 0
      ) {
        continue;
      }
      const slash = request.delimiter === undefined ? -1 : key.indexOf("/", request.prefix.length);
      if (slash === -1) {
        entries.push({ key, size: key.length, etag: `"${key.length}"` });
        continue;
      }
      const common = key.slice(0, slash + 1);
      if (prefixes.at(-1) !== common) prefixes.push(common);
      // Every key of that directory is rolled up into it.
      while (at < sorted.length && (sorted[at] as string).startsWith(common)) at += 1;
    }
    const more = sorted.slice(at).some((key) => key.startsWith(request.prefix));
    const nextToken = more ? String(at) : undefined;
    if (stats.requests.length === 1) stats.firstToken = nextToken;
    return { entries, prefixes, nextToken };
  };
  return { fetchPage, stats };
}

/** Whether the plain listing went on from its first page (the listing by directory gave up). */
function plainAfterAll(stats: ReturnType<typeof fakeStore>["stats"]): boolean {
  return stats.requests.some(
    (r) => r.continuationToken !== undefined && r.continuationToken === stats.firstToken,
  );
}

/** Keys only, the converter listPrefix uses minus its checks. */
const keysOnly = () => (entry: ListedEntry) => ({ key: entry.key });

async function listedKeys(
  keys: readonly string[],
  prefix: string,
  options: Parameters<typeof fakeStore>[1] = {},
  concurrency = 16,
) {
  const store = fakeStore(keys, options);
  const listed = await listTree(prefix, store.fetchPage, keysOnly, { concurrency });
  return { keys: listed.map((entry) => entry.key), stats: store.stats };
}

/** What one listing, one page after the other, gives. */
function oneListing(keys: readonly string[], prefix: string): string[] {
  return keys.filter((key) => key.startsWith(prefix)).sort(byUtf8);
}

const LAYOUTS: Record<string, string[]> = {
  flat: Array.from({ length: 20 }, (_, i) => `p/f${String(i).padStart(2, "0")}`),
  "40 directories of 3 files, keys beside them": [
    ...Array.from({ length: 40 }, (_, d) =>
      [0, 1, 2].map((f) => `p/d${String(d).padStart(2, "0")}/f${f}`),
    ).flat(),
    "p/a.txt",
    "p/d05",
    "p/d05.txt",
    "p/d050",
    "p/zz",
  ],
  // "a.txt" < "a/" < "a0": keys beside a directory sort on both sides of its keys.
  "keys on both sides of a directory": ["p/a.txt", "p/a/x", "p/a/y", "p/a0", "p/b/z", "p/a-"],
  "directory markers, empty directories": [
    "p/",
    "p/m/",
    "p/m/x",
    "p/n/",
    "p/o/",
    "p/o/p/",
    "p/o/p/q",
  ],
  "one deep narrow tree": [
    "p/a/b/c/d/e/f/file",
    "p/a/b/c/d/e/g",
    "p/a/b/c/x",
    "p/a/b/y",
    "p/a/readme",
    "p/a/z",
  ],
  "two directories of many subdirectories (imagenet/train, val)": [
    ...Array.from({ length: 30 }, (_, c) => [`p/train/n${c}/1.jpg`, `p/train/n${c}/2.jpg`]).flat(),
    ...Array.from({ length: 20 }, (_, c) => `p/val/n${c}/1.jpg`),
    "p/train/labels.txt",
    "p/LICENSE",
  ],
  // U+FF21 (fullwidth A) sorts before U+1F600 in UTF-8 and after it in UTF-16 code units.
  "names beyond ASCII, beyond the BMP": [
    "p/\uff21/1",
    "p/\u{1f600}/1",
    "p/\u{1f600}/2",
    "p/\ue000/x",
    "p/ü/1",
    "p/日本/データ",
    ...Array.from({ length: 20 }, (_, i) => `p/\u{1f600}${i}/k`),
  ],
  "empty path segments, spaces and plus signs": [
    "p//x",
    "p///y",
    "p/a b/c+d",
    "p/a+b/ c",
    "p/a%2F/x",
    "p/a b",
  ],
  "directories around the folder itself": [
    "q/x",
    "p",
    "p0/x",
    "p/x/y",
    "p/x/z",
    "p/x/zz",
    "p/x0",
    "p/w/v",
    "p/y/",
    "p.txt",
  ],
};

describe("listing a folder with several requests at once", () => {
  for (const [layout, keys] of Object.entries(LAYOUTS)) {
    it(`${layout}: the keys of one listing, in its order`, async () => {
      const { keys: listed, stats } = await listedKeys(keys, "p/");
      expect(listed).toEqual(oneListing(keys, "p/"));
      // Listed by directory (not a plain listing after giving up), except the flat folder.
      const delimited = stats.requests.filter((r) => r.delimiter !== undefined).length;
      if (layout === "flat") expect(delimited).toBe(0);
      else expect([delimited > 0, plainAfterAll(stats)]).toEqual([true, false]);
    });
  }

  it('a whole bucket (prefix "")', async () => {
    const keys = LAYOUTS["40 directories of 3 files, keys beside them"] as string[];
    expect((await listedKeys(keys, "")).keys).toEqual(oneListing(keys, ""));
  });

  it("directories are listed by their own prefix, several at a time, in about as many requests as one listing", async () => {
    const keys = Array.from({ length: 64 }, (_, d) =>
      Array.from(
        { length: 300 },
        (_, f) => `p/d${String(d).padStart(2, "0")}/f${String(f).padStart(3, "0")}`,
      ),
    ).flat();
    const { keys: listed, stats } = await listedKeys(keys, "p/", { pageSize: 100 });
    expect(listed).toEqual(oneListing(keys, "p/"));
    expect(stats.maxInFlight).toBeGreaterThan(8);
    // One listing: 192 pages of 100; here its first page, one delimited page, then 3 per
    // directory.
    expect(stats.requests.length).toBe(2 + 64 * 3);
    expect(new Set(stats.requests.map((r) => r.prefix)).size).toBe(65);
    expect(stats.requests.some((r) => r.startAfter !== undefined)).toBe(false);
  });

  it("small directories: after the first ones, the rest of the folder in one listing (not a request per directory)", async () => {
    // Beside every directory: its marker (the first key of a range from it), a key that sorts
    // just before its keys and one just after.
    const keys = Array.from({ length: 500 }, (_, d) => {
      const dir = `p/d${String(d).padStart(3, "0")}`;
      return [`${dir}/`, `${dir}/f0`, `${dir}/f1`, `${dir}.txt`, `${dir}-x/y`, `${dir}0`];
    }).flat();
    const { keys: listed, stats } = await listedKeys(keys, "p/", { pageSize: 250 });
    expect(listed).toEqual(oneListing(keys, "p/"));
    // One listing: 12 pages; here 8 delimited pages, 16-31 directories, then ~12 pages.
    expect(stats.requests.length).toBeLessThan(55);
    expect(stats.requests.filter((r) => r.startAfter !== undefined)).toHaveLength(1);
  });

  it("more than MAX_DIRECTORIES directories (one per sample): one listing after ~10 delimited pages", async () => {
    const keys = Array.from(
      { length: MAX_DIRECTORIES + 50 },
      (_, d) => `p/s${String(d).padStart(6, "0")}/x`,
    );
    const { keys: listed, stats } = await listedKeys(keys, "p/", { pageSize: 1000 });
    expect(listed).toEqual(oneListing(keys, "p/"));
    // One listing: 11 pages; the delimited ones stop once they found too many directories
    // (each would be a request of its own), and the plain listing goes on from its first page.
    expect(stats.requests.filter((r) => r.delimiter !== undefined)).toHaveLength(11);
    expect(stats.requests).toHaveLength(11 + 11);
  });

  it("a few directories of many keys each (shards): listed several at a time", async () => {
    const keys = Array.from({ length: 12 }, (_, d) =>
      Array.from({ length: 200 }, (_, f) => `p/shard${d}/${String(f).padStart(3, "0")}`),
    ).flat();
    const { keys: listed, stats } = await listedKeys(keys, "p/", { pageSize: 20 });
    expect(listed).toEqual(oneListing(keys, "p/"));
    expect(stats.maxInFlight).toBeGreaterThan(8);
  });

  it("a flat folder is one listing, as before (one request after the other, no delimiter)", async () => {
    const keys = LAYOUTS.flat as string[];
    const { stats } = await listedKeys(keys, "p/");
    expect(stats.maxInFlight).toBe(1);
    expect(stats.requests.length).toBe(4);
    expect(stats.requests.every((r) => r.delimiter === undefined)).toBe(true);
  });

  it("a folder of one page: that page, nothing more", async () => {
    const keys = ["p/a/1", "p/b/2", "p/c"];
    const { keys: listed, stats } = await listedKeys(keys, "p/");
    expect(listed).toEqual(oneListing(keys, "p/"));
    expect(stats.requests).toEqual([{ prefix: "p/" }]);
  });

  it("a store that ignores start-after: listed again one page after the other, the same keys", async () => {
    const keys = LAYOUTS["40 directories of 3 files, keys beside them"] as string[];
    const { keys: listed, stats } = await listedKeys(keys, "p/", { ignoreStartAfter: true });
    expect(listed).toEqual(oneListing(keys, "p/"));
    // The first page of one plain listing once: the page that showed directories, from which
    // the listing goes on after the range that did not start where asked (not every range
    // listing the folder from its start).
    const plain = (r: PageRequest) =>
      r.prefix === "p/" &&
      r.delimiter === undefined &&
      r.startAfter === undefined &&
      r.continuationToken === undefined;
    expect(stats.requests.filter(plain)).toHaveLength(1);
    // ...and the plain listing went on from that page.
    expect(stats.requests.at(-1)?.continuationToken).toBeDefined();
  });

  it("a store whose order is not UTF-8 byte order: listed one page after the other, every key once", async () => {
    const keys = LAYOUTS["names beyond ASCII, beyond the BMP"] as string[];
    const { keys: listed } = await listedKeys(keys, "p/", { order: "reversed" });
    expect([...listed].sort(byUtf8)).toEqual(oneListing(keys, "p/"));
    expect(listed).toEqual(oneListing(keys, "p/").reverse());
  });

  it("a directory's listing refused (an IAM policy on s3:prefix): the others are aborted, then one plain listing", async () => {
    const keys = LAYOUTS["40 directories of 3 files, keys beside them"] as string[];
    const refused = new Error("AccessDenied on p/d07/");
    const store = fakeStore(keys, {
      delayMs: 20,
      refuse: (request) => {
        if (request.prefix === "p/d07/") throw refused;
      },
    });
    // Without a second chance, the refusal is the answer (not an abort of another request).
    await expect(listTree("p/", store.fetchPage, keysOnly, { concurrency: 16 })).rejects.toBe(
      refused,
    );
    // The requests in flight beside it were aborted, not waited for (they end later).
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(store.stats.aborted).toBeGreaterThan(0);
    const listed = await listTree("p/", store.fetchPage, keysOnly, {
      concurrency: 16,
      plainAfter: (error) => error === refused,
    });
    expect(listed.map((entry) => entry.key)).toEqual(oneListing(keys, "p/"));
  });

  it("CommonPrefixes that skip a level, or lie outside the folder: one plain listing, every key", async () => {
    const keys = LAYOUTS["40 directories of 3 files, keys beside them"] as string[];
    for (const wrong of ["p/d03/x/", "q/d03/"]) {
      const store = fakeStore(keys);
      const lying = async (request: PageRequest) => {
        const page = await store.fetchPage(request);
        return { ...page, prefixes: page.prefixes.map((p) => (p === "p/d03/" ? wrong : p)) };
      };
      const listed = await listTree("p/", lying, keysOnly, { concurrency: 16 });
      expect(listed.map((entry) => entry.key)).toEqual(oneListing(keys, "p/"));
    }
  });

  it("one request at a time when asked (concurrency 1): one listing", async () => {
    const keys = LAYOUTS["40 directories of 3 files, keys beside them"] as string[];
    const { keys: listed, stats } = await listedKeys(keys, "p/", {}, 1);
    expect(listed).toEqual(oneListing(keys, "p/"));
    expect(stats.requests.every((r) => r.delimiter === undefined)).toBe(true);
  });

  it("compareUtf8 orders as UTF-8 bytes do", () => {
    const samples = [
      "",
      "a",
      "a/",
      "a0",
      "\uff21",
      "\u{1f600}",
      "\ue000",
      "\ud7ff",
      "ü",
      "日本",
      "a\u{10ffff}",
    ];
    for (const a of samples) {
      for (const b of samples) {
        expect(Math.sign(compareUtf8(a, b)), `${a} vs ${b}`).toBe(Math.sign(byUtf8(a, b)));
      }
    }
  });
});

describe("against MinIO", () => {
  let bucket: string;
  let proxy: FaultProxy | undefined;
  const keys = [
    ...Array.from({ length: 60 }, (_, d) => [`set/c${d}/1.bin`, `set/c${d}/2.bin`]).flat(),
    "set/c3.txt",
    "set/\u{1f600}/x.bin",
    "set/\uff21/y.bin",
    "set/deep/a/b/c.bin",
    "set/README",
  ];

  beforeAll(async () => {
    bucket = await createBucket("list-tree");
    for (const key of keys) await putObject(bucket, key, `${key}\n`);
    await putObject(bucket, "set/empty/", "");
    // More than a page (1,000 keys), or the folder is that one page, listed as before.
    keys.push(...(await putMany(bucket, "set/bulk/", 1000, (i) => Buffer.from(`${i}\n`))));
    proxy = await startFaultProxy(s3Info().endpoint);
  }, 60_000);
  afterAll(async () => {
    await proxy?.close();
  });

  it("the folder resolves to every object, in one listing's order, with its digest, from several requests at once", async () => {
    const info = s3Info();
    const endpoint = proxy?.endpoint as string;
    const [spec] = parseDatasetsValue(
      [
        {
          uri: `s3://${bucket}/set/`,
          awsAccessKeyId: info.accessKeyId,
          awsSecretAccessKey: info.secretAccessKey,
          endpoint,
          region: info.region,
          pathStyle: true,
        },
      ],
      "test",
      {},
    );
    if (spec === undefined) throw new Error("no dataset");
    const pool = new ClientPool();
    try {
      const client = await pool.clientFor(spec);
      const resolution = await resolveDataset(spec, client, {});
      if (resolution.kind !== "prefix") throw new Error("not a folder");

      // One listing, one page after the other, as dsfetch listed before.
      const flat: ListedEntry[] = [];
      let token: string | undefined;
      do {
        const page = await listObjectsPage(client.getter, {
          bucket,
          prefix: "set/",
          continuationToken: token,
        });
        flat.push(...page.entries);
        token = page.nextToken;
      } while (token !== undefined);
      const objects = flat.filter((entry) => !(entry.key.endsWith("/") && entry.size === 0));
      expect(resolution.objects.map((o) => o.key)).toEqual(objects.map((entry) => entry.key));
      const digest = createHash("sha256");
      for (const entry of objects) {
        digest.update(
          `${entry.key}\t${entry.size}\t${entry.etag.replace(/"/g, "").toLowerCase()}\n`,
        );
      }
      expect(resolution.listingDigest).toBe(digest.digest("hex"));

      // Directories listed at once, by their own prefix: over several connections (one at a
      // time reuses one); then, as they are small, the rest in one listing from where they
      // stopped.
      const listings = (proxy?.requests ?? []).filter(isListObjectsV2);
      const directories = listings.filter((r) => /[?&]prefix=set%2Fc\d+%2F(&|$)/.test(r.target));
      expect(directories.length).toBeGreaterThanOrEqual(16);
      expect(new Set(directories.map((r) => r.connection)).size).toBeGreaterThan(1);
      expect(listings.filter((r) => r.target.includes("start-after="))).toHaveLength(1);
    } finally {
      pool.destroy();
    }
  });
});
