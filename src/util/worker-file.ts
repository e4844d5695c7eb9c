/**
 * Where a worker thread's program is: the file `<name>` beside the module that starts it,
 * `.ts` when run from the sources (development, tests: Node strips the types), `.js` when
 * built. The `dsfetch` command runs from `dist/bundle/` (scripts/bundle.ts), where all code
 * shares the bundle's URL and every worker is bundled as `dist/bundle/<name>.js`: the same
 * rule finds it there.
 */
export function workerFile(name: string, callerUrl: string): URL {
  return new URL(`./${name}${callerUrl.endsWith(".ts") ? ".ts" : ".js"}`, callerUrl);
}

/** The package's package.json, two levels up from src/util/, dist/util/ and dist/bundle/. */
export const PACKAGE_JSON = new URL("../../package.json", import.meta.url);
