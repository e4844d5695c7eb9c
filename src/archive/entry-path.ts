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

/** Detects two entries that are one file on a case-insensitive or normalising filesystem. */
export class CollisionGuard {
  private readonly seen = new Map<string, string>();

  /** Returns the earlier entry this one collides with, or undefined; records it otherwise. */
  check(path: string, isDirectory: boolean): string | undefined {
    const key = path.normalize("NFC").toLowerCase();
    const earlier = this.seen.get(key);
    if (earlier !== undefined) {
      // The same directory listed twice (explicitly and implied) is harmless.
      if (isDirectory && earlier === `${path}/`) return undefined;
      return earlier.replace(/\/$/, "");
    }
    this.seen.set(key, isDirectory ? `${path}/` : path);
    return undefined;
  }
}
