/** The environment variable that gives a dataset's path to the job: DSFETCH_PATH_<NAME>. Pure. */
export function datasetEnvName(name: string): string {
  return `DSFETCH_PATH_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
}

/**
 * Dataset names that map to the same variable ("a.b" and "a-b" are both DSFETCH_PATH_A_B):
 * the first pair found, or undefined. Names are unique case-insensitively, not up to "_".
 */
export function envNameClash(
  names: readonly string[],
): { readonly variable: string; readonly names: readonly [string, string] } | undefined {
  const seen = new Map<string, string>();
  for (const name of names) {
    const variable = datasetEnvName(name);
    const first = seen.get(variable);
    if (first !== undefined) return { variable, names: [first, name] };
    seen.set(variable, name);
  }
  return undefined;
}
