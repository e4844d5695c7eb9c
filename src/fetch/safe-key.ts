/**
 * Object keys of a folder dataset become paths under the dataset directory. A key that
 * would land outside it, or that cannot be a file name, is rejected before any download
 * (the folder analogue of archive path traversal, CWE-22). Pure.
 */

// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
const MAX_SEGMENT_BYTES = 255;

/** Why a relative path is unsafe, or undefined when it is fine. */
export function unsafeRelativePath(relativePath: string): string | undefined {
  if (relativePath === "") return "it is empty";
  if (relativePath.startsWith("/")) return "it is absolute (starts with /)";
  if (CONTROL_CHARACTERS.test(relativePath)) return "it contains a control character";
  // A key ending in "/" that holds bytes (a directory marker holds none and is skipped): the
  // file would have no name. Said as such, not as an empty "//" segment (exploratory review).
  if (relativePath.endsWith("/")) {
    return 'it ends with "/" yet holds bytes (a file of no name: a directory marker holds none)';
  }
  const segments = relativePath.split("/");
  for (const segment of segments) {
    if (segment === "") return "it has an empty path segment (//)";
    if (segment === "." || segment === "..") return `it has a "${segment}" path segment`;
    if (Buffer.byteLength(segment, "utf8") > MAX_SEGMENT_BYTES) {
      return `a path segment is longer than ${MAX_SEGMENT_BYTES} bytes`;
    }
  }
  return undefined;
}

/**
 * The first pair of paths where one would have to be both a file and a directory
 * (keys "a" and "a/b"), or undefined.
 */
export function fileDirectoryConflict(paths: readonly string[]): [string, string] | undefined {
  const files = new Set(paths);
  for (const path of paths) {
    let slash = path.indexOf("/");
    while (slash !== -1) {
      const parent = path.slice(0, slash);
      if (files.has(parent)) return [parent, path];
      slash = path.indexOf("/", slash + 1);
    }
  }
  return undefined;
}
