// A key that a listing names twice fails the dataset as the store's error (resolve.ts
// listPrefix): the second create would otherwise fail as a storage error. The check looks
// through a set only when the keys do not rise strictly; these listings reach both ways,
// over one page and several, with directory markers and keys whose UTF-16 order is not the
// store's UTF-8 order.
import { describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { DsfetchError } from "../../src/errors.ts";
import type { GetRequest } from "../../src/fetch/object-get.ts";
import { type ResolvedPrefix, resolveDataset } from "../../src/fetch/resolve.ts";
import { bodyAnswer, memoryClient } from "../harness/memory-store.ts";

const ETAG = "0123456789abcdef0123456789abcdef";

/** A store whose listing of set/ is `pages` (each a list of [key, size]), in that order. */
function storeListing(pages: readonly (readonly (readonly [string, number])[])[]) {
  const page = (index: number): string => {
    const entries = pages[index] ?? [];
    const truncated = index < pages.length - 1;
    let xml = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>dups</Name><Prefix>set/</Prefix><KeyCount>${entries.length}</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>${truncated}</IsTruncated>`;
    if (truncated) xml += `<NextContinuationToken>page-${index + 1}</NextContinuationToken>`;
    for (const [key, size] of entries) {
      xml += `<Contents><Key>${encodeURIComponent(key)}</Key><LastModified>2026-12-06T17:37:46.000Z</LastModified><ETag>&quot;${ETAG}&quot;</ETag><Size>${size}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
    }
    return `${xml}</ListBucketResult>`;
  };
  return memoryClient({
    get: async (request: GetRequest) => {
      if (request.key !== "") throw new Error(`no GET of an object expected: ${request.key}`);
      const token = request.query?.["continuation-token"];
      return bodyAnswer(Buffer.from(page(token === undefined ? 0 : Number(token.slice(5)))), "");
    },
    head: async () => {
      throw new Error("no HEAD expected");
    },
  });
}

async function resolveListing(
  pages: readonly (readonly (readonly [string, number])[])[],
): Promise<ResolvedPrefix> {
  const [spec] = parseDatasetsValue(
    [{ uri: "s3://dups/set/", name: "set", awsAccessKeyId: "k", awsSecretAccessKey: "s" }],
    "test",
    { AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_REGION: "us-east-1" },
  );
  if (spec === undefined) throw new Error("no dataset");
  return (await resolveDataset(spec, storeListing(pages))) as ResolvedPrefix;
}

async function refusal(pages: readonly (readonly (readonly [string, number])[])[]) {
  const error = await resolveListing(pages).then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(DsfetchError);
  return error as DsfetchError;
}

const keys = (resolution: ResolvedPrefix) => resolution.objects.map((object) => object.key);

describe("a listing without a key twice", () => {
  it("rising keys over several pages: every object, in the listing's order", async () => {
    const resolution = await resolveListing([
      [
        ["set/a", 1],
        ["set/b", 2],
      ],
      [
        ["set/c", 3],
        ["set/d", 4],
      ],
    ]);
    expect(keys(resolution)).toEqual(["set/a", "set/b", "set/c", "set/d"]);
  });

  it("keys in another order than UTF-8's (a store's own order): every object, as listed", async () => {
    const resolution = await resolveListing([
      [
        ["set/c", 1],
        ["set/a", 2],
      ],
      [["set/b", 3]],
    ]);
    expect(keys(resolution)).toEqual(["set/c", "set/a", "set/b"]);
  });

  it("keys above U+FFFF beside U+E000-U+FFFF (UTF-8 order, not UTF-16's): every object", async () => {
    // UTF-8 byte order (S3's) puts U+FF5E before U+1F600; UTF-16 code units put the
    // surrogate pair (0xD83D…) first.
    const resolution = await resolveListing([
      [
        ["set/\uff5e", 1],
        ["set/\u{1f600}", 2],
      ],
    ]);
    expect(keys(resolution)).toEqual(["set/\uff5e", "set/\u{1f600}"]);
  });

  it("a directory marker listed once is dropped", async () => {
    const resolution = await resolveListing([
      [
        ["set/d/", 0],
        ["set/d/x", 1],
      ],
    ]);
    expect(keys(resolution)).toEqual(["set/d/x"]);
  });
});

describe("a listing that names a key twice: S3_ERROR naming the key", () => {
  const cases: [string, (readonly (readonly [string, number])[])[], string][] = [
    [
      "one after the other in a page",
      [
        [
          ["set/a", 1],
          ["set/a", 1],
          ["set/b", 2],
        ],
      ],
      "set/a",
    ],
    [
      "the last key of a page first again on the next",
      [
        [
          ["set/a", 1],
          ["set/m", 2],
        ],
        [
          ["set/m", 2],
          ["set/z", 3],
        ],
      ],
      "set/m",
    ],
    [
      "far apart, the listing not rising",
      [
        [
          ["set/a", 1],
          ["set/b", 2],
          ["set/c", 3],
        ],
        [
          ["set/b", 2],
          ["set/d", 4],
        ],
      ],
      "set/b",
    ],
    [
      "in a store's own order",
      [
        [
          ["set/c", 1],
          ["set/a", 2],
          ["set/c", 1],
        ],
      ],
      "set/c",
    ],
    [
      "above U+FFFF, beside a key that UTF-16 orders after it",
      [
        [
          ["set/\uff5e", 1],
          ["set/\u{1f600}", 2],
          ["set/\u{1f600}", 2],
        ],
      ],
      "set/\u{1f600}",
    ],
    [
      "a directory marker",
      [
        [
          ["set/d/", 0],
          ["set/d/", 0],
          ["set/d/x", 1],
        ],
      ],
      "set/d/",
    ],
  ];
  for (const [what, pages, key] of cases) {
    it(what, async () => {
      const error = await refusal(pages);
      expect(error.code).toBe("S3_ERROR");
      expect(error.message).toContain(`names the key ${JSON.stringify(key)} twice`);
      expect(error.message).toContain("s3://dups/set/");
    });
  }
});
