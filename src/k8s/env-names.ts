/** The environment variable that gives a dataset's path to the job: DSFETCH_PATH_<NAME>. Pure. */
export function datasetEnvName(name: string): string {
  return `DSFETCH_PATH_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
}
