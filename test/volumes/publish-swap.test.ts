// publish.ts replacing older data, stopped at each step (a call given up on, as on hung
// storage, whether or not it landed): the final path holds no tree, or a complete one that
// is never under another version's manifest. Found in review: a rename that landed after its
// call was given up on left the new bytes under the old manifest, and a later run reused
// them as the old version. And removeTreeReporting, which the removals after it use.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import { StorageCalls } from "../../src/stage/storage-calls.ts";
import { createAttempt } from "../../src/volumes/attempt.ts";
import { type DatasetLocation, locationIn } from "../../src/volumes/layout.ts";
import { type Manifest, readManifest, type WrittenFiles } from "../../src/volumes/manifest.ts";
import { removeTreeReporting } from "../../src/volumes/permissions.ts";
import { publish } from "../../src/volumes/publish.ts";
import type { StorageCall } from "../../src/volumes/storage-call.ts";
import { testManifest } from "../harness/manifests.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-publish-swap-"));
afterAll(async () => {
  // Published trees are read-only.
  await removeTreeReporting(root, () => {});
});

function manifestOf(etag: string, file: string): Manifest<WrittenFiles> {
  return testManifest("s3://b/ds.bin", etag, file);
}

/** Version "old" published at a fresh location, and an attempt holding version "new". */
async function oldPublishedNewReady(label: string) {
  const parent = mkdtempSync(join(root, `${label}-`));
  const location = locationIn(parent, "ds");
  const first = await createAttempt(location);
  writeFileSync(join(first.dataDir, "old.bin"), "old");
  expect(await publish(first, location, manifestOf("old", "old.bin"))).toBe("published");
  const attempt = await createAttempt(location);
  writeFileSync(join(attempt.dataDir, "new.bin"), "new");
  return { location, attempt };
}

/**
 * A call that gives up on the `nth` call whose description starts with `prefix`: with
 * `landed`, after the call ran (it answered too late), otherwise without running it.
 */
function givingUpOn(prefix: string, landed: boolean, nth = 1): StorageCall {
  let seen = 0;
  return async (what, work) => {
    const run = () => work(new AbortController().signal, () => {});
    if (!what.startsWith(prefix) || ++seen !== nth) return run();
    if (landed) await run();
    throw new DsfetchError("STALLED", `ds: ${what} got no answer from the storage for 1 s`);
  };
}

/** The tree at the final path, and the version its manifest names ("none" without one). */
async function state(location: DatasetLocation) {
  const tree = existsSync(location.path) ? readdirSync(location.path) : "no tree";
  return { tree, manifest: (await readManifest(location.manifestPath))?.etag ?? "none" };
}

describe("publish replacing older data, stopped at a step", () => {
  it("as a control, not stopped: the new tree under the new manifest, nothing left aside", async () => {
    const { location, attempt } = await oldPublishedNewReady("control");
    expect(await publish(attempt, location, manifestOf("new", "new.bin"))).toBe("replaced");
    expect(await state(location)).toEqual({ tree: ["new.bin"], manifest: "new" });
    expect(readdirSync(location.tmpDir)).toEqual([]);
  });

  // Each step, given up on before it ran and after it landed: what a later run finds. A
  // tree is only ever under its own manifest, or under none (then replaced by that run).
  const cases: [
    string,
    (l: DatasetLocation, a: { dataDir: string }) => string,
    number,
    boolean,
    unknown,
  ][] = [
    [
      "the old manifest moved aside",
      (l) => `moving ${l.manifestPath} aside`,
      1,
      false,
      { tree: ["old.bin"], manifest: "old" },
    ],
    [
      "the old manifest moved aside",
      (l) => `moving ${l.manifestPath} aside`,
      1,
      true,
      { tree: ["old.bin"], manifest: "none" },
    ],
    [
      "the old tree moved aside",
      (l) => `renaming ${l.path} to`,
      1,
      false,
      { tree: ["old.bin"], manifest: "none" },
    ],
    [
      "the old tree moved aside",
      (l) => `renaming ${l.path} to`,
      1,
      true,
      { tree: "no tree", manifest: "none" },
    ],
    [
      "the new tree moved in",
      (_l, a) => `renaming ${a.dataDir} to`,
      1,
      false,
      { tree: "no tree", manifest: "none" },
    ],
    [
      "the new tree moved in",
      (_l, a) => `renaming ${a.dataDir} to`,
      1,
      true,
      { tree: ["new.bin"], manifest: "none" },
    ],
    [
      "the new manifest written",
      (l) => `writing ${l.manifestPath}`,
      1,
      false,
      { tree: ["new.bin"], manifest: "none" },
    ],
    [
      "the new manifest written",
      (l) => `writing ${l.manifestPath}`,
      1,
      true,
      { tree: ["new.bin"], manifest: "new" },
    ],
  ];
  for (const [step, what, nth, landed, expected] of cases) {
    it(`given up on at ${step} (${landed ? "the call landed" : "it never ran"}): ${JSON.stringify(expected)}`, async () => {
      const { location, attempt } = await oldPublishedNewReady("step");
      const afterSwap: { mayStillLand: boolean }[] = [];
      await expect(
        publish(
          attempt,
          location,
          manifestOf("new", "new.bin"),
          givingUpOn(what(location, attempt), landed, nth),
          {
            beforeReplacing: async () => true,
            afterReplacing: async (swap) => {
              afterSwap.push(swap);
            },
          },
        ),
      ).rejects.toMatchObject({ code: "STALLED" });
      expect(await state(location)).toEqual(expected);
      // Told once; a rename of the swap given up on may still land (a removal notice stays).
      expect(afterSwap).toEqual([{ mayStillLand: step !== "the new manifest written" }]);
      // And what it left is known to be dsfetch's (the pending manifest names it: occupant.ts):
      // the next run replaces it, where a directory dsfetch did not write is refused.
      const next = await createAttempt(location);
      writeFileSync(join(next.dataDir, "next.bin"), "nxt");
      await expect(publish(next, location, manifestOf("next", "next.bin"))).resolves.toMatch(
        /^(published|replaced)$/,
      );
      expect(await state(location)).toEqual({ tree: ["next.bin"], manifest: "next" });
    });
  }

  it("over a published empty tree (rename(2) would replace it): the old manifest never names the new tree", async () => {
    const parent = mkdtempSync(join(root, "empty-"));
    const location = locationIn(parent, "ds");
    const first = await createAttempt(location);
    expect(
      await publish(first, location, { ...manifestOf("old", "old.bin"), files: [], bytes: 0 }),
    ).toBe("published");
    const attempt = await createAttempt(location);
    writeFileSync(join(attempt.dataDir, "new.bin"), "new");
    await expect(
      publish(
        attempt,
        location,
        manifestOf("new", "new.bin"),
        givingUpOn(`writing ${location.manifestPath}`, false),
      ),
    ).rejects.toMatchObject({ code: "STALLED" });
    expect(await state(location)).toEqual({ tree: ["new.bin"], manifest: "none" });
  });

  it("an interrupt during the swap or after it (a real clock) stops nothing half-way: the new data is in, under its manifest", async () => {
    const steps: [(l: DatasetLocation, a: { dir: string; dataDir: string }) => string, string][] = [
      // Before anything moved: not begun.
      [(_l, a) => `syncing ${a.dir}`, "old"],
      // The swap, then what follows it: finished.
      [(l) => `moving ${l.manifestPath} aside`, "new"],
      [(l) => `making ${l.path} writable`, "new"],
      [(l) => `renaming ${l.path} to`, "new"],
      [() => "touching", "new"],
      [(_l, a) => `renaming ${a.dataDir} to`, "new"],
      [(l) => `making ${l.path} read-only`, "new"],
      [(l) => `writing ${l.manifestPath}`, "new"],
    ];
    for (const [prefixOf, version] of steps) {
      const { location, attempt } = await oldPublishedNewReady("interrupt");
      const step = prefixOf(location, attempt);
      const abort = new AbortController();
      const storage = new StorageCalls({
        dataset: "ds",
        stallMs: 60_000,
        graceMs: 5_000,
        signal: abort.signal,
      });
      // The interrupt comes while the step runs (it answers 200 ms later).
      const slowStep: StorageCall = (what, work, options) =>
        storage.call(
          what,
          async (signal, progressed) => {
            if (what.startsWith(step)) {
              abort.abort(new Error("SIGTERM"));
              await new Promise((resolve) => setTimeout(resolve, 200));
            }
            return work(signal, progressed);
          },
          options,
        );
      await publish(attempt, location, manifestOf("new", "new.bin"), slowStep).catch(
        () => undefined,
      );
      // Finished, manifest included (the caller reports the interrupt), or not begun (the
      // interrupt came while syncing, before anything moved): never "no tree", nor a complete
      // download without its manifest, fetched again by the next run.
      expect(await state(location), step).toEqual({ tree: [`${version}.bin`], manifest: version });
    }
  });

  it("a clean-up that fails once the new data is in (an NFS .nfs file, EBUSY) does not fail the publish", async () => {
    const { location, attempt } = await oldPublishedNewReady("cleanup-fails");
    const failingRemovals: StorageCall = async (what, work) => {
      if (what.startsWith("removing ")) {
        throw Object.assign(new Error("EBUSY: resource busy or locked, rmdir"), { code: "EBUSY" });
      }
      return work(new AbortController().signal, () => {});
    };
    expect(await publish(attempt, location, manifestOf("new", "new.bin"), failingRemovals)).toBe(
      "replaced",
    );
    expect(await state(location)).toEqual({ tree: ["new.bin"], manifest: "new" });
  });

  it("a put-back never restores the old manifest over another replacer's tree", async () => {
    const { location, attempt } = await oldPublishedNewReady("other-replacer");
    const racing: StorageCall = async (what, work) => {
      if (what.startsWith(`renaming ${location.path} to`)) {
        // Meanwhile another worker (its lock lost) moved the old tree aside and its own in:
        // ours finds no tree to move.
        renameSync(location.path, `${location.path}.theirs-aside`);
        mkdirSync(location.path);
        writeFileSync(join(location.path, "theirs.bin"), "theirs");
        throw Object.assign(new Error("ENOENT: no such file or directory, rename"), {
          code: "ENOENT",
        });
      }
      return work(new AbortController().signal, () => {});
    };
    await expect(
      publish(attempt, location, manifestOf("new", "new.bin"), racing),
    ).rejects.toMatchObject({ code: "STORAGE" });
    expect(await state(location)).toEqual({ tree: ["theirs.bin"], manifest: "none" });
  });

  it("a stale answer to beforeReplacing (the removal notice not kept fresh) is asked for again; still stale the third time, nothing is replaced", async () => {
    const fresh = await oldPublishedNewReady("honoured");
    let asked = 0;
    const honoured = [false, true];
    expect(
      await publish(fresh.attempt, fresh.location, manifestOf("new", "new.bin"), undefined, {
        beforeReplacing: async () => {
          asked += 1;
          return true;
        },
        replacingHonoured: () => honoured.shift() ?? true,
      }),
    ).toBe("replaced");
    expect(asked).toBe(2);
    expect(await state(fresh.location)).toEqual({ tree: ["new.bin"], manifest: "new" });

    const stale = await oldPublishedNewReady("never-honoured");
    asked = 0;
    const afterSwap: { mayStillLand: boolean }[] = [];
    await expect(
      publish(stale.attempt, stale.location, manifestOf("new", "new.bin"), undefined, {
        beforeReplacing: async () => {
          asked += 1;
          return true;
        },
        afterReplacing: async (swap) => {
          afterSwap.push(swap);
        },
        replacingHonoured: () => false,
      }),
    ).rejects.toMatchObject({
      code: "STORAGE",
      message: expect.stringContaining("answered too slowly to replace"),
    });
    expect(asked).toBe(3);
    expect(afterSwap).toEqual([{ mayStillLand: false }]);
    expect(await state(stale.location)).toEqual({ tree: ["old.bin"], manifest: "old" });

    // Honoured at the look, lapsed by the old tree's rename (the manifest already aside):
    // nothing moves, the manifest is put back.
    const lapsing = await oldPublishedNewReady("lapsing");
    const answers = [true, false];
    await expect(
      publish(lapsing.attempt, lapsing.location, manifestOf("new", "new.bin"), undefined, {
        beforeReplacing: async () => true,
        replacingHonoured: () => answers.shift() ?? false,
      }),
    ).rejects.toMatchObject({
      code: "STORAGE",
      message: expect.stringContaining("answered too slowly to replace"),
    });
    expect(answers).toEqual([]);
    expect(await state(lapsing.location)).toEqual({ tree: ["old.bin"], manifest: "old" });
    expect(statSync(lapsing.location.path).mode & 0o777).toBe(0o555);
  });

  it("an error from the storage at the new tree's rename puts the old tree and manifest back", async () => {
    const { location, attempt } = await oldPublishedNewReady("put-back");
    let renames = 0;
    const failing: StorageCall = async (what, work) => {
      if (what.startsWith(`renaming ${attempt.dataDir}`) && ++renames === 1) {
        throw Object.assign(new Error("EIO: i/o error, rename"), { code: "EIO" });
      }
      return work(new AbortController().signal, () => {});
    };
    const afterSwap: { mayStillLand: boolean }[] = [];
    await expect(
      publish(attempt, location, manifestOf("new", "new.bin"), failing, {
        afterReplacing: async (swap) => {
          afterSwap.push(swap);
          // Never the publish's answer.
          throw new Error("a failing hook");
        },
      }),
    ).rejects.toMatchObject({
      code: "STORAGE",
    });
    expect(afterSwap).toEqual([{ mayStillLand: false }]);
    expect(await state(location)).toEqual({ tree: ["old.bin"], manifest: "old" });
    expect(readFileSync(join(location.path, "old.bin"), "utf8")).toBe("old");
    // Read-only again (it was made writable to be moved).
    expect(statSync(location.path).mode & 0o777).toBe(0o555);
  });
});

describe("removeTreeReporting", () => {
  it("removes a read-only tree with links (never followed), reporting every entry", async () => {
    const tree = mkdtempSync(join(root, "tree-"));
    const outside = mkdtempSync(join(root, "outside-"));
    writeFileSync(join(outside, "keep.txt"), "keep");
    mkdirSync(join(tree, "a", "b"), { recursive: true });
    writeFileSync(join(tree, "a", "b", "f.txt"), "f");
    writeFileSync(join(tree, "top.txt"), "t");
    symlinkSync(outside, join(tree, "a", "link"));
    await chmod(join(tree, "a", "b"), 0o555);
    await chmod(join(tree, "a"), 0o555);
    let reported = 0;
    await removeTreeReporting(tree, () => reported++);
    expect(existsSync(tree)).toBe(false);
    // f.txt, b, link, a, top.txt, the root itself.
    expect(reported).toBe(6);
    expect(readdirSync(outside)).toEqual(["keep.txt"]);
  });

  it("a path that is gone already is no error", async () => {
    await expect(removeTreeReporting(join(root, "never-there"), () => {})).resolves.toBeUndefined();
    rmSync(join(root, "never-there"), { force: true });
  });
});
