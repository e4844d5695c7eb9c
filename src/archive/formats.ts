/**
 * Recognised archive extensions (SPEC §5), matched case-insensitively on an object key.
 * Pure: no I/O. The magic-byte check of the first bytes lives with the extractors.
 */

export type ArchiveFormat = "zip" | "tar" | "tar.gz" | "tar.bz2" | "tar.xz" | "tar.gz2";

interface ExtensionRule {
  readonly extension: string;
  readonly format: ArchiveFormat;
}

// Longest extensions first, so ".tar.gz" wins over ".gz"-less ".tar" checks.
const RULES: readonly ExtensionRule[] = [
  { extension: ".tar.bz2", format: "tar.bz2" },
  { extension: ".tar.gz2", format: "tar.gz2" },
  { extension: ".tar.gz", format: "tar.gz" },
  { extension: ".tar.xz", format: "tar.xz" },
  { extension: ".tbz2", format: "tar.bz2" },
  { extension: ".tbz", format: "tar.bz2" },
  { extension: ".tgz", format: "tar.gz" },
  { extension: ".txz", format: "tar.xz" },
  { extension: ".tar", format: "tar" },
  { extension: ".zip", format: "zip" },
];

export const ARCHIVE_EXTENSIONS: readonly string[] = RULES.map((rule) => rule.extension);

export interface ArchiveMatch {
  readonly format: ArchiveFormat;
  /** The extension as written in the key (original case). */
  readonly extension: string;
  /** The file name without the extension. */
  readonly stem: string;
}

/** The archive format a file name denotes, or undefined for a plain file. */
export function archiveFormatOf(fileName: string): ArchiveMatch | undefined {
  const lower = fileName.toLowerCase();
  for (const rule of RULES) {
    if (lower.endsWith(rule.extension) && lower.length > rule.extension.length) {
      const cut = fileName.length - rule.extension.length;
      return {
        format: rule.format,
        extension: fileName.slice(cut),
        stem: fileName.slice(0, cut),
      };
    }
  }
  return undefined;
}
