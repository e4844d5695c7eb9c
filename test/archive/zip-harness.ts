// Shared helpers for the zip tests: a fresh `<tmp>/work/dest` per case, snapshots of what
// exists around it, and a byte-exact comparison of two directory trees.
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { DEFAULT_LIMITS, type ExtractLimits } from "../../src/archive/limits.ts";
import { type ExtractResult, extractZip } from "../../src/archive/zip-extract.ts";
import { DsfetchError, type ErrorCode } from "../../src/errors.ts";
import type { WriteMode } from "../../src/util/write-mode.ts";

export const DATASET = "zipset";

/**
 * How the harness's extractions write files (archive/parallel-writes.ts): the exploit suite
 * runs once per mode, each setting it in its beforeAll.
 */
let writes: WriteMode = "auto";

export function useWrites(mode: WriteMode): void {
  writes = mode;
}

export interface ZipCase {
  /** `<tmp>`: holds the archive and `work/`. */
  readonly tmp: string;
  readonly work: string;
  readonly dest: string;
  readonly zipPath: string;
}

const cases: string[] = [];

export async function newCase(label: string): Promise<ZipCase> {
  const tmp = await mkdtemp(join(tmpdir(), `dsfetch-zip-${label}-`));
  cases.push(tmp);
  const work = join(tmp, "work");
  const dest = join(work, "dest");
  await mkdir(dest, { recursive: true });
  return { tmp, work, dest, zipPath: join(tmp, "archive.zip") };
}

export async function removeCases(): Promise<void> {
  await Promise.all(cases.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
}

/** Every path below `dir` (with a type letter), skipping the subtree at `skip`. */
export async function snapshot(dir: string, skip?: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(current: string, prefix: string): Promise<void> {
    for (const name of (await readdir(current)).sort()) {
      const full = join(current, name);
      const rel = prefix === "" ? name : `${prefix}/${name}`;
      const st = await lstat(full);
      const type = st.isSymbolicLink() ? "l" : st.isDirectory() ? "d" : st.isFile() ? "f" : "?";
      out.push(`${type} ${rel}${type === "f" ? ` ${st.size}` : ""}`);
      if (type === "d" && full !== skip) await walk(full, rel);
    }
  }
  await walk(dir, "");
  return out;
}

export function limits(overrides: Partial<ExtractLimits> = {}): ExtractLimits {
  return { ...DEFAULT_LIMITS, ...overrides };
}

export async function extractBuffer(
  zip: Buffer,
  label: string,
  overrides: Partial<ExtractLimits> = {},
): Promise<{ result: ExtractResult; zipCase: ZipCase }> {
  const zipCase = await newCase(label);
  await writeFile(zipCase.zipPath, zip);
  const result = await extractZip(zipCase.zipPath, zipCase.dest, limits(overrides), DATASET, {
    writes,
  });
  return { result, zipCase };
}

export interface Refusal {
  code: ErrorCode;
  /** The entry the message must name (JSON-quoted in the message). */
  entry?: string;
  /** Other fragments the message must contain. */
  includes?: string[];
  limits?: Partial<ExtractLimits>;
  /** Absolute paths that must not exist afterwards. */
  absent?: string[];
}

/**
 * Writes the archive to `<tmp>/archive.zip`, extracts into `<tmp>/work/dest`, and checks the
 * refusal: the code, the message (dataset, entry), and that nothing new exists in `<tmp>` or
 * `<tmp>/work` outside the destination. Returns the error and what the destination holds.
 */
export async function expectRefused(
  zip: Buffer,
  label: string,
  refusal: Refusal,
): Promise<{ error: DsfetchError; dest: string[]; zipCase: ZipCase }> {
  const zipCase = await newCase(label);
  await writeFile(zipCase.zipPath, zip);
  const before = await snapshot(zipCase.tmp, zipCase.dest);
  let caught: unknown;
  try {
    await extractZip(zipCase.zipPath, zipCase.dest, limits(refusal.limits), DATASET, { writes });
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DsfetchError);
  const error = caught as DsfetchError;
  expect(error.code, error.message).toBe(refusal.code);
  expect(error.dataset).toBe(DATASET);
  expect(error.message).toContain(`dataset "${DATASET}"`);
  if (refusal.entry !== undefined) expect(error.message).toContain(JSON.stringify(refusal.entry));
  for (const fragment of refusal.includes ?? []) expect(error.message).toContain(fragment);
  expect(error.hint ?? "").not.toBe("");
  const after = await snapshot(zipCase.tmp, zipCase.dest);
  expect(after).toEqual(before);
  for (const path of refusal.absent ?? []) {
    await expect(lstat(path)).rejects.toMatchObject({ code: "ENOENT" });
  }
  return { error, dest: await snapshot(zipCase.dest), zipCase };
}

/** Asserts two trees hold the same directories and byte-identical files (and x bits). */
export async function expectSameTree(expected: string, actual: string): Promise<void> {
  const a = await snapshot(expected);
  const b = await snapshot(actual);
  expect(b).toEqual(a);
  for (const line of a) {
    if (!line.startsWith("f ")) continue;
    const rel = line.slice(2, line.lastIndexOf(" "));
    const [left, right] = await Promise.all([
      readFile(join(expected, rel)),
      readFile(join(actual, rel)),
    ]);
    expect(right.equals(left), rel).toBe(true);
    const [ls, rs] = await Promise.all([lstat(join(expected, rel)), lstat(join(actual, rel))]);
    expect((rs.mode & 0o111) !== 0, `${rel} executable`).toBe((ls.mode & 0o111) !== 0);
    expect(rs.mode & 0o7000, `${rel} special bits`).toBe(0);
  }
}
