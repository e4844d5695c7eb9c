/**
 * Starts the kernel writing a download's dirty pages while the download still runs, so that
 * the syncfs before publish (sync-tree.ts) finds little left to write. That final sync is
 * time with nothing else to do: here it waited 0.57 s after a .tar.xz expanded to 1 GiB,
 * 0.27 s after a tar of 20,000 small files, 0.15 s after 256 MiB of .tar.bz2, while the
 * same pages written back during the download overlap with the decompressor's work.
 *
 * Node has neither sync_file_range(2) nor posix_fadvise(2), so this is a `sync -f` of the
 * filesystem after every `everyBytes` written into the page cache, never two at once. The
 * syncs are run by one small shell started once, when the process is still small: libuv
 * forks (it does not vfork), and a fork of this process in the middle of a download (200+
 * MiB resident) took ~10 ms of the main thread per `sync` spawned (5 per 327 MiB), against
 * writing a line to the shell. Best effort: failures are ignored (the final sync reports
 * its own), and where no shell can run, nothing is tried again.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { killChild } from "../util/kill-child.ts";

export const EARLY_WRITEBACK_BYTES = 64 * 1024 * 1024;
/**
 * settle() waits no longer than this for a sync in flight (a hung network filesystem): the
 * sync before publish makes the data durable, with its own bound.
 */
export const SETTLE_LIMIT_MS = 60_000;

/** Runs `$1 -f $2` for every line read; writes a line when each is done. Ends at EOF. */
const SYNC_LOOP = 'while read -r _; do "$1" -f "$2" >/dev/null 2>&1; echo; done';

export interface EarlyWritebackOptions {
  /** Bytes written between two syncs (default EARLY_WRITEBACK_BYTES). */
  readonly everyBytes?: number;
  /**
   * Bytes the download will write, when known: below `everyBytes` nothing is ever started;
   * at or above, the shell starts now (before the download makes the process large).
   */
  readonly expectedBytes?: number;
  /** The program run as `<program> -f <root>` (default `sync`, from PATH; tests give stand-ins). */
  readonly program?: string;
  /** The shell that runs the loop (default `sh`, from PATH). */
  readonly shell?: string;
}

export class EarlyWriteback {
  private readonly root: string;
  private readonly everyBytes: number;
  private readonly program: string;
  private readonly shellProgram: string;
  private unsynced = 0;
  private shell: ChildProcess | undefined;
  private exited: Promise<void> | undefined;
  /** A sync was asked for and its line has not come back yet. */
  private busy = false;
  private idle: (() => void) | undefined;
  private stopped = false;

  constructor(root: string, options: EarlyWritebackOptions = {}) {
    this.root = root;
    this.everyBytes = options.everyBytes ?? EARLY_WRITEBACK_BYTES;
    this.program = options.program ?? "sync";
    this.shellProgram = options.shell ?? "sh";
    const expected = options.expectedBytes;
    if (expected !== undefined) {
      if (expected < this.everyBytes) this.stopped = true;
      else this.startShell();
    }
  }

  /** Counts bytes just written through the page cache below the root. */
  readonly wrote = (bytes: number): void => {
    this.unsynced += bytes;
    if (this.unsynced < this.everyBytes || this.busy || this.stopped) return;
    this.unsynced = 0;
    const shell = this.shell ?? this.startShell();
    if (shell?.stdin === null || shell?.stdin === undefined || shell.stdin.destroyed) return;
    this.busy = true;
    shell.stdin.write("\n");
  };

  /** Waits for the sync in flight, if any, and ends the shell; starts no more. Never throws. */
  async settle(): Promise<void> {
    this.stopped = true;
    const timer = setTimeout(() => this.stop(), SETTLE_LIMIT_MS);
    try {
      if (this.busy) await new Promise<void>((resolve) => (this.idle = resolve));
      this.shell?.stdin?.end();
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Starts no more and ends the shell at once (the download failed: nothing to keep). */
  stop(): void {
    this.stopped = true;
    if (this.shell !== undefined) killChild(this.shell, "SIGKILL");
    this.setIdle();
  }

  private startShell(): ChildProcess | undefined {
    let shell: ChildProcess;
    try {
      shell = spawn(this.shellProgram, ["-c", SYNC_LOOP, "sh", this.program, this.root], {
        stdio: ["pipe", "pipe", "ignore"],
      });
    } catch {
      this.stopped = true;
      return undefined;
    }
    this.shell = shell;
    // A closed pipe (the shell died) must not become an unhandled error.
    shell.stdin?.on("error", () => {});
    shell.stdout?.on("data", () => this.setIdle());
    this.exited = new Promise<void>((resolve) => {
      shell.once("error", () => {
        // No shell here (ENOENT): do not try again.
        this.stopped = true;
        this.setIdle();
        resolve();
      });
      shell.once("close", () => {
        this.stopped = true;
        this.setIdle();
        resolve();
      });
    });
    return shell;
  }

  private setIdle(): void {
    this.busy = false;
    const idle = this.idle;
    this.idle = undefined;
    idle?.();
  }
}
