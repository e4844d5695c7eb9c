// Run by list-page-memory.test.ts with --expose-gc: parses 50 listing pages of 1,000 entries
// each in the form a store sends (MinIO's fields: Owner, StorageClass), keeps every entry,
// and prints the heap they hold per entry once the pages are garbage, as JSON.
//
//   node --expose-gc test/fetch/list-page-memory-child.ts <variant>
//
// Variants: "plain" (no EncodingType: keys as they are, ETags with &quot;), "quotes" (the same,
// ETags in bare quotes), "no-etag" (no ETags: each entry keeps its LastModified), "url" (keys
// URL-encoded, as asked for).
import { parseListPage } from "../../src/fetch/list-objects.ts";

const PAGES = 50;
const PER_PAGE = 1000;
const variant = process.argv[2] ?? "plain";
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error("run with --expose-gc");

function page(p: number): string {
  let xml = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>set/</Prefix><KeyCount>${PER_PAGE}</KeyCount><MaxKeys>1000</MaxKeys>${variant === "url" ? "<EncodingType>url</EncodingType>" : ""}<IsTruncated>false</IsTruncated>`;
  for (let i = 0; i < PER_PAGE; i++) {
    const n = p * PER_PAGE + i;
    const hex = n.toString(16).padStart(32, "a");
    const etag =
      variant === "no-etag"
        ? ""
        : variant === "quotes"
          ? `<ETag>"${hex}"</ETag>`
          : `<ETag>&quot;${hex}&quot;</ETag>`;
    xml += `<Contents><Key>set/d${String(p).padStart(4, "0")}/f${String(i).padStart(6, "0")}.bin</Key><LastModified>2026-12-06T17:37:46.000Z</LastModified>${etag}<Size>1024</Size><Owner><ID>02d6176db174dc93cb1b899f7c6078f08654445fe8cf1b6ce98d8855f66bdbf4</ID><DisplayName>minio</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents>`;
  }
  return `${xml}</ListBucketResult>`;
}

const kept: unknown[] = [];
let xmlChars = 0;
// Once first: what parsing leaves behind for good (compiled code, regexp caches) is not counted.
parseListPage(page(PAGES));
gc();
gc();
const before = process.memoryUsage().heapUsed;
for (let p = 0; p < PAGES; p++) {
  const xml = page(p);
  xmlChars += xml.length;
  kept.push(...parseListPage(xml).entries);
}
gc();
gc();
const after = process.memoryUsage().heapUsed;
process.stdout.write(
  `${JSON.stringify({
    entries: kept.length,
    xmlPerEntry: Math.round(xmlChars / kept.length),
    heapPerEntry: Math.round((after - before) / kept.length),
  })}\n`,
);
