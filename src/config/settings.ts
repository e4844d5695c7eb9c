/**
 * Global settings: each from its flag, else its environment variable, else a default.
 * Pure: flags and environment are passed in.
 */
import { tmpdir } from "node:os";
import { isAbsolute, normalize, resolve } from "node:path";
import { DsfetchError } from "../errors.ts";
import { checkName, NAME_FORMS } from "./s3-uri.ts";
import type { Settings } from "./types.ts";

export interface SettingsInput {
  storageRoot?: string | undefined;
  team?: string | undefined;
  mountRoot?: string | undefined;
  ephemeralRoot?: string | undefined;
  /** --fallback / --no-fallback as given; undefined: DSFETCH_FALLBACK, else true. */
  fallback?: boolean | undefined;
}

export const DEFAULT_MOUNT_ROOT = "/data";

/**
 * `<tmpdir>/dsfetch-ephemeral-<uid>`: one per user (volumes/ephemeral-root.ts checks that it is
 * this user's own before using it).
 */
export function defaultEphemeralRoot(): string {
  const uid = process.getuid?.();
  // Absolute whatever TMPDIR says (review: TMPDIR=reltmp gave a relative root, and `run`'s
  // mount link to it dangled).
  return resolve(tmpdir(), uid === undefined ? "dsfetch-ephemeral" : `dsfetch-ephemeral-${uid}`);
}

export function resolveSettings(
  flags: SettingsInput,
  env: Readonly<Record<string, string | undefined>>,
): Settings {
  const pick = (flag: string | undefined, variable: string): [string, string] | undefined => {
    if (flag !== undefined) return [flag, `--${kebab(variable)}`];
    const fromEnv = env[variable];
    return fromEnv === undefined || fromEnv === "" ? undefined : [fromEnv, variable];
  };
  const storageRoot = pick(flags.storageRoot, "DSFETCH_STORAGE_ROOT");
  const team = pick(flags.team, "DSFETCH_TEAM");
  const mountRoot = pick(flags.mountRoot, "DSFETCH_MOUNT_ROOT");
  const ephemeralRoot = pick(flags.ephemeralRoot, "DSFETCH_EPHEMERAL_ROOT");

  if (team !== undefined) {
    const problem = checkName(team[0]);
    if (problem !== undefined) {
      throw new DsfetchError("USAGE", `${team[1]}: the team handle is not usable: ${problem}`, {
        expected: NAME_FORMS,
        hint: `a team handle is ${NAME_FORMS}`,
      });
    }
  }
  const fallback = flags.fallback ?? fallbackFromEnv(env.DSFETCH_FALLBACK);
  return Object.freeze({
    storageRoot: storageRoot === undefined ? undefined : absolutePath(storageRoot),
    team: team?.[0],
    mountRoot: mountRoot === undefined ? DEFAULT_MOUNT_ROOT : absolutePath(mountRoot),
    ephemeralRoot:
      ephemeralRoot === undefined ? defaultEphemeralRoot() : absolutePath(ephemeralRoot),
    ephemeralRootIsDefault: ephemeralRoot === undefined,
    fallback,
  });
}

function fallbackFromEnv(value: string | undefined): boolean {
  if (value === undefined || value === "" || value === "1") return true;
  if (value === "0") return false;
  throw new DsfetchError("USAGE", `DSFETCH_FALLBACK: ${JSON.stringify(value)} is not 0 or 1`, {
    expected:
      "0 (fail when shared storage cannot take a dataset) or 1 (stage it into an ephemeral volume instead: the default)",
    hint: "set DSFETCH_FALLBACK=0 or 1, or use --no-fallback",
  });
}

function absolutePath([value, source]: [string, string]): string {
  if (!isAbsolute(value) || value.includes("\0")) {
    throw new DsfetchError("USAGE", `${source}: ${JSON.stringify(value)} is not an absolute path`, {
      hint: "give an absolute path such as /mnt/shared",
    });
  }
  const normalized = normalize(value);
  return normalized.length > 1 ? normalized.replace(/\/+$/, "") : normalized;
}

function kebab(variable: string): string {
  return variable
    .replace(/^DSFETCH_/, "")
    .toLowerCase()
    .replace(/_/g, "-");
}
