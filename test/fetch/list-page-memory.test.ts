// What a parsed listing entry holds (src/fetch/list-objects.ts own()): its key, ETag and
// LastModified are copied out of the page. Taken as regexp matches of the page's text, they
// were views into it (V8 sliced strings), and one entry kept alive kept its whole page: from a
// page answered without <EncodingType>url</EncodingType>, ~470 B of heap per entry kept
// instead of ~150 (memory review of folders, 2026-12-06), and ~400 B for every entry without
// an ETag (its LastModified), encoded or not. A folder keeps every entry of its listing.
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parseListPage } from "../../src/fetch/list-objects.ts";

const CHILD = fileURLToPath(new URL("./list-page-memory-child.ts", import.meta.url));

/**
 * Heap per entry kept. Copied out, an entry is ~150 B (its object, a key of 25 characters, an
 * ETag of 34); keeping its page adds that page's share, ~280-340 B of XML per entry here.
 */
const BOUND = 250;

async function heapPerEntry(variant: string): Promise<{ heapPerEntry: number; entries: number }> {
  const { stdout } = await promisify(execFile)(process.execPath, ["--expose-gc", CHILD, variant], {
    timeout: 60_000,
  });
  return JSON.parse(stdout) as { heapPerEntry: number; entries: number };
}

describe("a parsed listing page's entries hold none of the page", () => {
  for (const [variant, what] of [
    ["plain", "keys as they are (no EncodingType), ETags with &quot;"],
    ["quotes", "keys as they are, ETags in bare quotes"],
    ["no-etag", "entries without ETags (each keeps its LastModified)"],
    ["url", "URL-encoded keys"],
  ] as const) {
    it(`${what}: under ${BOUND} B of heap per entry kept`, async () => {
      const measured = await heapPerEntry(variant);
      expect(measured.entries).toBe(50_000);
      expect(measured.heapPerEntry, JSON.stringify(measured)).toBeLessThan(BOUND);
    });
  }

  it("the copies are the same strings, unpaired surrogates included", () => {
    const long = "a".repeat(20);
    const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated><Contents><Key>${long}&#xD800;${long}/\u65e5\u{1f600}.bin</Key><LastModified>2026-12-06T17:37:46.000Z</LastModified><Size>1</Size></Contents><Contents><Key>${long}/plain.bin</Key><ETag>"0123456789abcdef0123456789abcdef"</ETag><Size>2</Size></Contents><CommonPrefixes><Prefix>${long}/dir/</Prefix></CommonPrefixes></ListBucketResult>`;
    const parsed = parseListPage(xml);
    expect(parsed.entries).toEqual([
      {
        key: `${long}\ud800${long}/\u65e5\u{1f600}.bin`,
        size: 1,
        etag: "",
        lastModified: "2026-12-06T17:37:46.000Z",
      },
      { key: `${long}/plain.bin`, size: 2, etag: '"0123456789abcdef0123456789abcdef"' },
    ]);
    expect(parsed.prefixes).toEqual([`${long}/dir/`]);
  });
});
