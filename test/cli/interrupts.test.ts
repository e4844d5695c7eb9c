// The first SIGINT/SIGTERM ends every command with INTERRUPTED (130), at once and with nothing
// half-done; and an error's JSON goes to stdout only where stdout is dsfetch's (review,
// 2026-12-06: `plan`, `list` and `prune` ignored the first signal, as did a wait on
// `--datasets -`; `run` started its command after a signal that came as it looked at the
// shared storage; `--json` after `run`'s "--" turned its errors into JSON on stdout).

import type { ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../harness/cli.ts";
import { exists, jobArgs, start, until } from "../harness/cli-process.ts";
import { makeFifo, unblockFifo } from "../harness/fifos.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

let root: string;
let bucket: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "dsfetch-interrupts-"));
  bucket = await createBucket("interrupts");
  // "a": enough files that deleting them one slow call at a time takes a while.
  for (let i = 0; i < 48; i++) await putObject(bucket, `a/file-${i}.txt`, `a ${i}\n`);
  for (const name of ["b", "c"]) await putObject(bucket, `${name}/file.txt`, `${name}\n`);
  await putObject(bucket, "labels/labels.txt", "cat\ndog\n");
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * dsfetch started with `args`, its standard input left open unless `stdin` is given; killed
 * (SIGKILL) if still there after 20 s: a signal it ignored then shows as code null.
 */
function startCli(
  args: readonly string[],
  env: Record<string, string | undefined>,
  stdin?: string,
): { child: ChildProcess; ended: Promise<Ended> } {
  const started = start(args, env, stdin ?? null);
  const { child } = started;
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const ended = started.exit.then(({ code, signal }) => {
    clearTimeout(killer);
    child.stdin?.destroy();
    return { code, signal, stdout: started.stdout(), stderr: started.stderr() };
  });
  return { child, ended };
}

/**
 * Whether dsfetch's signal handlers are installed in `pid`: /proc's SigCgt has SIGUSR2, which
 * dsfetch catches with the others and Node does not (Node catches SIGINT and SIGTERM itself
 * from its start, so those bits say nothing).
 */
function handlersInstalled(pid: number): boolean {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const mask = BigInt(`0x${/^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0"}`);
  return ((mask >> 11n) & 1n) === 1n;
}

/**
 * NODE_OPTIONS for storage where `fn` (of node:fs/promises) takes `ms` for paths matching
 * `pattern`: each such call is written to `marker` as it starts. The wait is a timer, not a
 * blocked thread: slow storage, not hung storage.
 */
function slowCalls(
  fn: "lstat" | "unlink" | "access",
  pattern: string,
  ms: number,
  marker: string,
): string {
  return `--import=data:text/javascript,${encodeURIComponent(
    `import fsp from "node:fs/promises";
     import { appendFileSync } from "node:fs";
     import { syncBuiltinESMExports } from "node:module";
     import { isMainThread } from "node:worker_threads";
     if (isMainThread) {
       const real = fsp.${fn};
       const slow = new RegExp(${JSON.stringify(pattern)});
       fsp.${fn} = async (path, ...rest) => {
         if (slow.test(String(path))) {
           appendFileSync(${JSON.stringify(marker)}, String(path) + "\\n");
           await new Promise((resolve) => setTimeout(resolve, ${ms}));
         }
         return real(path, ...rest);
       };
       syncBuiltinESMExports();
     }`,
  )}`;
}

/**
 * `dsfetch args` with the calls `slow` names slowed (slowCalls; its marker appears once the
 * first is under way), sent SIGTERM then: its end, and how long after the signal it came.
 */
async function terminatedDuringSlowCall(
  args: readonly string[],
  slow: Parameters<typeof slowCalls>,
  stdin = "",
): Promise<{ result: Ended; afterSignalMs: number }> {
  const marker = slow[3];
  const { child, ended } = startCli(
    args,
    { ...testEnv(), NODE_OPTIONS: slowCalls(...slow) },
    stdin,
  );
  await until(() => exists(marker));
  const sent = performance.now();
  child.kill("SIGTERM");
  const result = await ended;
  return { result, afterSignalMs: performance.now() - sent };
}

/** Shared storage holding datasets a, b and c, last used 3, 2 and 1 days ago. */
async function storageWithThree(name: string): Promise<{ storage: string; data: string }> {
  const storage = await mkdtemp(join(root, `${name}-`));
  const fetched = await runCli(
    ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml"],
    {
      env: testEnv(),
      stdin: JSON.stringify(["a", "b", "c"].map((n) => ({ uri: `s3://${bucket}/${n}/`, name: n }))),
    },
  );
  expect(fetched.code, fetched.stderr).toBe(0);
  const data = join(storage, "ml", "data");
  for (const [n, days] of [
    ["a", 3],
    ["b", 2],
    ["c", 1],
  ] as const) {
    const when = new Date(Date.now() - days * 86_400_000);
    await utimes(join(data, ".dsfetch", "used", n), when, when);
  }
  return { storage, data };
}

const published = async (data: string) =>
  (await readdir(data)).filter((name) => !name.startsWith(".")).sort();

describe("plan: the first signal", () => {
  let server: Server;
  let endpoint: string;
  const sockets = new Set<Socket>();
  let waiting: (() => void)[] = [];
  /** Resolves at the next connection to the store. */
  const nextConnection = () => new Promise<void>((resolve) => waiting.push(resolve));

  beforeAll(async () => {
    // A store that takes connections and never answers (a huge prefix's listing, slowly).
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on("error", () => {});
      socket.resume();
      for (const resolve of waiting) resolve();
      waiting = [];
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    endpoint = `http://127.0.0.1:${address.port}`;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  for (const json of [false, true]) {
    it(`SIGTERM while the store does not answer: exit 130 at once${json ? " (--json: the error as JSON on stdout)" : ""}`, async () => {
      const connected = nextConnection();
      const args = ["plan", "--datasets", "-", "--ephemeral-root", join(root, "plan-eph")];
      if (json) args.push("--json");
      const datasets = [
        { uri: "s3://huge/prefix/", volumeOptions: { kind: "dynamic" } },
        { uri: "s3://huge/other/", volumeOptions: { kind: "dynamic" } },
      ];
      const { child, ended } = startCli(
        args,
        { ...testEnv(), AWS_ENDPOINT_URL: endpoint },
        JSON.stringify(datasets),
      );
      await connected;
      const sent = performance.now();
      child.kill("SIGTERM");
      const result = await ended;
      expect(result.code, result.stderr).toBe(130);
      expect(performance.now() - sent).toBeLessThan(10_000);
      if (json) {
        expect(JSON.parse(result.stdout)).toEqual({
          error: {
            code: "INTERRUPTED",
            message: "plan: interrupted before every dataset was resolved",
          },
        });
        expect(result.stderr).toBe("");
      } else {
        expect(result.stderr).toBe(
          "dsfetch: error: plan: interrupted before every dataset was resolved [INTERRUPTED]\n",
        );
        expect(result.stdout).toBe("");
      }
    }, 30_000);
  }

  it("SIGTERM while shared storage does not answer: answered after the 5 s grace, not when the storage answers", async () => {
    const storage = await mkdtemp(join(root, "plan-storage-"));
    const marker = join(root, "plan-storage.marker");
    const { result, afterSignalMs } = await terminatedDuringSlowCall(
      ["plan", "--datasets", "-", "--storage-root", storage, "--team", "ml"],
      // The look at the dataset's path takes 60 s.
      ["lstat", `^${storage}/ml/data/b$`, 60_000, marker],
      JSON.stringify([{ uri: `s3://${bucket}/b/` }]),
    );
    expect(afterSignalMs).toBeLessThan(12_000);
    // Said interrupted, then that a call on the storage was given up on (README "Exit codes":
    // the process then replaces itself with one that exits with its code).
    expect(result.stderr).toMatch(
      /^dsfetch: error: plan: interrupted before every dataset was resolved \[INTERRUPTED\]\ndsfetch: gave up on work stuck in system calls on storage that stopped answering \(reading .*\/ml\/data\/\.dsfetch\/manifests\/b\.json got no answer from the storage\).*exits with its exit code, 130\.\n$/,
    );
    expect(result).toMatchObject({ code: 130, signal: null });
  }, 30_000);

  it("SIGINT while --datasets - waits for standard input: exit 130", async () => {
    const { child, ended } = startCli(["plan", "--datasets", "-"], testEnv());
    await until(async () => handlersInstalled(child.pid as number));
    child.kill("SIGINT");
    const result = await ended;
    expect(result.code, result.stderr).toBe(130);
    expect(result.stderr).toBe(
      "dsfetch: error: interrupted while reading the datasets from standard input [INTERRUPTED]\n",
    );
    expect(result.stdout).toBe("");
  }, 30_000);

  it("SIGINT while --datasets names a FIFO no one writes: exit 130 at once, not when a writer comes", async () => {
    const fifo = makeFifo(join(root, "datasets.fifo"));
    try {
      const { child, ended } = startCli(["plan", "--datasets", fifo], testEnv());
      await until(async () => handlersInstalled(child.pid as number));
      child.kill("SIGINT");
      const result = await ended;
      expect(result.code, result.stderr).toBe(130);
      expect(result.stderr).toMatch(
        new RegExp(
          `^dsfetch: error: interrupted while reading the datasets from ${fifo} \\[INTERRUPTED\\]\ndsfetch: gave up on work stuck in system calls .*\\(reading the datasets from ${fifo}\\).*exits with its exit code, 130\\.\n$`,
        ),
      );
    } finally {
      unblockFifo(fifo);
    }
  }, 30_000);
});

// Concurrent: each test has storage and a marker of its own and mostly waits on slowed calls
// (one after another: ~12 s).
describe.concurrent("list and prune: the first signal", () => {
  // Slow: every dataset's look (the signal comes during the first: the calls after it are not
  // made), or only the last one's (the listing is then complete, but not printed).
  for (const [slow, when] of [
    ["[abc]", "as it starts"],
    ["c", "during its last call"],
  ] as const) {
    it(`list: SIGTERM on slow storage ${when} ends it with 130 at once, no list printed`, async () => {
      const { storage, data } = await storageWithThree("list");
      const marker = join(storage, "list.marker");
      const { result, afterSignalMs } = await terminatedDuringSlowCall(
        ["list", "--storage-root", storage, "--team", "ml"],
        // Each look at a dataset's path takes 1 s (a dataset's call makes two: 2 s).
        ["lstat", `^${data}/${slow}$`, 1000, marker],
      );
      expect(result.code, result.stderr).toBe(130);
      // The call in flight (2 s), not the ones after it (6 s in all).
      expect(afterSignalMs).toBeLessThan(4_000);
      expect(result.stderr).toBe(
        "dsfetch: error: list: interrupted; nothing was listed [INTERRUPTED]\n",
      );
      expect(result.stdout).toBe("");
    }, 60_000);
  }

  it("prune: SIGTERM while it lists removes nothing, at once (exit 130)", async () => {
    const { storage, data } = await storageWithThree("prune-listing");
    const marker = join(storage, "prune-listing.marker");
    const { result, afterSignalMs } = await terminatedDuringSlowCall(
      ["prune", "--older-than", "1h", "--storage-root", storage, "--team", "ml"],
      // Each look at a dataset's path takes 1 s (a dataset's call makes two: 2 s).
      ["lstat", `^${data}/[abc]$`, 1000, marker],
    );
    expect(result.code, result.stderr).toBe(130);
    // The call in flight (2 s), not the ones after it (6 s in all).
    expect(afterSignalMs).toBeLessThan(4_000);
    expect(result.stderr).toMatch(
      /^dsfetch: error: prune: interrupted; nothing was removed \[INTERRUPTED\]\n/,
    );
    expect(await published(data)).toEqual(["a", "b", "c"]);
  }, 60_000);

  it("prune: SIGTERM while it deletes a dataset stops after that one, at once (never half of one): exit 130, the others intact, a later prune goes on", async () => {
    const { storage, data } = await storageWithThree("prune-removing");
    const marker = join(storage, "prune-removing.marker");
    const flags = ["--storage-root", storage, "--team", "ml"];
    const { result, afterSignalMs } = await terminatedDuringSlowCall(
      ["prune", "--older-than", "1h", ...flags],
      // Each file deleted from a tree moved aside takes 1 s (8 at once): a's 48, 6 s.
      ["unlink", "/pruned\\.[0-9a-f]{12}/", 1000, marker],
    );
    expect(result.code, result.stderr).toBe(130);
    // The deletions in flight (1 s), not the rest of a's.
    expect(afterSignalMs).toBeLessThan(3_500);
    expect(result.stderr).toBe(
      "dsfetch: error: prune: interrupted after removing 1 dataset (a); each was removed whole, the others were left as they were [INTERRUPTED]\n" +
        "  hint: run prune again to go on (files of a removal cut short are deleted by a later prune)\n",
    );
    // a is gone from its path; b and c are whole and listed.
    expect(await published(data)).toEqual(["b", "c"]);
    const listed = await runCli(["list", ...flags, "--json"], { env: testEnv() });
    expect(listed.code, listed.stderr).toBe(0);
    const { datasets } = JSON.parse(listed.stdout) as { datasets: Array<{ name: string }> };
    expect(datasets.map((d) => d.name)).toEqual(["b", "c"]);
    expect(readFileSync(join(data, "b", "file.txt"), "utf8")).toBe("b\n");
    // Nothing left locked: the next prune removes the rest.
    const again = await runCli(["prune", "--older-than", "1h", ...flags, "--json"], {
      env: testEnv(),
    });
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ removed: [{ name: "b" }, { name: "c" }] });
    expect(await published(data)).toEqual([]);
  }, 60_000);

  it("prune: SIGTERM during its clean-up of abandoned trees: exit 130, at once", async () => {
    const storage = await mkdtemp(join(root, "prune-cleanup-"));
    const marker = join(storage, "prune-cleanup.marker");
    // A tree a prune that died had moved aside, an hour ago: 48 files.
    const aside = join(storage, "ml", "data", ".dsfetch", "tmp", "pruned.aaaaaaaaaaaa");
    await mkdir(aside, { recursive: true });
    for (let i = 0; i < 48; i++) await writeFile(join(aside, `f${i}`), "x");
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(aside, hourAgo, hourAgo);
    const { result, afterSignalMs } = await terminatedDuringSlowCall(
      ["prune", "--older-than", "30d", "--storage-root", storage, "--team", "ml"],
      // Each of its files takes 1 s to delete (8 at once): 6 s.
      ["unlink", "/pruned\\.a{12}/", 1000, marker],
    );
    expect(result.code, result.stderr).toBe(130);
    expect(afterSignalMs).toBeLessThan(3_500);
    expect(result.stderr).toMatch(
      /^dsfetch: error: prune: interrupted; nothing was removed \[INTERRUPTED\]\n/,
    );
  }, 60_000);
});

describe("run: a signal as it looks at the shared storage", () => {
  it.runIf(process.getuid?.() === 0)(
    "SIGTERM during the root check: the command is not started, exit 130",
    async () => {
      const storage = await mkdtemp(join(root, "run-"));
      const data = join(storage, "ml", "data");
      const marker = join(root, "run.marker");
      const started = join(root, "run.command-started");
      const { result } = await terminatedDuringSlowCall(
        jobArgs(storage, ["sh", "-c", `echo started > ${started}`]),
        // The check's access() on the dataset (shared storage, as root) takes 2 s.
        ["access", `^${data}/labels$`, 2000, marker],
        JSON.stringify([{ uri: `s3://${bucket}/labels/` }]),
      );
      expect(result.code, result.stderr).toBe(130);
      expect(result.stderr).toContain(
        `dsfetch: not running sh -c echo started > ${started}: interrupted\n`,
      );
      expect(existsSync(started)).toBe(false);
    },
    60_000,
  );
});

describe("--json and the error output", () => {
  let bad: string;
  beforeAll(async () => {
    await mkdir(root, { recursive: true });
    bad = join(root, "bad.json");
    await writeFile(bad, JSON.stringify([{ uri: "nope" }]));
  });

  const human = (result: Ended, code: string) => {
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(new RegExp(`^dsfetch: error: .* \\[${code}\\]\\n`));
  };

  it("run: --json after -- is the command's: the error in words on stderr, nothing on stdout", async () => {
    const result = await runCli(["run", "--datasets", bad, "--", "python", "train.py", "--json"]);
    expect(result.code).toBe(2);
    human(result, "CONFIG_INVALID");
    const usage = await runCli(["run", "--bogus", "--", "python", "train.py", "--json"]);
    expect(usage.code).toBe(2);
    human(usage, "USAGE");
  });

  it("run --json: stdout is still the command's (README: nothing on stdout), the error on stderr", async () => {
    const result = await runCli(["run", "--json", "--datasets", bad, "--", "true"]);
    expect(result.code).toBe(2);
    human(result, "CONFIG_INVALID");
    const usage = await runCli(["run", "--json", "--bogus", "--", "true"]);
    expect(usage.code).toBe(2);
    human(usage, "USAGE");
  });

  it("plan --json gives the error as JSON; --no-json after it takes that back", async () => {
    const json = await runCli(["plan", "--datasets", bad, "--json"]);
    expect(json.code).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: "CONFIG_INVALID" } });
    expect(json.stderr).toBe("");
    const usage = await runCli(["plan", "--json", "--bogus"]);
    expect(JSON.parse(usage.stdout)).toMatchObject({ error: { code: "USAGE" } });
    human(await runCli(["plan", "--json", "--no-json", "--bogus"]), "USAGE");
    const taken = await runCli(["plan", "--datasets", bad, "--json", "--no-json"]);
    expect(taken.code).toBe(2);
    human(taken, "CONFIG_INVALID");
  });
});
