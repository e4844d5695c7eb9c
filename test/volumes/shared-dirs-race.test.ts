// Shared directories made by several makers at once (src/volumes/shared-dirs.ts). Each is
// made under a hidden name and renamed into place, and rename(2) replaces a directory that is
// empty: the first entry being made in the one replaced fails ENOENT, its path there all along.
// A CI run failed so (2026-12-07): two datasets of one `fetch` made `.dsfetch/tmp` at once,
// and one failed STORAGE "a parent directory does not exist" (exit 7).
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";

/** What the test sees of, and does to, the calls shared-dirs.ts and attempt.ts make. */
const hooks = vi.hoisted(() => ({
  /** Targets of every rename, in order. */
  renamedTo: [] as string[],
  /** Called after each mkdir that made a directory (its path). */
  afterMkdir: undefined as ((path: string) => Promise<void>) | undefined,
  /** Called before each mkdir: a rejection is that mkdir's answer. */
  beforeMkdir: undefined as ((path: string) => Promise<void>) | undefined,
}));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const rename: typeof actual.rename = async (from, to) => {
    hooks.renamedTo.push(String(to));
    return actual.rename(from, to);
  };
  const mkdir = (async (path: Parameters<typeof actual.mkdir>[0], options?: unknown) => {
    await hooks.beforeMkdir?.(String(path));
    const made = await actual.mkdir(path, options as Parameters<typeof actual.mkdir>[1]);
    await hooks.afterMkdir?.(String(path));
    return made;
  }) as typeof actual.mkdir;
  return { ...actual, rename, mkdir, default: { ...actual, rename, mkdir } };
});

// The lock is made by proper-lockfile through node:fs's callback mkdir (lock.ts libraryFs).
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  const mkdir = ((path: string, ...rest: unknown[]) => {
    const callback = rest.at(-1) as (error: NodeJS.ErrnoException | null) => void;
    const before = hooks.beforeMkdir?.(String(path)) ?? Promise.resolve();
    before.then(
      () => (actual.mkdir as (...args: unknown[]) => void)(path, ...rest),
      (error: NodeJS.ErrnoException) => callback(error),
    );
  }) as typeof actual.mkdir;
  return { ...actual, mkdir, default: { ...actual, mkdir } };
});

const { makeSharedDir, retryWhereReplaced } = await import("../../src/volumes/shared-dirs.ts");
const { acquireLock } = await import("../../src/volumes/lock.ts");
const { createAttempt } = await import("../../src/volumes/attempt.ts");
const { locationIn } = await import("../../src/volumes/layout.ts");
const actualFs = await vi.importActual<typeof import("node:fs/promises")>("node:fs/promises");

const root = await mkdtemp(join(tmpdir(), "dsfetch-shared-race-"));
afterAll(() => rm(root, { recursive: true, force: true }));
afterEach(() => {
  hooks.renamedTo = [];
  hooks.afterMkdir = undefined;
  hooks.beforeMkdir = undefined;
});

const fresh = () => join(root, randomBytes(4).toString("hex"));
const enoent = (path: string) =>
  Object.assign(new Error(`ENOENT: no such file or directory, mkdir '${path}'`), {
    code: "ENOENT",
  });

describe("a shared directory made by several at once", () => {
  it("in one process (two datasets): made once, so the first entry made in it stays", async () => {
    const base = fresh();
    const tmp = join(base, ".dsfetch", "tmp");
    const makers = await Promise.all(
      Array.from({ length: 4 }, () =>
        makeSharedDir(tmp).then(() => actualFs.mkdir(join(tmp, randomBytes(4).toString("hex")))),
      ),
    );
    expect(makers).toHaveLength(4);
    // One rename into each directory: a second one would have replaced the first while empty.
    expect(hooks.renamedTo.filter((to) => to === tmp)).toEqual([tmp]);
    expect(hooks.renamedTo.filter((to) => to === dirname(tmp))).toEqual([dirname(tmp)]);
    expect(hooks.renamedTo.filter((to) => to === base)).toEqual([base]);
  });

  it("by another process meanwhile: theirs is kept, not replaced by ours while it is empty", async () => {
    const base = fresh();
    await actualFs.mkdir(base);
    const locks = join(base, "locks");
    // The other process makes `locks` while this one gives its own (hidden) one its mode.
    let theirs: number | undefined;
    hooks.afterMkdir = async (path) => {
      if (!basename(path).startsWith(".locks.mk-")) return;
      await actualFs.mkdir(locks);
      theirs = (await stat(locks)).ino;
    };
    await makeSharedDir(locks);
    expect(theirs).toBeDefined();
    expect((await stat(locks)).ino).toBe(theirs);
    expect(hooks.renamedTo).not.toContain(locks);
    // Nothing of ours left beside it.
    expect((await actualFs.readdir(base)).sort()).toEqual(["locks"]);
  });
});

describe("a shared directory made in a parent just replaced", () => {
  it("is made again under its hidden name and renamed into place, not made plainly with the umask's mode", async () => {
    const base = fresh();
    await actualFs.mkdir(base);
    const locks = join(base, "locks");
    let refused = 0;
    hooks.beforeMkdir = async (path) => {
      if (basename(path).startsWith(".locks.mk-") && refused === 0) {
        refused += 1;
        throw enoent(path);
      }
    };
    await makeSharedDir(locks);
    expect(refused).toBe(1);
    expect(hooks.renamedTo).toEqual([locks]);
    expect((await stat(locks)).isDirectory()).toBe(true);
  });
});

describe("the first entry made in a shared directory (retryWhereReplaced)", () => {
  it("is made again when it failed ENOENT while the directory is there", async () => {
    const dir = fresh();
    await actualFs.mkdir(dir);
    let tries = 0;
    const made = await retryWhereReplaced(dir, async () => {
      tries += 1;
      if (tries === 1) throw enoent(join(dir, "x"));
      return "made";
    });
    expect(made).toBe("made");
    expect(tries).toBe(2);
  });

  it("fails as it did when the directory is gone, or on any other error, or after 3 tries", async () => {
    const gone = fresh();
    await expect(
      retryWhereReplaced(gone, async () => Promise.reject(enoent(gone))),
    ).rejects.toThrow(/ENOENT/);
    const dir = fresh();
    await actualFs.mkdir(dir);
    let tries = 0;
    const refused = Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    await expect(
      retryWhereReplaced(dir, async () => {
        tries += 1;
        throw refused;
      }),
    ).rejects.toBe(refused);
    expect(tries).toBe(1);
    tries = 0;
    await expect(
      retryWhereReplaced(dir, async () => {
        tries += 1;
        throw enoent(dir);
      }),
    ).rejects.toThrow(/ENOENT/);
    expect(tries).toBe(3);
  });

  it("an attempt whose tmp directory was replaced under its mkdir is made all the same", async () => {
    const location = locationIn(join(fresh(), "data"), "ds");
    let refused = 0;
    hooks.beforeMkdir = async (path) => {
      if (dirname(path) === location.tmpDir && refused === 0) {
        refused += 1;
        throw enoent(path);
      }
    };
    const attempt = await createAttempt(location);
    expect(refused).toBe(1);
    expect((await stat(attempt.dataDir)).isDirectory()).toBe(true);
  });

  it("a lock whose locks directory was replaced under its mkdir is taken all the same", async () => {
    const location = locationIn(join(fresh(), "data"), "ds");
    let refused = 0;
    hooks.beforeMkdir = async (path) => {
      if (path === location.lockPath && refused === 0) {
        refused += 1;
        throw enoent(path);
      }
    };
    const outcome = await acquireLock(location.lockPath, "ds", {
      timing: { staleMs: 30_000, pollMs: 100, waitMs: 1_000 },
    });
    expect(refused).toBe(1);
    expect(outcome.kind).toBe("acquired");
    if (outcome.kind === "acquired") await outcome.lock.release();
    await expect(stat(location.lockPath)).rejects.toThrow(/ENOENT/);
  });
});
