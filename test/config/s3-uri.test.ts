import { describe, expect, it } from "vitest";
import { ARCHIVE_EXTENSIONS, archiveFormatOf } from "../../src/archive/formats.ts";
import {
  checkName,
  deriveName,
  formatS3Uri,
  parseS3Uri,
  type S3Location,
} from "../../src/config/s3-uri.ts";

/** Parses a URI that must be valid and returns its location. */
function location(uri: string): S3Location {
  const result = parseS3Uri(uri);
  if (!result.ok) throw new Error(`expected ${uri} to parse, got: ${result.reason}`);
  return result.location;
}

const TEN_EXTENSIONS = [
  ".zip",
  ".tar",
  ".tar.bz2",
  ".tar.gz",
  ".tar.gz2",
  ".tar.xz",
  ".tbz",
  ".tbz2",
  ".tgz",
  ".txz",
] as const;

describe("parseS3Uri accepts", () => {
  it.each<[string, S3Location]>([
    [
      "s3://my-bucket/mnist.zip",
      { bucket: "my-bucket", key: "mnist.zip", target: "object-or-prefix" },
    ],
    ["s3://my-bucket", { bucket: "my-bucket", key: "", target: "bucket" }],
    ["s3://my-bucket/", { bucket: "my-bucket", key: "", target: "bucket" }],
    ["s3://bbb/images/", { bucket: "bbb", key: "images/", target: "prefix" }],
    ["s3://bucket/a/b/c", { bucket: "bucket", key: "a/b/c", target: "object-or-prefix" }],
    ["s3://bucket/a/b/", { bucket: "bucket", key: "a/b/", target: "prefix" }],
    ["S3://bucket/key", { bucket: "bucket", key: "key", target: "object-or-prefix" }],
    // legacy us-east-1 bucket names: uppercase and underscores
    [
      "s3://My_Legacy.Bucket/k",
      { bucket: "My_Legacy.Bucket", key: "k", target: "object-or-prefix" },
    ],
    [
      "s3://bucket/My Data/train set.csv",
      { bucket: "bucket", key: "My Data/train set.csv", target: "object-or-prefix" },
    ],
    [
      "s3://bucket/données/été.zip",
      { bucket: "bucket", key: "données/été.zip", target: "object-or-prefix" },
    ],
    ["s3://bucket/a?b#c", { bucket: "bucket", key: "a?b#c", target: "object-or-prefix" }],
    [
      `s3://bucket/${"k".repeat(1024)}`,
      { bucket: "bucket", key: "k".repeat(1024), target: "object-or-prefix" },
    ],
    [
      `s3://${"b".repeat(255)}/k`,
      { bucket: "b".repeat(255), key: "k", target: "object-or-prefix" },
    ],
  ])("%s", (uri, expected) => {
    expect(parseS3Uri(uri)).toEqual({ ok: true, location: expected });
  });
});

describe("parseS3Uri rejects", () => {
  it.each<[string, string]>([
    ["http://bucket/key", 'scheme "http://" is not supported'],
    ["https://bucket.s3.amazonaws.com/key", 'scheme "https://" is not supported'],
    ["gs://bucket/key", 'scheme "gs://" is not supported'],
    ["s3a://bucket/key", 'scheme "s3a://" is not supported'],
    ["file:///tmp/x", 'scheme "file://" is not supported'],
    ["bucket/key", '"bucket/key" is not a URI'],
    ["s3:/bucket/key", '"s3:/bucket/key" is not a URI'],
    ["s3:bucket", '"s3:bucket" is not a URI'],
    ["", '"" is not a URI'],
    [" s3://bucket/key", '" s3://bucket/key" is not a URI'],
    ["s3://", '"s3://" has no bucket name'],
    ["s3:///key", '"s3:///key" has no bucket name'],
    ["s3://a_/key", 'bucket name "a_" is not valid'],
    ["s3://-bucket/key", 'bucket name "-bucket" is not valid'],
    ["s3://bucket-/key", 'bucket name "bucket-" is not valid'],
    ["s3://.bucket/key", 'bucket name ".bucket" is not valid'],
    ["s3://bu..cket/key", 'bucket name "bu..cket" is not valid'],
    ["s3://bu cket/key", 'bucket name "bu cket" is not valid'],
    ["s3://bucket:9000/key", 'bucket name "bucket:9000" is not valid'],
    [`s3://${"b".repeat(256)}/key`, "is not valid (up to 255 letters"],
    ["s3://bucket/a\nb", "the key contains a control character"],
    ["s3://bucket/a\u0000b", "the key contains a control character"],
    ["s3://bucket/a\tb", "the key contains a control character"],
    ["s3://bucket/a\u007fb", "the key contains a control character"],
    ["s3://bucket/a\rb/", "the key contains a control character"],
    [`s3://bucket/${"k".repeat(1025)}`, "the key is longer than 1024 bytes"],
    // 513 two-byte characters: 1026 bytes
    [`s3://bucket/${"é".repeat(513)}`, "the key is longer than 1024 bytes"],
  ])("%j", (uri, reason) => {
    const result = parseS3Uri(uri);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  it("tells the user how to reach an S3-compatible store instead of another scheme", () => {
    const result = parseS3Uri("http://minio:9000/bucket/key");
    expect(result).toEqual({
      ok: false,
      reason: expect.stringContaining('use s3:// with the "endpoint" field'),
    });
  });
});

describe("deriveName", () => {
  it.each<[string, string]>([
    // SPEC §1 examples (the third with a constructed location below: "b" is not a valid bucket)
    ["s3://my-bucket/mnist.zip", "mnist"],
    ["s3://my-bucket", "my-bucket"],
    ["s3://bbb/images/", "images"],
    ["s3://my-bucket/", "my-bucket"],
    // non-archive objects keep their extension
    ["s3://bucket/train.csv", "train.csv"],
    ["s3://bucket/data/model.pt", "model.pt"],
    ["s3://bucket/archive.gz", "archive.gz"],
    ["s3://bucket/archive.bz2", "archive.bz2"],
    ["s3://bucket/archive.xz", "archive.xz"],
    ["s3://bucket/archive.7z", "archive.7z"],
    ["s3://bucket/data.tar.zst", "data.tar.zst"],
    ["s3://bucket/data.zip.csv", "data.zip.csv"],
    ["s3://bucket/datazip", "datazip"],
    ["s3://bucket/datatgz", "datatgz"],
    // only the archive extension is removed
    ["s3://bucket/v1.2.tar.gz", "v1.2"],
    ["s3://bucket/a/b/c/model.tgz", "model"],
    ["s3://bucket/a.zip.zip", "a.zip"],
    // the last non-empty path item
    ["s3://bucket/a/b/", "b"],
    ["s3://bucket/a//", "a"],
    ["s3://bucket//x", "x"],
    // a bare extension has no stem: it is kept as it is (and checkName rejects it)
    ["s3://bucket/.zip", ".zip"],
    // a bucket name may carry an archive extension too
    ["s3://data.zip", "data"],
  ])("%s → %s", (uri, name) => {
    expect(deriveName(location(uri))).toBe(name);
  });

  it("s3://b/images/ → images (SPEC §1 example, one-letter bucket)", () => {
    expect(deriveName({ bucket: "b", key: "images/", target: "prefix" })).toBe("images");
  });

  it.each(TEN_EXTENSIONS)("removes %s in any case", (extension) => {
    expect(deriveName(location(`s3://bucket/data${extension}`))).toBe("data");
    expect(deriveName(location(`s3://bucket/DATA${extension.toUpperCase()}`))).toBe("DATA");
    const mixed = extension.replace(/[a-z]/g, (c, i: number) =>
      i % 2 === 0 ? c.toUpperCase() : c,
    );
    expect(deriveName(location(`s3://bucket/sub/My.Data${mixed}`))).toBe("My.Data");
  });

  it("DATA.TAR.GZ → DATA", () => {
    expect(deriveName(location("s3://bucket/DATA.TAR.GZ"))).toBe("DATA");
  });
});

describe("archive extensions (SPEC §5)", () => {
  it("are exactly the ten of the SPEC", () => {
    expect([...ARCHIVE_EXTENSIONS].sort()).toEqual([...TEN_EXTENSIONS].sort());
  });

  it.each<[string, string, string, string]>([
    ["a.zip", "zip", ".zip", "a"],
    ["a.tar", "tar", ".tar", "a"],
    ["a.tar.bz2", "tar.bz2", ".tar.bz2", "a"],
    ["a.tar.gz", "tar.gz", ".tar.gz", "a"],
    ["a.tar.gz2", "tar.gz2", ".tar.gz2", "a"],
    ["a.tar.xz", "tar.xz", ".tar.xz", "a"],
    ["a.tbz", "tar.bz2", ".tbz", "a"],
    ["a.tbz2", "tar.bz2", ".tbz2", "a"],
    ["a.tgz", "tar.gz", ".tgz", "a"],
    ["a.txz", "tar.xz", ".txz", "a"],
    ["MY.DATA.TAR.GZ", "tar.gz", ".TAR.GZ", "MY.DATA"],
    ["Photos.Zip", "zip", ".Zip", "Photos"],
  ])("%s is %s", (file, format, extension, stem) => {
    expect(archiveFormatOf(file)).toEqual({ format, extension, stem });
  });

  it.each(["a.gz", "a.bz2", "a.csv", "zip", ".zip", "a.tar.zst", "a.rar"])(
    "%s is not an archive",
    (file) => {
      expect(archiveFormatOf(file)).toBeUndefined();
    },
  );
});

describe("checkName", () => {
  it.each([
    "mnist",
    "a",
    "0",
    "_private",
    "My_Data-1.2",
    "x+y=z@w,v",
    "train.csv",
    "a..b",
    "a".repeat(160),
  ])("accepts %j", (name) => {
    expect(checkName(name)).toBeUndefined();
  });

  it.each<[string, string]>([
    ["", "the name is empty"],
    ["a".repeat(161), "the name is longer than 160 characters"],
    [".", '"." is not a single safe path component'],
    ["..", '".." is not a single safe path component'],
    [".hidden", '".hidden" is not a single safe path component'],
    ["-rf", '"-rf" is not a single safe path component'],
    ["a/b", '"a/b" is not a single safe path component'],
    ["/abs", '"/abs" is not a single safe path component'],
    ["a\\b", '"a\\\\b" is not a single safe path component'],
    ["My Data", '"My Data" is not a single safe path component'],
    ["a:b", '"a:b" is not a single safe path component'],
    ["données", '"données" is not a single safe path component'],
    ["a\nb", '"a\\nb" is not a single safe path component'],
    ["a\u0000b", '"a\\u0000b" is not a single safe path component'],
    ["*", '"*" is not a single safe path component'],
  ])("rejects %j", (name, problem) => {
    expect(checkName(name)).toBe(problem);
  });
});

describe("formatS3Uri", () => {
  it.each([
    ["s3://bucket/key", "s3://bucket/key"],
    ["S3://bucket/key", "s3://bucket/key"],
    ["s3://bucket/", "s3://bucket"],
    ["s3://bucket", "s3://bucket"],
    ["s3://bucket/images/", "s3://bucket/images/"],
  ])("%s → %s", (uri, canonical) => {
    expect(formatS3Uri(location(uri))).toBe(canonical);
  });
});
