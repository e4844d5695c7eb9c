/**
 * Volume sizes (SPEC §1): an integer or decimal with an SI suffix K M G T (base 10) or
 * Ki Mi Gi Ti (base 2); a bare number is bytes. Pure.
 */

export const SIZE_FORMS =
  'a positive number of bytes (e.g. 1073741824) or a number with one of the suffixes K, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024), with no space: "500M", "10Gi", "1.5T"';

const MULTIPLIERS: Readonly<Record<string, number>> = {
  "": 1,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
};

const SIZE_PATTERN = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$/;

/** Largest size accepted: 8 PiB is far beyond any volume and every byte count below it is exact. */
const MAX_BYTES = Number.MAX_SAFE_INTEGER;

export type SizeResult = { ok: true; bytes: number } | { ok: false; reason: string };

/** Parses a size given as a string or a JSON number. Sizes round up to whole bytes. */
export function parseSize(value: unknown): SizeResult {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || !Number.isInteger(value) || value <= 0) {
      return { ok: false, reason: `${String(value)} is not a positive whole number of bytes` };
    }
    if (value > MAX_BYTES) return { ok: false, reason: `${value} bytes is larger than 8 PiB` };
    return { ok: true, bytes: value };
  }
  if (typeof value !== "string") {
    return { ok: false, reason: `a size must be a string or a number, not ${describeType(value)}` };
  }
  const match = SIZE_PATTERN.exec(value);
  if (!match) return { ok: false, reason: `${JSON.stringify(value)} is not a size` };
  const [, digits = "", suffix = ""] = match;
  if (suffix === "" && digits.includes(".")) {
    return { ok: false, reason: `${JSON.stringify(value)} is not a whole number of bytes` };
  }
  const multiplier = BigInt(MULTIPLIERS[suffix] ?? 1);
  // Integer arithmetic: "4.03K" is exactly 4030 bytes, which floating point gets wrong.
  const [whole = "0", fraction = ""] = digits.split(".");
  const scale = 10n ** BigInt(fraction.length);
  const scaled = BigInt(whole + fraction) * multiplier;
  const exact = (scaled + scale - 1n) / scale; // round up to whole bytes
  if (exact === 0n) return { ok: false, reason: `${JSON.stringify(value)} is zero` };
  if (exact > BigInt(MAX_BYTES)) {
    return { ok: false, reason: `${JSON.stringify(value)} is larger than 8 PiB` };
  }
  return { ok: true, bytes: Number(exact) };
}

/** Human-readable binary size for messages: 5368709120 → "5.0 GiB". */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${Math.round(bytes)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function describeType(value: unknown): string {
  if (value === null) return "null";
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `a ${typeof value}`;
}
