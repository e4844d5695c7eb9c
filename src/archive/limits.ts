/**
 * Bounds on what one archive may expand to (SPEC §5): archives are hostile input, and a
 * 10 KiB zip bomb must not fill a volume. The volume size bounds total bytes where there is
 * one. Exceeding a bound fails the dataset with nothing published.
 */
export interface ExtractLimits {
  /** Total bytes of all extracted files. */
  readonly maxBytes: number;
  /** Files, directories and links, together. */
  readonly maxEntries: number;
  /** Path components of one entry. */
  readonly maxDepth: number;
  /** Bytes of one entry's whole path. */
  readonly maxPathBytes: number;
  /**
   * Characters of every entry's path and link target together (default MAX_NAME_CHARACTERS):
   * the extraction keeps them all (the file list becomes the manifest), so a few megabytes of
   * .tar.gz with 100,000 links to 4 KB targets took 1.4 GiB of memory, and long names made a
   * manifest too long for a JavaScript string (review, 2026-12-05).
   */
  readonly maxNameCharacters?: number | undefined;
  /**
   * What sets maxBytes, for messages: "volume" (an ephemeral volume's size) or "setting"
   * (DSFETCH_MAX_EXPANDED_SIZE, on shared storage). Absent: said as a volume's.
   */
  readonly maxBytesFrom?: "volume" | "setting" | undefined;
}

/** The bound on expanded bytes as messages name it, and what to do about it. */
export function expandedLimitText(limits: ExtractLimits): { limit: string; hint: string } {
  if (limits.maxBytesFrom === "setting") {
    return {
      limit: `the limit of ${limits.maxBytes} bytes (DSFETCH_MAX_EXPANDED_SIZE)`,
      hint: "raise DSFETCH_MAX_EXPANDED_SIZE if the archive is meant to expand that much, or split the archive",
    };
  }
  return {
    limit: `the limit of ${limits.maxBytes} bytes (its volume's size)`,
    hint: "give the dataset a larger volume (volumeOptions.size), or split the archive",
  };
}

/** 128 Mi characters: ~1.3 million entries of 100-character paths (ImageNet's train set: 1.28M). */
export const MAX_NAME_CHARACTERS = 128 * 1024 * 1024;

export const DEFAULT_LIMITS: ExtractLimits = Object.freeze({
  maxBytes: 1024 * 2 ** 30, // 1 TiB on shared storage; the volume size on ephemeral volumes
  maxEntries: 10_000_000,
  maxDepth: 64,
  maxPathBytes: 4096,
});
