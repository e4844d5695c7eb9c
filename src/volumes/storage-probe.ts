/**
 * Does shared storage answer at all? Asked once per run, in a child process, before
 * dsfetch itself touches the storage.
 *
 * Why: a network mount whose server is gone (NFS mounted `hard`, the default) does not fail:
 * every call on it waits, possibly forever. Had dsfetch made the first call itself, a thread
 * of Node's pool would be stuck in the kernel, and a Node process cannot exit while one is
 * (process.exit waits for every thread of the pool: measured here with a FIFO opened for
 * reading, the exit never came). The job would hang before it started, the worst outcome
 * for a GPU job; SPEC §6 says to stage into an ephemeral volume when shared storage cannot
 * serve. So a small program does the first round trips (the root's attributes, the data
 * directory, opening a file there: attributes alone may come from the client's cache) and
 * dsfetch waits for it a bounded time. A child that does not answer is killed and
 * forgotten: whether or not the kernel lets it die, it holds nothing of ours.
 *
 * This answers "no answer at all", not "is it usable": a prompt failure (not mounted, not
 * writable, full) is left to storage-check.ts, whose messages say which. Storage that hangs
 * later, mid-download, is the stall watchdogs' business (extract-in-worker.ts, retries).
 */
import { spawn } from "node:child_process";
import { constants } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { executable } from "../util/executable.ts";
import { killChild } from "../util/kill-child.ts";
import { META_DIR } from "./layout.ts";
import { makeSharedDir, sharedDirMode } from "./shared-dirs.ts";

/**
 * The empty file in `<data-root>/.dsfetch/` the probe opens, for reading: an open revalidates
 * with the server (NFS close-to-open, for regular files and directories alike), where a stat
 * may be answered from the client's attribute cache for up to a minute after the server went
 * away; a read needs no write bit (a teammate's file). Made by dsfetch itself (makeProbeFile),
 * not by the probe: the probe's `mkdir -p` made `.dsfetch` (and a missing team and data
 * directory) under the umask, which other users of a team's storage then could not write in
 * (review, 2026-12-07). Until it exists (before a first staging there), the probe opens
 * `.dsfetch`, or the storage root, instead.
 */
export const PROBE_FILE = "probe";

/** Data roots whose probe file this process has seen to. */
const probeFilesMade = new Set<string>();

/**
 * Makes `<data-root>/.dsfetch/probe`, writable by whoever the data root lets write (so each
 * teammate's probe opens it), once per process. Best effort.
 */
export async function makeProbeFile(dataRoot: string): Promise<void> {
  if (probeFilesMade.has(dataRoot)) return;
  const meta = join(dataRoot, META_DIR);
  try {
    await makeSharedDir(meta);
    // Never blocks: a FIFO put there by someone who may write in `.dsfetch` would hold a
    // thread of the pool for good (review, 2026-12-07); a write open of one without a reader
    // fails ENXIO at once.
    const flags =
      constants.O_WRONLY |
      constants.O_CREAT |
      constants.O_APPEND |
      constants.O_NOFOLLOW |
      constants.O_NONBLOCK;
    const handle = await open(join(meta, PROBE_FILE), flags, 0o644);
    try {
      const found = await handle.stat();
      if (!found.isFile()) return;
      const wanted = 0o644 | (sharedDirMode((await stat(dataRoot)).mode) & 0o022);
      const mode = found.mode & 0o777;
      // Tried, not judged by uids (a teammate's file: refused, and left as it is).
      if ((mode & wanted) !== wanted) await handle.chmod(mode | wanted).catch(() => {});
      probeFilesMade.add(dataRoot);
    } finally {
      await handle.close();
    }
  } catch {
    // The writes that follow say what is wrong.
  }
}

/**
 * The probe in POSIX shell, builtins only (an external command is one more process: ~7 ms
 * each here, where spawning the shell itself blocks Node's thread 5-9 ms; Node in its place
 * takes ~70 ms to start).
 */
const SHELL_PROBE = `[ -d "$1" ] || exit 0
if [ -e "$3" ]; then : < "$3"; elif [ -d "$2" ]; then : < "$2"; else : < "$1"; fi 2>/dev/null
exit 0`;

/** The same in Node, for images without /bin/sh. */
const NODE_PROBE = `const fs = require("node:fs");
const [root, meta, file] = process.argv.slice(1);
try { if (!fs.statSync(root).isDirectory()) process.exit(0);
  const at = fs.existsSync(file) ? file : fs.existsSync(meta) ? meta : root;
  fs.closeSync(fs.openSync(at, "r")); } catch {}`;

export interface ProbeOptions {
  /** The shell to run the probe with (default /bin/sh, if present; tests: a missing one). */
  readonly shell?: string | undefined;
  /**
   * An interrupt: the probe is killed and forgotten at once (else a probe stuck on the
   * storage would keep the process alive until the bound).
   */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Whether `storageRoot` answers within `timeoutMs`: the probe program finished (whatever it
 * found). False: it did not, and dsfetch must not touch that storage in this process.
 */
export async function storageAnswers(
  storageRoot: string,
  dataRoot: string,
  timeoutMs: number,
  options: ProbeOptions = {},
): Promise<boolean> {
  const meta = join(dataRoot, META_DIR);
  const file = join(meta, PROBE_FILE);
  const shell = options.shell ?? "/bin/sh";
  const [command, args] = executable(shell)
    ? [shell, ["-c", SHELL_PROBE, "dsfetch-probe", storageRoot, meta, file]]
    : [process.execPath, ["-e", NODE_PROBE, storageRoot, meta, file]];
  const env = { ...process.env };
  // The probe must start fast and plainly: no preloaded modules, no inspector.
  delete env.NODE_OPTIONS;
  const child = spawn(command, args, { stdio: "ignore", env });
  const { signal } = options;
  return new Promise<boolean>((resolve) => {
    const forget = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", forget);
      child.removeAllListeners();
      killChild(child, "SIGKILL");
      // A process stuck in the kernel may outlive the kill; nothing here waits for it.
      child.unref();
      resolve(false);
    };
    const timer = setTimeout(forget, timeoutMs);
    signal?.addEventListener("abort", forget, { once: true });
    if (signal?.aborted === true) forget();
    const answered = (ok: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", forget);
      resolve(ok);
    };
    // Could not even start the program: no verdict on the storage; the checks that follow
    // (in this process) will say what they find.
    child.once("error", () => answered(true));
    child.once("exit", () => answered(true));
  });
}
