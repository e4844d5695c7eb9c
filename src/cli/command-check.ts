/**
 * `run`'s command, looked up before any dataset is staged: a typo (`-- pythonn train.py`)
 * failed only once every dataset was staged, hours on a large one, the staging lost with an
 * ephemeral volume; an empty command (`-- "$TRAIN_CMD"` with the variable unset) was an
 * INTERNAL error ("this is a bug in dsfetch") after the staging; a directory said `spawn /tmp
 * EACCES` (exploratory tester, 2026-12-08).
 *
 * Looked up as the spawn will (libuv's execvp): a name with a slash is a path, else each
 * directory of the command's PATH in turn. Not judged, left to the spawn: what staging may
 * create, a path under the mount root or a storage root (a dataset of scripts: `-- sh
 * /data/code/train.sh` is fine, `-- /data/code/train.sh` too) and a name whose PATH has such
 * a directory; a command without a PATH to search. A script without its `#!` line is the
 * spawn's to refuse.
 */
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, isAbsolute, resolve } from "node:path";
import { DsfetchError } from "../errors.ts";

export const HINT_NOT_FOUND =
  "check the command after --, and that it is on PATH inside the container";
export const HINT_NOT_EXECUTABLE =
  "check that the command after -- is an executable file (chmod +x; a script needs its #! line)";

/**
 * Why `file` cannot be run with `env`'s PATH, or undefined (found, or not for us to judge).
 * @param staged directories that staging fills (mount root, storage and ephemeral roots)
 */
export function commandProblem(
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  staged: readonly string[],
  cwd: string = process.cwd(),
): DsfetchError | undefined {
  if (file === "") {
    return new DsfetchError("COMMAND_NOT_FOUND", 'cannot run "": the command after -- is empty', {
      hint: 'give the command to run after -- (a variable left unset, as in `-- "$CMD"`, gives an empty one); nothing was staged',
    });
  }
  const within = (path: string) =>
    staged.some((root) => path === root || path.startsWith(root.endsWith("/") ? root : `${root}/`));
  if (file.includes("/")) {
    const path = resolve(cwd, file);
    if (within(path)) return undefined;
    const found = lookAt(path);
    if (found === "executable") return undefined;
    return refusal(file, found);
  }
  const searchPath = env.PATH;
  if (searchPath === undefined) return undefined;
  let seen: Exclude<Found, "executable"> = "missing";
  for (const entry of searchPath.split(delimiter)) {
    // An empty entry is the working directory, as execvp reads it.
    const dir = entry === "" ? cwd : isAbsolute(entry) ? entry : resolve(cwd, entry);
    if (within(dir)) return undefined;
    const found = lookAt(resolve(dir, file));
    if (found === "executable") return undefined;
    if (found !== "missing") seen = found;
  }
  return refusal(file, seen);
}

type Found = "executable" | "not executable" | "directory" | "missing";

function lookAt(path: string): Found {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(path);
  } catch {
    return "missing";
  }
  if (stats.isDirectory()) return "directory";
  try {
    accessSync(path, constants.X_OK);
    return "executable";
  } catch {
    return "not executable";
  }
}

function refusal(file: string, found: Exclude<Found, "executable">): DsfetchError {
  const name = JSON.stringify(file);
  if (found === "missing") {
    return new DsfetchError("COMMAND_NOT_FOUND", `cannot run ${name}: no such command`, {
      hint: `${HINT_NOT_FOUND}; nothing was staged`,
    });
  }
  return new DsfetchError(
    "COMMAND_NOT_EXECUTABLE",
    `cannot run ${name}: ${found === "directory" ? "it is a directory" : "it is not executable"}`,
    { hint: `${HINT_NOT_EXECUTABLE}; nothing was staged` },
  );
}
