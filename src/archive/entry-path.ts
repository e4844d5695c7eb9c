/**
 * Archive entry names → safe relative paths under the dataset directory, or a reason to
 * refuse the whole archive. Pure. Every refusal here answers a known class of attack:
 * - absolute paths, "..", drive letters, backslashes: path traversal ("zip slip",
 *   CWE-22; node-tar GHSA-r6q2-hw4h-h46w, GHSA-f5x3-32g6-xq36)
 * - NUL and control characters: names that mean one thing to us and another to the kernel
 * - Unicode normalisation and case collisions: two entries that land on one file on
 *   macOS/Windows-backed shares (node-tar GHSA-qq89-hq3f-393p)
 */
import type { ExtractLimits } from "./limits.ts";

export type EntryPathResult =
  | { ok: true; path: string; segments: string[] }
  | { ok: false; reason: string };

// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;

/**
 * Checks one entry name. A trailing "/" (directories) and "./" prefixes are allowed and
 * removed; the result uses "/" separators and never starts with "/" or contains "..".
 */
export function checkEntryPath(name: string, limits: ExtractLimits): EntryPathResult {
  if (name === "") return { ok: false, reason: "an entry has an empty name" };
  if (CONTROL_CHARACTERS.test(name))
    return {
      ok: false,
      reason: `the name ${JSON.stringify(name)} contains a NUL or control character`,
    };
  if (name.includes("\\"))
    return { ok: false, reason: `the name ${JSON.stringify(name)} contains a backslash` };
  if (name.startsWith("/"))
    return { ok: false, reason: `the name ${JSON.stringify(name)} is an absolute path` };
  if (/^[A-Za-z]:/.test(name))
    return { ok: false, reason: `the name ${JSON.stringify(name)} starts with a drive letter` };
  if (Buffer.byteLength(name, "utf8") > limits.maxPathBytes) {
    return { ok: false, reason: `a name is longer than ${limits.maxPathBytes} bytes` };
  }
  const segments = name.split("/").filter((segment, index, all) => {
    // "a//b" and a trailing "/" produce empty segments; "./" is harmless noise.
    if (segment === "" && (index === all.length - 1 || index > 0)) return false;
    return segment !== ".";
  });
  if (segments.length === 0)
    return { ok: false, reason: `the name ${JSON.stringify(name)} names the dataset root itself` };
  for (const segment of segments) {
    if (segment === "..")
      return { ok: false, reason: `the name ${JSON.stringify(name)} goes up with ".."` };
    if (segment === "")
      return { ok: false, reason: `the name ${JSON.stringify(name)} has an empty path segment` };
    if (Buffer.byteLength(segment, "utf8") > 255)
      return { ok: false, reason: "a path component is longer than 255 bytes" };
  }
  if (segments.length > limits.maxDepth) {
    return {
      ok: false,
      reason: `the name ${JSON.stringify(name.slice(0, 80))}… is deeper than ${limits.maxDepth} levels`,
    };
  }
  return { ok: true, path: segments.join("/"), segments };
}

/**
 * Detects two entries that are one file on a case-insensitive or normalising filesystem.
 *
 * Keyed by a 30-bit hash of the folded name (a small integer: no string per entry beyond
 * the path the extractor keeps anyway), with the earlier path as the value and a list on a
 * hash collision, each confirmed by folding the earlier path again. Keyed by the folded
 * name itself, the guard held ~93 B per entry: 93 MB of an archive of 1,000,000 files
 * (util/packed-files.ts). The hash is seeded per guard, so an archive cannot be built to
 * put its names on one hash (which would make every check walk one long list).
 */
export class CollisionGuard {
  private readonly seen = new Map<number, string | string[]>();
  private readonly hash: (key: string) => number;

  /** @param hash for tests (names that share a hash); a seeded hash otherwise */
  constructor(hash?: (key: string) => number) {
    const seed = (Math.random() * 0x100000000) >>> 0;
    this.hash = hash ?? ((key) => hashOf(key, seed));
  }

  /** Returns the earlier entry this one collides with, or undefined; records it otherwise. */
  check(path: string, isDirectory: boolean): string | undefined {
    const key = fold(path);
    const hash = this.hash(key);
    const recorded = isDirectory ? `${path}/` : path;
    const slot = this.seen.get(hash);
    if (slot === undefined) {
      this.seen.set(hash, recorded);
      return undefined;
    }
    const earlierOnes = typeof slot === "string" ? [slot] : slot;
    for (const earlier of earlierOnes) {
      const earlierPath = earlier.endsWith("/") ? earlier.slice(0, -1) : earlier;
      if (fold(earlierPath) !== key) continue;
      // The same directory listed twice (explicitly and implied) is harmless.
      if (isDirectory && earlier === recorded) return undefined;
      return earlierPath;
    }
    if (typeof slot === "string") this.seen.set(hash, [slot, recorded]);
    else slot.push(recorded);
    return undefined;
  }

  /** Whether a file recorded so far is `path` on a case-insensitive or normalising filesystem. */
  isFile(path: string): boolean {
    const key = fold(path);
    const slot = this.seen.get(this.hash(key));
    if (slot === undefined) return false;
    for (const earlier of typeof slot === "string" ? [slot] : slot) {
      if (!earlier.endsWith("/") && fold(earlier) === key) return true;
    }
    return false;
  }
}

/** The name two entries share when they are one file on a case-insensitive or normalising filesystem. */
export function fold(path: string): string {
  return path.normalize("NFC").toLowerCase();
}

/**
 * Values by path, looked up one path segment at a time, as a symbolic link's target is
 * resolved: a walk keeps the hash of each prefix of its path, so a step costs the length of
 * one segment, and a whole path is compared only when its hash matches. Joining the walked
 * path for every step cost the depth times the target per link, minutes for links 60 levels
 * deep (review, 2026-12-06). Keyed by fold(), as CollisionGuard: where "P" is the link "p",
 * "P/.." must resolve through it (review, 2026-12-06). Seeded per map, as CollisionGuard.
 */
export class FoldedPathMap<V> {
  private readonly byHash = new Map<number, { key: string; value: V }[]>();
  /** The hash of the empty path (the root), to extend with step(). */
  readonly root = (Math.random() * 0x40000000) >>> 0;

  /** The hash of the path whose hash is `hash`, extended by `segment`. */
  step(hash: number, segment: string): number {
    return hashOf(fold(segment), hash);
  }

  set(path: string, value: V): void {
    const hash = path.split("/").reduce((at, segment) => this.step(at, segment), this.root);
    const key = fold(path);
    const slot = this.byHash.get(hash);
    const earlier = slot?.find((entry) => entry.key === key);
    if (earlier !== undefined) earlier.value = value;
    else if (slot !== undefined) slot.push({ key, value });
    else this.byHash.set(hash, [{ key, value }]);
  }

  /** The value of the path with this hash, `path()` making the path only on a hash match. */
  get(hash: number, path: () => string): V | undefined {
    const slot = this.byHash.get(hash);
    if (slot === undefined) return undefined;
    const key = fold(path());
    return slot.find((entry) => entry.key === key)?.value;
  }
}

/** A seeded 30-bit hash of `text`'s UTF-16 code units (murmur-style mixing). */
function hashOf(text: string, seed: number): number {
  let hash = seed ^ text.length;
  for (let i = 0; i < text.length; i++) {
    hash = Math.imul(hash ^ text.charCodeAt(i), 0x5bd1e995);
    hash ^= hash >>> 15;
  }
  hash = Math.imul(hash ^ (hash >>> 13), 0xc2b2ae35);
  hash ^= hash >>> 16;
  return hash & 0x3fffffff;
}

/**
 * "./", ".", "././": an archive's root directory, which is the destination itself. Its
 * directory entry is skipped by both extractors (bsdtar writes one first, in tars and zips).
 */
export function isRootName(name: string): boolean {
  if (name.startsWith("/")) return false;
  return name.split("/").every((segment) => segment === "" || segment === ".");
}
