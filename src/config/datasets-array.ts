/**
 * The datasets array (SPEC §1): JSON text (JSON5 tolerated: comments, trailing commas) →
 * frozen DatasetSpecs. Pure: the text and environment are passed in.
 */
import JSON5 from "json5";
import { DsfetchError } from "../errors.ts";
import { sharedDirName } from "../volumes/layout.ts";
import { parseDatasetEntry } from "./dataset.ts";
import { firstDuplicateKey } from "./duplicate-keys.ts";
import { describeType } from "./size.ts";
import { closest } from "./suggest.ts";
import type { DatasetSpec } from "./types.ts";

/** Bounds on hostile configs: far above any real one, far below what could hurt us. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
export const MAX_DATASETS = 10_000;

const ARRAY_FORMS = '[{ "uri": "s3://bucket/key" }, …] (or { "datasets": [ … ] })';

export function parseDatasetsText(
  text: string,
  source: string,
  env: Readonly<Record<string, string | undefined>>,
): readonly DatasetSpec[] {
  if (Buffer.byteLength(text, "utf8") > MAX_CONFIG_BYTES) {
    throw new DsfetchError(
      "CONFIG_INVALID",
      `${source}: the datasets array is larger than 16 MiB`,
      {
        hint: SPLIT_HINT,
      },
    );
  }
  if (text.trim() === "") {
    throw configError(`${source}: the datasets array is empty (no text)`, ARRAY_FORMS);
  }
  const body = text.replace(/^\uFEFF/, "");
  let value: unknown;
  try {
    value = parseJson5(body);
  } catch (error) {
    const detail = error instanceof Error ? error.message.replace(/^JSON5: /, "") : String(error);
    throw configError(`${source}: not valid JSON: ${detail}`, ARRAY_FORMS);
  }
  // Before the key scan, which reads the whole text again: too many entries is said at once.
  checkCount(arrayIn(value), source);
  // Its keys are decoded by JSON5 too, which warns on the console (quietly, below).
  const duplicate = quietly(() => firstDuplicateKey(body));
  if (duplicate !== undefined) {
    throw new DsfetchError(
      "CONFIG_INVALID",
      `${source}: line ${duplicate.line}: the key ${JSON.stringify(duplicate.key)} is given twice in one object (JSON keeps only the last one)`,
      { hint: "remove one of the two, or put each value in its own dataset entry" },
    );
  }
  return parseDatasetsValue(value, source, env);
}

export function parseDatasetsValue(
  value: unknown,
  source: string,
  env: Readonly<Record<string, string | undefined>>,
): readonly DatasetSpec[] {
  const list = unwrap(value, source);
  if (list.length === 0) {
    throw configError(`${source}: the datasets array has no datasets`, ARRAY_FORMS);
  }
  checkCount(list, source);
  const specs = list.map((entry, index) => {
    try {
      return parseDatasetEntry(entry, index, env);
    } catch (error) {
      throw withSource(error, source);
    }
  });
  rejectSharedPaths(specs, source);
  return Object.freeze(specs);
}

/**
 * Two entries may not stage to one path. Names become directories (`<mount-root>/<name>`,
 * `<ephemeral-root>/<name>`): unique, compared as a case-insensitive filesystem would (names
 * are ASCII, so no Unicode normalisation can join two). In shared storage the directory is
 * `<name>-<etag>` for a pinned dataset, so `"x"` pinned to E and `"x-E"` unpinned are one
 * directory though their names differ: both were listed there by plan, and fetch gave one
 * PATH_TAKEN or, from one source, staged the unpinned one's newer bytes into the pinned one's
 * directory (exploratory test, 2026-12-07). Compared among shared datasets only: an
 * ephemeral dataset's directory is its name, on its own volume.
 */
function rejectSharedPaths(specs: readonly DatasetSpec[], source: string): void {
  const names = new Map<string, DatasetSpec>();
  const dirs = new Map<string, DatasetSpec>();
  for (const spec of specs) {
    const key = spec.name.toLowerCase();
    const first = names.get(key);
    if (first !== undefined) {
      throw new DsfetchError(
        "CONFIG_INVALID",
        `${source}: datasets[${spec.index}] ("${spec.name}"): the name "${spec.name}" is already used by datasets[${first.index}]; names must be unique (case-insensitively)`,
        { dataset: spec.name, hint: 'give one of them a different "name"' },
      );
    }
    names.set(key, spec);
    if (spec.volume.kind !== "shared") continue;
    const dir = sharedDirName(spec.name, spec.etag);
    const other = dirs.get(dir.toLowerCase());
    if (other !== undefined) throw sharedDirError(other, spec, source);
    dirs.set(dir.toLowerCase(), spec);
  }
}

function sharedDirError(first: DatasetSpec, second: DatasetSpec, source: string): DsfetchError {
  const describe = (spec: DatasetSpec) =>
    `datasets[${spec.index}] ("${spec.name}"${spec.etag === undefined ? ", no etag" : `, etag ${spec.etag}`})`;
  const firstDir = sharedDirName(first.name, first.etag);
  const secondDir = sharedDirName(second.name, second.etag);
  const path = `<storage-root>/<team>/data/${firstDir}`;
  const where =
    firstDir === secondDir
      ? path
      : `${path} (and "${secondDir}", the same directory on a case-insensitive filesystem)`;
  return new DsfetchError(
    "CONFIG_INVALID",
    `${source}: ${describe(first)} and ${describe(second)} would both be stored at ${where} in shared storage (a dataset's directory there is its name, followed by "-" and its etag when it has one); each dataset needs a directory of its own`,
    {
      dataset: second.name,
      expected: "a directory of its own in shared storage for each dataset",
      found: `datasets[${first.index}] and datasets[${second.index}] both at ${path}`,
      hint: `give one of them a different "name" (one that does not end in "-" and the other's etag)`,
    },
  );
}

/**
 * JSON5.parse, but JSON first: most configs are plain JSON, which the built-in parser reads
 * 4-5 times faster (a 16 MiB array: ~0.7 s against ~3.6 s). JSON5 is a superset of JSON giving
 * plain JSON the same value, and its messages are the ones shown for text JSON refuses.
 */
function parseJson5(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return quietly(() => JSON5.parse(text));
  }
}

function checkCount(list: readonly unknown[] | undefined, source: string): void {
  if (list !== undefined && list.length > MAX_DATASETS) {
    throw new DsfetchError(
      "CONFIG_INVALID",
      `${source}: ${list.length} datasets is more than the limit of ${MAX_DATASETS}`,
      { hint: SPLIT_HINT },
    );
  }
}

/** The datasets array of a well-formed top level (unwrap below says what is off in others). */
function arrayIn(value: unknown): readonly unknown[] | undefined {
  if (Array.isArray(value)) return value;
  if (typeof value !== "object" || value === null || Object.keys(value).length !== 1) {
    return undefined;
  }
  const datasets = (value as { datasets?: unknown }).datasets;
  return Array.isArray(datasets) ? datasets : undefined;
}

function unwrap(value: unknown, source: string): unknown[] {
  if (Array.isArray(value)) return value;
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value);
    const datasets = (value as Record<string, unknown>).datasets;
    if (keys.length === 1 && Array.isArray(datasets)) return datasets;
    if (keys.includes("uri") || keys.includes("url")) {
      throw configError(
        `${source}: the top level is a single dataset object; wrap it in an array`,
        ARRAY_FORMS,
      );
    }
    // The wrapper form, not quite: say what is off in it, not "not an object" (review).
    if (datasets !== undefined && !Array.isArray(datasets)) {
      throw configError(
        `${source}: "datasets" must be an array of datasets, not ${describeType(datasets)}`,
        ARRAY_FORMS,
      );
    }
    if (datasets !== undefined) {
      const others = keys.filter((key) => key !== "datasets").map((key) => JSON.stringify(key));
      throw configError(
        `${source}: the top level object may hold only "datasets", not also ${others.join(", ")}`,
        ARRAY_FORMS,
      );
    }
    const near = keys.find((key) => closest(key, ["datasets"]) !== undefined);
    if (near !== undefined) {
      throw configError(
        `${source}: the top level object has ${JSON.stringify(near)}: did you mean "datasets"?`,
        ARRAY_FORMS,
      );
    }
  }
  throw configError(
    `${source}: the top level must be an array of datasets, not ${describeType(value)}`,
    ARRAY_FORMS,
  );
}

/** What to do about a datasets array over a bound (MAX_DATASETS, 16 MiB). */
export const SPLIT_HINT =
  "split the datasets into several arrays and run dsfetch on each (each run stages its own), or stage a whole folder as one dataset (s3://bucket/prefix/)";

function configError(message: string, accepted?: string): DsfetchError {
  return new DsfetchError("CONFIG_INVALID", message, {
    expected: accepted,
    hint: accepted === undefined ? undefined : `expected: ${accepted}`,
  });
}

/** Prefixes an entry's error with where the array came from (a file, stdin, the variable). */
function withSource(error: unknown, source: string): unknown {
  if (!(error instanceof DsfetchError)) return error;
  return new DsfetchError(error.code, `${source}: ${error.message}`, {
    dataset: error.dataset,
    expected: error.expected,
    found: error.found,
    hint: error.hint,
  });
}

/**
 * json5 warns through console.warn about U+2028/U+2029 in strings; library code never prints
 * (and that output would bypass the CLI's redactor), so the warning is silenced here.
 */
function quietly<T>(parse: () => T): T {
  const host = globalThis.console;
  const warn = host.warn;
  host.warn = () => {};
  try {
    return parse();
  } finally {
    host.warn = warn;
  }
}
