// Stand-ins for node:fs functions in tests (slow creates, failing closes), seen by every
// module — ES imports included, through syncBuiltinESMExports — and always put back.
import fs from "node:fs";
import { syncBuiltinESMExports } from "node:module";

type Fs = typeof fs;
type Replacements = Partial<Record<keyof Fs, unknown>>;

/**
 * Runs `work` with the functions `replace` returns in place of node:fs's (it gets the real
 * module to call through), then restores the originals, whatever `work` did.
 */
export async function withFs<T>(
  replace: (real: Fs) => Replacements,
  work: () => Promise<T>,
): Promise<T> {
  const replacements = replace({ ...fs });
  const saved: Replacements = {};
  for (const name of Object.keys(replacements) as (keyof Fs)[]) saved[name] = fs[name];
  Object.assign(fs, replacements);
  syncBuiltinESMExports();
  try {
    return await work();
  } finally {
    Object.assign(fs, saved);
    syncBuiltinESMExports();
  }
}

/** `fs.open` answering `ms` later (storage where a create is a round trip to a server). */
export function slowOpens(ms: number): (real: Fs) => Replacements {
  return (real) => ({
    open: (...args: unknown[]) =>
      setTimeout(() => (real.open as (...a: unknown[]) => void)(...args), ms),
  });
}
