/**
 * The datasets array (SPEC §1): JSON text (JSON5 tolerated: comments, trailing commas) →
 * frozen DatasetSpecs. Pure: the text and environment are passed in.
 */
import JSON5 from "json5";
import { DsfetchError } from "../errors.ts";
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
    throw configError(`${source}: the datasets array is larger than 16 MiB`);
  }
  if (text.trim() === "") {
    throw configError(`${source}: the datasets array is empty (no text)`, ARRAY_FORMS);
  }
  let value: unknown;
  try {
    value = quietly(() => JSON5.parse(text.replace(/^\uFEFF/, "")));
  } catch (error) {
    const detail = error instanceof Error ? error.message.replace(/^JSON5: /, "") : String(error);
    throw configError(`${source}: not valid JSON: ${detail}`, ARRAY_FORMS);
  }
  // Its keys are decoded by JSON5 too, which warns on the console as above.
  const duplicate = quietly(() => firstDuplicateKey(text.replace(/^\uFEFF/, "")));
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
  if (list.length > MAX_DATASETS) {
    throw configError(
      `${source}: ${list.length} datasets is more than the limit of ${MAX_DATASETS}`,
    );
  }
  const specs = list.map((entry, index) => {
    try {
      return parseDatasetEntry(entry, index, env);
    } catch (error) {
      throw withSource(error, source);
    }
  });
  const seen = new Map<string, number>();
  for (const spec of specs) {
    // Names become directories: compare as a case-insensitive filesystem would.
    const key = spec.name.toLowerCase();
    const first = seen.get(key);
    if (first !== undefined) {
      throw new DsfetchError(
        "CONFIG_INVALID",
        `${source}: datasets[${spec.index}] ("${spec.name}"): the name "${spec.name}" is already used by datasets[${first}]; names must be unique (case-insensitively)`,
        { dataset: spec.name, hint: 'give one of them a different "name"' },
      );
    }
    seen.set(key, spec.index);
  }
  return Object.freeze(specs);
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
