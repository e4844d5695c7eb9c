// `run` and a signal it cannot forward: a command that changed its real uid (sudo, a setuid
// helper) cannot be signalled by dsfetch (kill → EPERM), and Node reports that as an "error" on
// the child process. That is no failure to run the command (review, 2026-12-06: it was taken
// for one: "cannot run …: kill EPERM", the job's leases released under the running command,
// exit 126): a warning, the command's exit awaited, its exit code ours, the leases released
// after it.
import { execFileSync, spawn as spawnProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import type { CommandContext } from "../../src/cli/context.ts";
import { SignalRouter } from "../../src/cli/signals.ts";
import type { StageResult } from "../../src/stage/stage.ts";
import { baseEnv, CLI_ENTRY, REPO_ROOT } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

/** What the test sees of `run`: its fake command, and the order of what happened. */
const fake = vi.hoisted(() => ({
  spawn: undefined as ((file: string, argv: readonly string[]) => unknown) | undefined,
  stage: undefined as (() => Promise<unknown>) | undefined,
  /** The codes endNow was called with (finish.ts, mocked below). */
  ended: [] as number[],
}));

vi.mock("node:child_process", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:child_process")>();
  return {
    ...actual,
    spawn: (file: string, argv: readonly string[], ...rest: unknown[]) =>
      fake.spawn === undefined
        ? (actual.spawn as (...a: unknown[]) => unknown)(file, argv, ...rest)
        : fake.spawn(file, argv),
  };
});

vi.mock("../../src/stage/stage.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/stage/stage.ts")>();
  return {
    ...actual,
    stage: (...args: Parameters<typeof actual.stage>) =>
      fake.stage === undefined ? actual.stage(...args) : fake.stage(),
  };
});

// A second stop signal ends dsfetch through endNow (an execve: it would replace this test's
// worker), not process.exit: both are watched, so that ending on a signal meant for the
// command fails the test instead of ending it.
vi.mock("../../src/cli/finish.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/cli/finish.ts")>();
  return {
    ...actual,
    endNow: (code: number) => {
      fake.ended.push(code);
    },
  };
});

const { runCommand } = await import("../../src/cli/commands/run.ts");

/**
 * A started command (a pid) that dsfetch may not signal: kill() does what Node's does on
 * EPERM (emits "error", synchronously, and returns false).
 */
class UnsignallableChild extends EventEmitter {
  readonly pid = 424242;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  readonly killed = false;
  readonly kills: NodeJS.Signals[] = [];

  private readonly log: string[];

  constructor(log: string[]) {
    super();
    this.log = log;
    process.nextTick(() => this.emit("spawn"));
  }

  kill(signal: NodeJS.Signals = "SIGTERM"): boolean {
    this.kills.push(signal);
    this.log.push(`kill ${signal}`);
    this.emit(
      "error",
      Object.assign(new Error("kill EPERM"), { code: "EPERM", errno: -1, syscall: "kill" }),
    );
    return false;
  }

  exit(code: number): void {
    this.log.push(`exit ${code}`);
    this.exitCode = code;
    this.emit("exit", code, null);
    this.emit("close", code, null);
  }
}

function context(written: string[]): CommandContext {
  return {
    // `sh` stands for sudo (the spawn is a fake): a command looked up on PATH before staging
    // (cli/command-check.ts) must exist, and sudo is not everywhere.
    args: { exec: ["sh", "-c", "sudo -u trainer train.sh"], mountFlag: false },
    settings: { mountRoot: "/nonexistent-mount-root" },
    datasets: [{ name: "labels" }],
    out: () => {},
    err: (text: string) => {
      written.push(text);
    },
    stderrIsTty: false,
    signal: new AbortController().signal,
    env: { PATH: "/usr/bin:/bin" },
  } as unknown as CommandContext;
}

/** One staged shared dataset whose lease says when it is released. */
function staged(log: string[]): StageResult {
  return {
    ok: true,
    datasets: [{ ok: true, name: "labels", path: "/data/labels", volume: "ephemeral" }],
    leases: [
      {
        writtenAtMs: 0,
        release: async () => {
          log.push("lease released");
        },
      },
    ],
  } as unknown as StageResult;
}

afterEach(() => {
  fake.spawn = undefined;
  fake.stage = undefined;
  fake.ended = [];
  vi.restoreAllMocks();
});

const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

describe("run: a signal the command cannot be sent (EPERM)", () => {
  it("warns, keeps waiting for the command, returns its exit code, releases the leases after it exited", async () => {
    const log: string[] = [];
    const written: string[] = [];
    let child: UnsignallableChild | undefined;
    fake.stage = async () => staged(log);
    fake.spawn = () => {
      child = new UnsignallableChild(log);
      return child;
    };
    const exit = vi.spyOn(process, "exit").mockImplementation((() => {
      log.push("process.exit");
    }) as never);
    const router = new SignalRouter(() => false);
    let settled: number | Error | undefined;
    const running = runCommand(context(written), router).then(
      (code) => {
        settled = code;
        log.push(`resolved ${code}`);
        return code;
      },
      (error: Error) => {
        settled = error;
        log.push(`rejected ${error.message}`);
        throw error;
      },
    );
    await tick();
    expect(child).toBeDefined();
    const command = child as UnsignallableChild;

    // A preemption notice, then the kubelet's second: neither can be forwarded.
    router.handle("SIGTERM");
    await tick();
    router.handle("SIGTERM");
    await tick();
    expect(command.kills).toEqual(["SIGTERM", "SIGTERM"]);
    expect(settled).toBeUndefined();
    expect(log).not.toContain("lease released");
    // The signals were the command's: dsfetch neither stops nor exits on them.
    expect(router.signal.aborted).toBe(false);
    expect(exit).not.toHaveBeenCalled();
    expect(fake.ended).toEqual([]);
    const warning =
      "dsfetch: warning: could not forward SIGTERM to the command (pid 424242): EPERM (not permitted: the command runs as another user, e.g. through sudo or a setuid program); the command keeps running, and dsfetch waits for it to exit\n";
    expect(written).toEqual([warning, warning]);

    command.exit(0);
    expect(await running).toBe(0);
    expect(log).toEqual(["kill SIGTERM", "kill SIGTERM", "exit 0", "lease released", "resolved 0"]);
  });

  it("the command's own exit code is still ours after a failed forward", async () => {
    const log: string[] = [];
    const written: string[] = [];
    let child: UnsignallableChild | undefined;
    fake.stage = async () => staged(log);
    fake.spawn = () => {
      child = new UnsignallableChild(log);
      return child;
    };
    const router = new SignalRouter(() => false);
    const running = runCommand(context(written), router);
    await tick();
    router.handle("SIGUSR1");
    await tick();
    (child as UnsignallableChild).exit(3);
    expect(await running).toBe(3);
    expect(written.join("")).toContain("could not forward SIGUSR1 to the command (pid 424242)");
    expect(log.indexOf("lease released")).toBeGreaterThan(log.indexOf("exit 3"));
  });

  it("a command that cannot be started is still an error (127), its leases released", async () => {
    const log: string[] = [];
    const written: string[] = [];
    fake.stage = async () => staged(log);
    const ctx = context(written);
    const missing = {
      ...ctx,
      // Under the mount root: left to the spawn by the look before staging (a dataset may
      // hold it), so the spawn's own failure is what is tested here.
      args: { ...ctx.args, exec: ["/nonexistent-mount-root/labels/dsfetch-test-command"] },
    } as CommandContext;
    await expect(runCommand(missing, new SignalRouter(() => false))).rejects.toMatchObject({
      code: "COMMAND_NOT_FOUND",
    });
    expect(log).toEqual(["lease released"]);
  });
});

/**
 * The real thing, where it can be had (root, a C compiler, setpriv): dsfetch runs as nobody
 * (65534), its command is a setuid-root program that makes root its real uid too (as sudo
 * does), so the kernel refuses dsfetch's kill() with EPERM.
 */
const NOBODY = 65534;
const canRunAsNobody = ((): boolean => {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync("sh", ["-c", "command -v cc && command -v setpriv"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

// Becomes root (setuid(0) with root as effective uid: the real uid too, as sudo does), says it started, then ignores dsfetch for 2 s and exits 7.
const SUDO_LIKE_SLEEPER = `#include <stdio.h>
#include <unistd.h>
int main(void) {
  if (setuid(0) != 0) return 99;
  puts("command started");
  fflush(stdout);
  sleep(2);
  return 7;
}
`;

// Not skipped where it cannot run: the tests run as root, and the machines have cc and setpriv.
describe("run as another user than its command's (real processes)", () => {
  let root: string;
  let sleeper: string;
  let bucket: string;

  beforeAll(async () => {
    if (!canRunAsNobody) {
      throw new Error("this test needs root, a C compiler (cc) and setpriv (util-linux)");
    }
    root = await mkdtemp(join(tmpdir(), "dsfetch-run-eperm-"));
    await chmod(root, 0o755);
    const source = join(root, "sleeper.c");
    sleeper = join(root, "sleeper");
    await writeFile(source, SUDO_LIKE_SLEEPER);
    execFileSync("cc", ["-o", sleeper, source], { stdio: "ignore" });
    await chmod(sleeper, 0o4755);
    bucket = await createBucket("runeperm");
    await putObject(bucket, "labels/labels.txt", "cat\ndog\n");
  });

  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("a SIGTERM dsfetch may not forward: a warning, the command runs on, its exit code is dsfetch's", async () => {
    const home = join(root, "home");
    // The shared storage, so that the job holds a lease on what its command reads.
    for (const dir of [home, join(home, "storage")]) {
      await mkdir(dir);
      await chown(dir, NOBODY, NOBODY);
    }
    const datasets = join(root, "datasets.json");
    await writeFile(datasets, JSON.stringify([{ uri: `s3://${bucket}/labels/` }]));
    const child = spawnProcess(
      "setpriv",
      [
        "--reuid",
        String(NOBODY),
        "--regid",
        String(NOBODY),
        "--clear-groups",
        process.execPath,
        CLI_ENTRY,
        "run",
        "--datasets",
        datasets,
        "--storage-root",
        join(home, "storage"),
        "--team",
        "ml",
        "--mount-root",
        join(home, "mnt"),
        "--",
        sleeper,
      ],
      {
        cwd: REPO_ROOT,
        env: baseEnv({
          ...testEnv(),
          HOME: home,
          NODE_COMPILE_CACHE: join(home, "compile-cache"),
          DSFETCH_EPHEMERAL_ROOT: join(home, "ephemeral"),
        }),
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
      if (!chunk.includes("command started")) return;
      // setpriv exec'd node: the pid is dsfetch's. Twice: a second signal used to exit dsfetch.
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGTERM"), 300);
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    clearTimeout(timer);
    expect(stdout, stderr).toContain("command started");
    expect(stderr).toMatch(
      /dsfetch: warning: could not forward SIGTERM to the command \(pid \d+\): EPERM .*the command keeps running, and dsfetch waits for it to exit\n/,
    );
    expect(stderr).not.toContain("cannot run");
    expect(stderr).not.toContain("shared storage is unavailable");
    expect(code, stderr).toBe(7);
  }, 40_000);
});
