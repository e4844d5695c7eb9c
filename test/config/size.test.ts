import { describe, expect, it } from "vitest";
import { parseSize, SIZE_FORMS } from "../../src/config/size.ts";

describe("parseSize accepts", () => {
  it.each<[unknown, number]>([
    // bare bytes
    ["1", 1],
    ["1073741824", 1073741824],
    ["0010", 10],
    // base 10
    ["1K", 1_000],
    ["500M", 500_000_000],
    ["1M", 1_000_000],
    ["10G", 10_000_000_000],
    ["2T", 2_000_000_000_000],
    // base 2
    ["1Ki", 1024],
    ["1Mi", 1_048_576],
    ["5Gi", 5_368_709_120],
    ["10Gi", 10_737_418_240],
    ["1Ti", 1_099_511_627_776],
    // decimals with a suffix
    ["1.5Gi", 1_610_612_736],
    ["0.5Ki", 512],
    ["1.25Mi", 1_310_720],
    ["1.5T", 1_500_000_000_000],
    ["2.5M", 2_500_000],
    ["1.1K", 1_100],
    ["0.001K", 1],
    // sizes round up to whole bytes
    ["0.0001K", 1],
    ["1.0001Ki", 1025],
    // the largest size: 2^53 - 1 bytes (8 PiB), where every byte count is still exact
    ["8191Ti", 8191 * 2 ** 40],
    [String(Number.MAX_SAFE_INTEGER), Number.MAX_SAFE_INTEGER],
    // JSON numbers are bytes
    [1, 1],
    [1073741824, 1073741824],
    [5368709120, 5368709120],
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  ])("%j → %d bytes", (input, bytes) => {
    expect(parseSize(input)).toEqual({ ok: true, bytes });
  });
});

describe("parseSize rejects", () => {
  it.each<[unknown, string]>([
    ["10GB", '"10GB" is not a size'],
    ["10 Gi", '"10 Gi" is not a size'],
    [" 10Gi", '" 10Gi" is not a size'],
    ["10Gi ", '"10Gi " is not a size'],
    ["10gi", '"10gi" is not a size'],
    ["10k", '"10k" is not a size'],
    ["10KiB", '"10KiB" is not a size'],
    ["10B", '"10B" is not a size'],
    ["10P", '"10P" is not a size'],
    ["-1Gi", '"-1Gi" is not a size'],
    ["-1", '"-1" is not a size'],
    ["+5Gi", '"+5Gi" is not a size'],
    ["0", '"0" is zero'],
    ["0Gi", '"0Gi" is zero'],
    ["0.0Gi", '"0.0Gi" is zero'],
    ["000", '"000" is zero'],
    ["1.5", '"1.5" is not a whole number of bytes'],
    ["1.0", '"1.0" is not a whole number of bytes'],
    ["", '"" is not a size'],
    ["Gi", '"Gi" is not a size'],
    ["1e3", '"1e3" is not a size'],
    ["1E3", '"1E3" is not a size'],
    ["NaN", '"NaN" is not a size'],
    ["Infinity", '"Infinity" is not a size'],
    ["0x10", '"0x10" is not a size'],
    [".5Gi", '".5Gi" is not a size'],
    ["5.Gi", '"5.Gi" is not a size'],
    ["1,5Gi", '"1,5Gi" is not a size'],
    ["1_000", '"1_000" is not a size'],
    ["8192Ti", '"8192Ti" is larger than 8 PiB'],
    ["9007199254740993", '"9007199254740993" is larger than 8 PiB'],
    ["99999999999999999999", '"99999999999999999999" is larger than 8 PiB'],
    [0, "0 is not a positive whole number of bytes"],
    [-1, "-1 is not a positive whole number of bytes"],
    [-0, "0 is not a positive whole number of bytes"],
    [1.5, "1.5 is not a positive whole number of bytes"],
    [Number.NaN, "NaN is not a positive whole number of bytes"],
    [Number.POSITIVE_INFINITY, "Infinity is not a positive whole number of bytes"],
    [Number.NEGATIVE_INFINITY, "-Infinity is not a positive whole number of bytes"],
    [2 ** 61, `${2 ** 61} bytes is larger than 8 PiB`],
    [null, "a size must be a string or a number, not null"],
    [{}, "a size must be a string or a number, not an object"],
    [{ size: "10Gi" }, "a size must be a string or a number, not an object"],
    [["10Gi"], "a size must be a string or a number, not an array"],
    [true, "a size must be a string or a number, not a boolean"],
    [10n, "a size must be a string or a number, not a bigint"],
  ])("%s: %s", (input, reason) => {
    expect(parseSize(input)).toEqual({ ok: false, reason });
  });
});

describe("SIZE_FORMS", () => {
  it("lists every accepted suffix and says there is no space", () => {
    for (const part of ["bytes", "K, M, G, T", "Ki, Mi, Gi, Ti", "1000", "1024", "no space"]) {
      expect(SIZE_FORMS).toContain(part);
    }
  });
});
