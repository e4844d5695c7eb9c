// Run by folder-memory.test.ts with --expose-gc: lists a folder of <objects> small objects
// from a store kept in this process (MinIO's listing pages, bodies made from the key), fetches
// it into <directory> with downloadPrefix, and prints, as JSON, the memory that stays per
// object while the folder is staged: its listing and the download's result (the manifest's
// files) held, everything else garbage.
//
//   node --expose-gc test/fetch/folder-memory-child.ts <directory> <objects> [<checksum>]
//
// With <checksum> (an S3 additional checksum algorithm, e.g. CRC64NVME), every object is
// served with that full-object checksum, as AWS gives objects uploaded by its SDKs since 2025,
// and verified by it: its manifest digest is then "<algorithm>:" + base64, not "md5:" + ETag.
//
// The store holds nothing per object (keys, bodies and ETags are made from the index), so
// what is measured is dsfetch's alone.
import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import { type ChecksumAlgorithm, checksumOf } from "../../src/fetch/checksum/algorithms.ts";
import { downloadPrefix } from "../../src/fetch/download-prefix.ts";
import type { GetRequest, GetResponse, ObjectGetter } from "../../src/fetch/object-get.ts";
import { type ResolvedPrefix, resolveDataset } from "../../src/fetch/resolve.ts";
import { bodyAnswer, memoryClient } from "../harness/memory-store.ts";

const [directory = "", count = "20000", algorithm] = process.argv.slice(2) as [
  string?,
  string?,
  ChecksumAlgorithm?,
];
const OBJECTS = Number(count);
const WARM_UP = 2000;
const PER_PAGE = 1000;
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");

const keyOf = (prefix: string, i: number) =>
  `${prefix}n01440764_${String(i).padStart(7, "0")}.JPEG`;
const bodyOf = (key: string) => Buffer.from(`${key}\n`);
const etagOf = (key: string) => createHash("md5").update(bodyOf(key)).digest("hex");
const checksumFieldsOf = (key: string) =>
  algorithm === undefined
    ? {}
    : {
        [`Checksum${algorithm}`]: checksumOf(algorithm, bodyOf(key)).toString("base64"),
        ChecksumType: "FULL_OBJECT",
      };
/** The manifest digest each object should have. */
const digestOf = (key: string) =>
  algorithm === undefined
    ? `md5:${etagOf(key)}`
    : `${algorithm.toLowerCase()}:${checksumOf(algorithm, bodyOf(key)).toString("base64")}`;
/** Objects under each prefix (one folder to warm up, the one measured). */
const sizes = new Map<string, number>([
  ["warm/", WARM_UP],
  ["set/", OBJECTS],
]);

function listingPage(prefix: string, from: number): string {
  const total = sizes.get(prefix) ?? 0;
  const to = Math.min(total, from + PER_PAGE);
  const truncated = to < total;
  let xml = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>mem</Name><Prefix>${prefix}</Prefix><KeyCount>${to - from}</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>${truncated}</IsTruncated>`;
  if (truncated) xml += `<NextContinuationToken>${to}</NextContinuationToken>`;
  for (let i = from; i < to; i++) {
    const key = keyOf(prefix, i);
    xml += `<Contents><Key>${key}</Key><LastModified>2026-12-06T17:37:46.000Z</LastModified><ETag>&quot;${etagOf(key)}&quot;</ETag><Size>${bodyOf(key).length}</Size><Owner><ID>02d6176db174dc93cb1b899f7c6078f08654445fe8cf1b6ce98d8855f66bdbf4</ID><DisplayName>minio</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents>`;
  }
  return `${xml}</ListBucketResult>`;
}

const getter = {
  get: async (request: GetRequest): Promise<GetResponse> => {
    if (request.key === "") {
      const query = request.query ?? {};
      const prefix = query.prefix ?? "";
      const token = query["continuation-token"];
      return bodyAnswer(
        Buffer.from(listingPage(prefix, token === undefined ? 0 : Number(token))),
        "",
      );
    }
    return bodyAnswer(
      bodyOf(request.key),
      `"${etagOf(request.key)}"`,
      checksumFieldsOf(request.key),
    );
  },
  head: async () => {
    throw new Error("no HEAD expected: every object is small");
  },
} as unknown as ObjectGetter;
const client = memoryClient(getter);

async function stageFolder(prefix: string) {
  const [spec] = parseDatasetsValue(
    [
      {
        uri: `s3://mem/${prefix}`,
        name: prefix.slice(0, -1),
        awsAccessKeyId: "k",
        awsSecretAccessKey: "s",
      },
    ],
    "test",
    { AWS_ENDPOINT_URL: "http://127.0.0.1:9", AWS_REGION: "us-east-1" },
  );
  if (spec === undefined) throw new Error("no dataset");
  const resolution = (await resolveDataset(spec, client)) as ResolvedPrefix;
  const destination = join(directory, prefix);
  await mkdir(destination, { recursive: true });
  const result = await downloadPrefix({
    client,
    resolution,
    destination,
    errorContext: {
      dataset: spec.name,
      uri: spec.uri,
      bucket: "mem",
      endpoint: "memory",
      anonymous: false,
      action: "reading",
    },
  });
  return { resolution, result };
}

const used = () => {
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return { heapUsed, arrayBuffers };
};
const settle = async () => {
  // Twice, with a turn between: finalizers and weak references of the first round.
  gc();
  await new Promise((done) => setImmediate(done));
  gc();
};
/**
 * What stays once garbage is gone: the least of three settles 10 ms apart. On a loaded
 * machine one settle sometimes still counted garbage of the download (+13-17 B per object at
 * 20,000 objects, gone at the next settle); what the folder holds is there at every one.
 */
const settled = async () => {
  let least = { heapUsed: Number.POSITIVE_INFINITY, arrayBuffers: Number.POSITIVE_INFINITY };
  for (let round = 0; round < 3; round++) {
    if (round > 0) await new Promise((done) => setTimeout(done, 10));
    await settle();
    const now = used();
    least = {
      heapUsed: Math.min(least.heapUsed, now.heapUsed),
      arrayBuffers: Math.min(least.arrayBuffers, now.arrayBuffers),
    };
  }
  return least;
};

// Once first: compiled code, pools and caches that stay whatever the folder.
const warm = await stageFolder("warm/");
if (warm.result.files.length !== WARM_UP) throw new Error("the warm-up folder is incomplete");
const before = await settled();
const staged = await stageFolder("set/");
const after = await settled();
// The manifest's entries, as the manifest is written from them.
let entries = 0;
let digests = 0;
for (const file of staged.result.files) {
  entries += 1;
  if (file.digest === digestOf(keyOf("set/", entries - 1))) digests += 1;
}
process.stdout.write(
  `${JSON.stringify({
    objects: staged.resolution.objects.length,
    entries,
    digests,
    verification: staged.result.verification,
    heapPerObject: Math.round((after.heapUsed - before.heapUsed) / OBJECTS),
    arrayBuffersPerObject: Math.round((after.arrayBuffers - before.arrayBuffers) / OBJECTS),
  })}\n`,
);
