// A listing's objects keep an ETag that is an MD5 in lower-case hex as four 32-bit words, not
// a string (resolve.ts ListedMd5): every ETag must still read back exactly as listed, whatever
// its form, since it pins the GETs (If-Match), is compared with the store's answers and a
// later listing's, and makes the manifest's digests and the listing's digest.
import { describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import type { GetRequest } from "../../src/fetch/object-get.ts";
import { type ResolvedPrefix, resolveDataset } from "../../src/fetch/resolve.ts";
import { bodyAnswer, memoryClient } from "../harness/memory-store.ts";

const ETAGS = [
  "0123456789abcdef0123456789abcdef",
  "00000000000000000000000000000000",
  "ffffffffffffffffffffffffffffffff",
  "80000000800000007fffffff00000001",
  "0123456789ABCDEF0123456789ABCDEF",
  "0123456789abcdef0123456789abcdef-12",
  "0123456789abcdef0123456789abcde",
  "0123456789abcdef0123456789abcdef0",
  "0123456789abcdeg0123456789abcdef",
  "W/0123456789abcdef0123456789abcd",
  "+123456789abcdef0123456789abcdef",
  "-123456789abcdef0123456789abcdef",
  "0x23456789abcdef0123456789abcdef",
  "not an md5 at all",
];

function listing(): string {
  let xml = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>etags</Name><Prefix>set/</Prefix><KeyCount>${ETAGS.length}</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>`;
  ETAGS.forEach((etag, i) => {
    xml += `<Contents><Key>set/${String(i).padStart(3, "0")}</Key><LastModified>2026-12-06T17:37:46.000Z</LastModified><ETag>&quot;${etag}&quot;</ETag><Size>${i + 1}</Size><StorageClass>STANDARD</StorageClass></Contents>`;
  });
  return `${xml}</ListBucketResult>`;
}

const client = memoryClient({
  get: async (request: GetRequest) => {
    if (request.key !== "") throw new Error(`no GET of an object expected: ${request.key}`);
    return bodyAnswer(Buffer.from(listing()), "");
  },
  head: async () => {
    throw new Error("no HEAD expected");
  },
});

describe("a listing's ETags read back as listed", () => {
  it("MD5s in lower-case hex (kept as words) and every other form (kept as strings)", async () => {
    const [spec] = parseDatasetsValue(
      [{ uri: "s3://etags/set/", awsAccessKeyId: "k", awsSecretAccessKey: "s" }],
      "test",
      { AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_REGION: "us-east-1" },
    );
    if (spec === undefined) throw new Error("no dataset");
    const resolution = (await resolveDataset(spec, client)) as ResolvedPrefix;
    // As the listing gave them, lower-cased by its reader (list-objects.ts), as before.
    expect(resolution.objects.map((object) => object.etag)).toEqual(
      ETAGS.map((etag) => etag.toLowerCase()),
    );
    expect(resolution.objects.map((object) => object.relativePath)).toEqual(
      ETAGS.map((_, i) => String(i).padStart(3, "0")),
    );
    expect(resolution.objects.map((object) => object.bytes)).toEqual(ETAGS.map((_, i) => i + 1));
    // Read twice: the same value (made again each time).
    expect(resolution.objects[3]?.etag).toBe(resolution.objects[3]?.etag);
  });
});
