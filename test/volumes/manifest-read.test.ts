// Reading a manifest a piece at a time (volumes/manifest-lines.ts): the same verdict as
// parsing the whole text, for manifests as written, as older dsfetch versions wrote them, and
// damaged in every way a test can enumerate, without an object per file.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  fileBytes,
  MANIFEST_VERSION,
  type Manifest,
  parseManifestText,
  readManifest,
  type WrittenFiles,
  writeManifest,
} from "../../src/volumes/manifest.ts";
import { OTHER_FORM, readManifestLines } from "../../src/volumes/manifest-lines.ts";

const dir = mkdtempSync(join(tmpdir(), "dsfetch-manifest-read-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Paths that look like the lines around them, or need escapes. */
const TRICKY = [
  { path: "a,", bytes: 1, digest: "md5:00112233445566778899aabbccddeeff" },
  { path: "  ]", bytes: 0 },
  { path: "}", bytes: 2 ** 40 },
  { path: 'quote " and back\\slash', bytes: 7 },
  { path: "tab\tand \u0001 and caf\u00e9 \u65e5\u672c \ud83d\ude00", bytes: 3 },
  { path: '    {"path":"x","bytes":1},', bytes: 5 },
];

function manifest(
  files: WrittenFiles,
  extra: Record<string, unknown> = {},
): Manifest<WrittenFiles> {
  return {
    version: MANIFEST_VERSION,
    name: "images",
    uri: "s3://bucket/images.tar.gz",
    endpoint: "http://127.0.0.1:9000",
    kind: "object",
    etag: "0123456789abcdef0123456789abcdef-3",
    versionId: "v1",
    listingDigest: undefined,
    bytes: 123,
    files,
    verification: "multipart-md5",
    createdAt: "2026-12-05T18:00:00.000Z",
    host: "node-1",
    ...extra,
  };
}

let serial = 0;
async function written(value: Manifest<WrittenFiles>): Promise<string> {
  const path = join(dir, `m${serial++}.json`);
  await writeManifest(path, value);
  return path;
}

/** What the line reader answers for the file at `path`. */
async function lineForm(path: string) {
  const handle = await open(path, "r");
  try {
    return await readManifestLines(handle, (await handle.stat()).size);
  } finally {
    await handle.close();
  }
}

/** A manifest reduced to what can be compared: its fields, its files' count and total size. */
function summary(read: Manifest | undefined) {
  if (read === undefined) return undefined;
  return { ...read, files: { count: read.files.length, bytes: fileBytes(read.files) } };
}

describe("reading a manifest a piece at a time", () => {
  it("reads what writeManifest wrote, in its line form, whatever the paths hold", async () => {
    // A pending manifest's nested object (its tree) and a field the reader does not know.
    const value = manifest(TRICKY, { tree: { inode: 12, birth: "x" }, extra: [1, "]"] });
    const path = await written(value);
    const lines = await lineForm(path);
    expect(lines).not.toBe(OTHER_FORM);
    const read = await readManifest(path);
    expect(summary(read)).toEqual(summary(parseManifestText(await readFile(path, "utf8"))));
    expect(read?.files.length).toBe(TRICKY.length);
    expect(fileBytes(read?.files ?? [])).toBe(TRICKY.reduce((sum, file) => sum + file.bytes, 0));
    expect(read).toMatchObject({ etag: value.etag, versionId: "v1", tree: { inode: 12 } });
  });

  it("reads a manifest without files, and one of 200,000, in pieces of 1 MiB", async () => {
    const none = await written(manifest([]));
    expect(await lineForm(none)).not.toBe(OTHER_FORM);
    expect(summary(await readManifest(none))?.files).toEqual({ count: 0, bytes: 0 });
    const many = Array.from({ length: 200_000 }, (_, i) => ({
      path: `train/n${i % 1000}/n${i}_${"x".repeat(i % 40)}.JPEG`,
      bytes: i * 3,
    }));
    const path = await written(manifest(many));
    expect(await lineForm(path)).not.toBe(OTHER_FORM);
    expect(summary(await readManifest(path))?.files).toEqual({
      count: 200_000,
      bytes: 3 * ((199_999 * 200_000) / 2),
    });
  });

  it("reads a manifest of an older dsfetch (one JSON text, files in the middle) whole", async () => {
    const value = manifest(TRICKY);
    const { files, ...rest } = value;
    const path = join(dir, "older.json");
    writeFileSync(path, JSON.stringify({ files, ...rest }, null, 2));
    expect(await lineForm(path)).toBe(OTHER_FORM);
    const read = await readManifest(path);
    expect(read?.files).toEqual(TRICKY);
    expect(read?.etag).toBe(value.etag);
  });

  it("gives the whole parse's verdict on every truncation and on damaged bytes", async () => {
    const text = await readFile(await written(manifest(TRICKY.slice(0, 3))), "utf8");
    const cases: string[] = [];
    for (let cut = 0; cut < text.length; cut++) cases.push(text.slice(0, cut));
    // One garbage character at each offset, in turn (every one at each offset: 5x the time).
    const garbage = ["x", '"', ",", "\n", "\\", "]", "}", "9", " ", "-"];
    for (let at = 0; at < text.length; at++) {
      const g = garbage[at % garbage.length] as string;
      cases.push(`${text.slice(0, at)}${g}${text.slice(at + 1)}`);
    }
    cases.push(
      `${text}\n`,
      `${text}x`,
      `\ufeff${text}`,
      text.replace(/,\n {4}\{/g, ", {"),
      // No comma between two files; one after the last.
      text.replace("},\n    {", "}\n    {"),
      text.replace("}\n  ]", "},\n  ]"),
      text.replace('"bytes":1', '"bytes":1.5'),
      text.replace('"bytes":1', '"bytes":1e3'),
      text.replace('"bytes":1', '"bytes":99999999999999999'),
    );
    let accepted = 0;
    let differentFromWritten = 0;
    const path = join(dir, "damaged.json");
    for (const damaged of cases) {
      writeFileSync(path, damaged);
      const expected = summary(parseManifestText(damaged));
      expect({ damaged, read: summary(await readManifest(path)) }).toEqual({
        damaged,
        read: expected,
      });
      if (expected !== undefined) accepted += 1;
      if (expected !== undefined && damaged !== text) differentFromWritten += 1;
    }
    // The cases include manifests both parsers accept, changed (a size's digit, a path's
    // letter, a trailing line feed) and not: the comparison above is not vacuous.
    expect(accepted).toBeGreaterThan(20);
    expect(differentFromWritten).toBeGreaterThan(20);
  });

  it("refuses a manifest whose file line the whole parse accepts but whose size is no size", async () => {
    const path = join(dir, "negative.json");
    const text = (
      await readFile(await written(manifest([{ path: "a", bytes: 1 }])), "utf8")
    ).replace('"bytes":1}', '"bytes":-1}');
    writeFileSync(path, text);
    expect(await readManifest(path)).toBeUndefined();
  });
});
