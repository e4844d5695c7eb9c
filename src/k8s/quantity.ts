/**
 * Byte counts as Kubernetes resource quantities. Pure.
 *
 * Exact only: the largest binary suffix (Ki Mi Gi Ti Pi Ei) that divides the count and the
 * largest decimal one (k M G T P E), whichever is shorter (binary on a tie), else plain
 * bytes. 10Gi → "10Gi", 1.5G → "1500M", 2T → "2T", 1536 → "1536". Never rounded: the claim
 * is exactly what the dataset was promised.
 */

const BINARY: ReadonlyArray<readonly [string, bigint]> = [
  ["Ei", 2n ** 60n],
  ["Pi", 2n ** 50n],
  ["Ti", 2n ** 40n],
  ["Gi", 2n ** 30n],
  ["Mi", 2n ** 20n],
  ["Ki", 2n ** 10n],
];

// Kubernetes spells kilo with a lowercase "k" (a capital "K" is not a valid quantity suffix).
const DECIMAL: ReadonlyArray<readonly [string, bigint]> = [
  ["E", 10n ** 18n],
  ["P", 10n ** 15n],
  ["T", 10n ** 12n],
  ["G", 10n ** 9n],
  ["M", 10n ** 6n],
  ["k", 10n ** 3n],
];

export function bytesToQuantity(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new RangeError(`${bytes} is not a positive whole number of bytes`);
  }
  const value = BigInt(bytes);
  let best = String(value);
  for (const table of [BINARY, DECIMAL]) {
    const exact = table.find(([, unit]) => value % unit === 0n);
    if (exact === undefined) continue;
    const text = `${value / exact[1]}${exact[0]}`;
    if (text.length < best.length) best = text;
  }
  return best;
}
