/**
 * `run`'s command, looked up before any dataset is staged: a typo (`-- pythonn train.py`)
 * failed only once every dataset was staged, hours on a large one, the staging lost with an
 * ephemeral volume; an empty command (`-- "$TRAIN_CMD"` with the variable unset) was an
 * INTERNAL error ("this is a bug in dsfetch") after the staging; a directory said `spawn /tmp
 * EACCES` (exploratory tester, 2026-12-08).
 *
 * Looked up as the spawn will (libuv's execvp): a name with a slash is a path, else each
 * directory of the command's PATH in turn; a script's `#!` interpreter too (a missing one
 * failed after the staging, said as "no such command": second tester, 2026-12-08). Not judged,
 * left to the spawn: what staging may create, a path that leads under the mount root or a
 * storage root (a dataset of scripts: `-- /data/code/train.sh`), through symbolic links too (a
 * link in the image to /data/code/train.sh, a mount root that is a link: refused before, as
 * the paths were compared as text: second tester), a name whose PATH has such a directory; a
 * command without a PATH to search; anything when the working directory is gone.
 */
import {
  accessSync,
  closeSync,
  constants,
  lstatSync,
  openSync,
  readlinkSync,
  readSync,
  statSync,
} from "node:fs";
import { delimiter, dirname, isAbsolute, join, resolve, sep } from "node:path";
import { DsfetchError } from "../errors.ts";

export const HINT_NOT_FOUND =
  "check the command after --, and that it is on PATH inside the container";
export const HINT_NOT_EXECUTABLE =
  "check that the command after -- is an executable file (chmod +x; a script needs its #! line)";

/**
 * Why `file` cannot be run with `env`'s PATH, or undefined (found, or not for us to judge).
 * @param staged directories that staging fills (mount root, storage and ephemeral roots)
 * @param cwd the working directory (default: this process's; a deleted one judges nothing
 *   relative to it)
 */
export function commandProblem(
  file: string,
  env: Readonly<Record<string, string | undefined>>,
  staged: readonly string[],
  cwd?: string,
): DsfetchError | undefined {
  if (file === "") {
    return new DsfetchError("COMMAND_NOT_FOUND", 'cannot run "": the command after -- is empty', {
      hint: 'give the command to run after -- (a variable left unset, as in `-- "$CMD"`, gives an empty one); nothing was staged',
    });
  }
  const roots = staged.flatMap((root) => [root, canonical(root)]);
  const within = (path: string) => {
    const real = canonical(path);
    return roots.some((root) => under(path, root) || under(real, root));
  };
  /** `path` from the working directory; undefined when that is gone (not judged). */
  const fromCwd = (path: string): string | undefined => {
    if (isAbsolute(path)) return path;
    const here = cwd ?? workingDirectory();
    return here === undefined ? undefined : resolve(here, path);
  };
  if (file.includes("/")) {
    const path = fromCwd(file);
    if (path === undefined || within(path)) return undefined;
    return problemOf(file, path, within);
  }
  const searchPath = env.PATH;
  if (searchPath === undefined) return undefined;
  let seen: DsfetchError | undefined;
  for (const entry of searchPath.split(delimiter)) {
    // An empty entry is the working directory, as execvp reads it.
    const dir = fromCwd(entry === "" ? "." : entry);
    if (dir === undefined || within(dir)) return undefined;
    const problem = problemOf(file, join(dir, file), within);
    if (problem === undefined) return undefined;
    // execvp goes on past what it cannot run, and says the last such reason.
    if (problem.code !== "COMMAND_NOT_FOUND" || problem.message.includes("interpreter")) {
      seen = problem;
    }
  }
  return seen ?? refusal(file, "missing");
}

/** Whether `path` is a file (a spawn's ENOENT for one is its interpreter's or loader's). */
export function existsAsFile(path: string): boolean {
  const found = lookAt(path);
  return found === "executable" || found === "not executable";
}

/** Why `path` (named `file` on the command line) cannot be run; undefined if it can. */
function problemOf(
  file: string,
  path: string,
  within: (path: string) => boolean,
): DsfetchError | undefined {
  const found = lookAt(path);
  if (found === "dangling link") return undefined; // its target may be staged: the spawn says
  if (found !== "executable") return refusal(file, found);
  const interpreter = interpreterOf(path);
  if (interpreter === undefined || within(interpreter)) return undefined;
  if (interpreter.endsWith("\r")) {
    return new DsfetchError(
      "COMMAND_NOT_FOUND",
      `cannot run ${JSON.stringify(file)}: its #! line ends with a carriage return (Windows line endings): the interpreter ${JSON.stringify(interpreter)} does not exist`,
      {
        hint: "convert the script to Unix line endings (dos2unix, or `sed -i 's/\\r$//'`); nothing was staged",
      },
    );
  }
  const kind = lookAt(interpreter);
  if (kind === "executable" || kind === "dangling link") return undefined;
  return new DsfetchError(
    kind === "missing" ? "COMMAND_NOT_FOUND" : "COMMAND_NOT_EXECUTABLE",
    `cannot run ${JSON.stringify(file)}: its interpreter ${JSON.stringify(interpreter)} (its #! line) ${kind === "missing" ? "does not exist" : kind === "directory" ? "is a directory" : "is not executable"}`,
    {
      hint: "install the interpreter in the image, or change the script's #! line (e.g. #!/usr/bin/env python3); nothing was staged",
    },
  );
}

type Found = "executable" | "not executable" | "directory" | "missing" | "dangling link";

function lookAt(path: string): Found {
  let stats: ReturnType<typeof statSync>;
  try {
    stats = statSync(path);
  } catch {
    try {
      return lstatSync(path).isSymbolicLink() ? "dangling link" : "missing";
    } catch {
      return "missing";
    }
  }
  if (stats.isDirectory()) return "directory";
  try {
    accessSync(path, constants.X_OK);
    return "executable";
  } catch {
    return "not executable";
  }
}

/** A script's `#!` interpreter (the path only, as the kernel reads it); undefined if none. */
function interpreterOf(path: string): string | undefined {
  const head = Buffer.alloc(256);
  let length = 0;
  try {
    const fd = openSync(path, "r");
    try {
      length = readSync(fd, head, 0, head.length, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined; // not readable to us (execute-only): the spawn says
  }
  if (length < 3 || head[0] !== 0x23 || head[1] !== 0x21) return undefined;
  const end = head.indexOf(0x0a);
  // A line longer than we read: not judged.
  if (end < 0 && length === head.length) return undefined;
  const line = head.toString("latin1", 2, end < 0 ? length : end);
  // The kernel splits at the first space or tab; the rest is one argument.
  const interpreter = line.replace(/^[ \t]+/, "").split(/[ \t]/)[0] ?? "";
  return interpreter === "" || !interpreter.startsWith("/") ? undefined : interpreter;
}

function refusal(file: string, found: Exclude<Found, "executable" | "dangling link">) {
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

function under(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : `${root}${sep}`);
}

function workingDirectory(): string | undefined {
  try {
    return process.cwd();
  } catch {
    return undefined; // removed under us: nothing relative is judged (second tester)
  }
}

/**
 * `path` with every symbolic link that exists on it followed (as far as its components exist;
 * the rest as written): where a path staging has not made yet would lead.
 */
function canonical(path: string, hops = 0): string {
  const absolute = resolve(path);
  const parts = absolute.split(sep).filter((part) => part !== "");
  let at: string = sep;
  for (const [i, part] of parts.entries()) {
    const next = join(at, part);
    let isLink = false;
    try {
      isLink = lstatSync(next).isSymbolicLink();
    } catch {
      // Not there (yet): the rest as written.
      return join(next, ...parts.slice(i + 1));
    }
    if (isLink && hops < 40) {
      let target: string;
      try {
        target = readlinkSync(next);
      } catch {
        return join(next, ...parts.slice(i + 1));
      }
      return canonical(join(resolve(dirname(next), target), ...parts.slice(i + 1)), hops + 1);
    }
    at = next;
  }
  return at;
}
