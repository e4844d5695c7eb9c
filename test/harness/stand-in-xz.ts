// Stand-in `xz` programs for the tests: dsfetch runs an `xz` only when its `--version` says
// XZ Utils (src/archive/decompress.ts, IDENTITY), so each stand-in answers that first.

/** A shell script for a stand-in `xz`: answers `--version` as XZ Utils, else runs `body`. */
export function standInXzScript(body: string): string {
  return `#!/bin/sh\n[ "$1" = --version ] && { echo "xz (XZ Utils) 5.4.1, a stand-in"; exit 0; }\n${body}\n`;
}
