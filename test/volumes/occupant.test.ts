// occupant.ts: dsfetch replaces only what it published, of the same source. Found in review
// (2026-12-05): a directory it did not write at a final path (a hand-made data/imagenet, a
// user's /scratch/imagenet under an ephemeral root) was moved aside and deleted, and so was
// another source's dataset of the same name (s3://b/projA/train/ and s3://b/projB/train/
// are both "train") while jobs read it. And the clean-up took a dataset named pruned.* for
// prune's leftovers.
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DsfetchError } from "../../src/errors.ts";
import { createAttempt } from "../../src/volumes/attempt.ts";
import { cleanAbandonedAttempts } from "../../src/volumes/cleanup.ts";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { inspectStaged } from "../../src/volumes/inspect.ts";
import { type DatasetLocation, locationIn, sharedLocation } from "../../src/volumes/layout.ts";
import { readManifest } from "../../src/volumes/manifest.ts";
import {
  birthTimesHold,
  manifestOfTree,
  occupantProblem,
  occupantProblemIfKnown,
  pendingManifestPath,
  pendingNaming,
  removeStalePending,
  treeIdentity,
} from "../../src/volumes/occupant.ts";
import { removeTreeReporting } from "../../src/volumes/permissions.ts";
import { publish, SupersededWhilePublishing } from "../../src/volumes/publish.ts";
import type { StorageCall } from "../../src/volumes/storage-call.ts";
import { runCli } from "../harness/cli.ts";
import { startFaultProxy } from "../harness/fault-proxy.ts";
import { testManifest } from "../harness/manifests.ts";
import { createBucket, putObject, s3Info, testEnv } from "../harness/s3.ts";

/** Run once before the next readdir of node:fs/promises (a race's other side, made to land). */
const hooks = vi.hoisted(() => ({
  beforeReaddir: undefined as undefined | (() => Promise<void>),
}));
vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const readdir = async (...args: unknown[]) => {
    const hook = hooks.beforeReaddir;
    hooks.beforeReaddir = undefined;
    await hook?.();
    return (actual.readdir as (...a: unknown[]) => Promise<unknown>)(...args);
  };
  return { ...actual, readdir, default: { ...actual, readdir } };
});

const root = mkdtempSync(join(tmpdir(), "dsfetch-occupant-"));
afterAll(async () => {
  // Published trees are read-only.
  await removeTreeReporting(root, () => {});
});

const manifestOf = testManifest;

/** A fresh location and an attempt holding `file` ("new"). */
async function ready(label: string, file = "new.bin") {
  const location = locationIn(mkdtempSync(join(root, `${label}-`)), "ds");
  const attempt = await createAttempt(location);
  writeFileSync(join(attempt.dataDir, file), "new");
  return { location, attempt };
}

/** The pending manifests beside the dataset's manifest. */
function pendingManifests(location: DatasetLocation): string[] {
  const dir = dirname(location.manifestPath);
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.includes(".pending.")) : [];
}

/** The user's own directory, with a file in it. */
function usersDirectory(path: string): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, "mine.txt"), "the user's own bytes");
}

describe("publish: what stands at the final path", () => {
  it("a directory dsfetch did not write: PATH_TAKEN, left as it was, nothing moved aside", async () => {
    const { location, attempt } = await ready("foreign");
    usersDirectory(location.path);
    const error = await publish(attempt, location, manifestOf("s3://b/ds.bin", "e1", "new.bin"))
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "PATH_TAKEN",
      message: expect.stringContaining(
        `${location.path} is already there, and dsfetch did not publish it`,
      ),
      hint: expect.stringContaining("move"),
    });
    expect(readdirSync(location.path)).toEqual(["mine.txt"]);
    expect(readFileSync(join(location.path, "mine.txt"), "utf8")).toBe("the user's own bytes");
    expect(lstatSync(location.path).mode & 0o777).toBe(0o755);
    // Only our own attempt in the temporary directory: nothing of the user's moved there.
    expect(readdirSync(location.tmpDir)).toEqual([attempt.dir.split("/").at(-1)]);
    expect(existsSync(location.manifestPath)).toBe(false);
  });

  it("a symbolic link there (to the user's directory): refused, and nothing done through it", async () => {
    const { location, attempt } = await ready("link");
    const elsewhere = join(root, `users-${Date.now()}`);
    usersDirectory(elsewhere);
    symlinkSync(elsewhere, location.path);
    await expect(
      publish(attempt, location, manifestOf("s3://b/ds.bin", "e1", "new.bin")),
    ).rejects.toMatchObject({
      code: "PATH_TAKEN",
      message: `ds: ${location.path} is a symbolic link to ${elsewhere}, not a directory dsfetch published: dsfetch never replaces a symbolic link at a dataset's path nor follows it (nothing in ${elsewhere} is read or changed)`,
      hint: expect.stringMatching(/^remove the link \(not what it points to\): rm '/),
    });
    expect(lstatSync(location.path).isSymbolicLink()).toBe(true);
    expect(readdirSync(elsewhere)).toEqual(["mine.txt"]);
    expect(lstatSync(elsewhere).mode & 0o777).toBe(0o755);
  });

  it('a published dataset moved aside and a link put in its place: said to be a link (where to, rm it), also once the manifest\'s "tree" field is removed; nothing behind it touched (exploratory review, 2026-12-07)', async () => {
    const { location, attempt } = await ready("moved-link");
    expect(await publish(attempt, location, manifestOf("s3://b/ds.bin", "v1", "new.bin"))).toBe(
      "published",
    );
    // mv data/ds data/ds.old; ln -s /elsewhere data/ds
    const old = `${location.path}.old`;
    renameSync(location.path, old);
    const elsewhere = join(root, `elsewhere-${Date.now()}`);
    usersDirectory(elsewhere);
    symlinkSync(elsewhere, location.path);
    const before = lstatSync(elsewhere);
    const ours = { uri: "s3://b/ds.bin", endpoint: undefined };
    const linkError = {
      code: "PATH_TAKEN",
      message: expect.stringContaining(
        `${location.path} is a symbolic link to ${elsewhere}, not a directory dsfetch published: dsfetch never replaces a symbolic link at a dataset's path nor follows it`,
      ),
      found: `a symbolic link to ${elsewhere}`,
      hint: expect.stringContaining(
        `rm '${location.path}', and leave the manifest '${location.manifestPath}' as it is`,
      ),
    };
    const manifest = await readManifest(location.manifestPath);
    // The manifest names the tree moved away; before, it read "its manifest names another
    // directory than this one … a copy of the storage", with the hint to remove "tree".
    expect(await occupantProblem("ds", location, ours, manifest)).toMatchObject(linkError);
    expect((await occupantProblem("ds", location, ours, manifest))?.message ?? "").not.toContain(
      "names another directory",
    );
    // Following that hint: the manifest then vouched for the link, which was to be replaced.
    const { tree: _tree, ...untied } = manifest as unknown as Record<string, unknown>;
    writeFileSync(location.manifestPath, JSON.stringify(untied));
    expect(await manifestOfTree(location)).toBeUndefined();
    expect(
      await occupantProblem("ds", location, ours, await readManifest(location.manifestPath)),
    ).toMatchObject(linkError);
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "new.bin"), "new");
    await expect(
      publish(next, location, manifestOf("s3://b/ds.bin", "v2", "new.bin")),
    ).rejects.toMatchObject(linkError);
    // The link, what it points to and the moved tree: as they were; nothing moved aside.
    expect(lstatSync(location.path).isSymbolicLink()).toBe(true);
    expect(readdirSync(elsewhere)).toEqual(["mine.txt"]);
    expect(readFileSync(join(elsewhere, "mine.txt"), "utf8")).toBe("the user's own bytes");
    const after = lstatSync(elsewhere);
    expect([after.mode, after.mtimeMs, after.ctimeMs]).toEqual([
      before.mode,
      before.mtimeMs,
      before.ctimeMs,
    ]);
    expect(readdirSync(old)).toEqual(["new.bin"]);
    expect(readdirSync(location.tmpDir)).toEqual([next.dir.split("/").at(-1)]);
  });

  it("another source's dataset under the same name: PATH_TAKEN naming both, theirs left published", async () => {
    const { location, attempt: first } = await ready("other", "a.bin");
    const theirs = manifestOf("s3://b/projA/train.bin", "a1", "a.bin");
    expect(await publish(first, location, theirs)).toBe("published");
    const ours = await createAttempt(location);
    writeFileSync(join(ours.dataDir, "b.bin"), "new");
    const error = await publish(ours, location, manifestOf("s3://b/projB/train.bin", "b1", "b.bin"))
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "PATH_TAKEN",
      message: expect.stringContaining(
        `${location.path} holds s3://b/projA/train.bin, not s3://b/projB/train.bin`,
      ),
      hint: expect.stringContaining('its own "name"'),
    });
    expect(readdirSync(location.path)).toEqual(["a.bin"]);
    expect((await readManifest(location.manifestPath))?.uri).toBe("s3://b/projA/train.bin");
  });

  it("the same source's older data is replaced (the refresh of a dataset without an etag)", async () => {
    const { location, attempt: first } = await ready("same", "old.bin");
    expect(await publish(first, location, manifestOf("s3://b/ds.bin", "v1", "old.bin"))).toBe(
      "published",
    );
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "new.bin"), "new");
    expect(await publish(next, location, manifestOf("s3://b/ds.bin", "v2", "new.bin"))).toBe(
      "replaced",
    );
    expect(readdirSync(location.path)).toEqual(["new.bin"]);
    expect(pendingManifests(location)).toEqual([]);
  });

  it('the same source\'s dataset of another name there ("x" pinned to E at x-E, and "x-E" unpinned, of two arrays): PATH_TAKEN, the pinned copy kept; a name differing in case only is the same dataset', async () => {
    const { location, attempt: first } = await ready("named", "old.bin");
    const pinned = { ...manifestOf("s3://b/x.bin", "e1", "old.bin"), name: "x" };
    expect(await publish(first, location, pinned)).toBe("published");
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "new.bin"), "new");
    const newer = { ...manifestOf("s3://b/x.bin", "e2", "new.bin"), name: "x-e1" };
    const error = await publish(next, location, newer)
      .then(() => undefined)
      .catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: "PATH_TAKEN",
      message: expect.stringContaining(
        `${location.path} holds the dataset "x" (ETag e1) of the same source, whose directory this dataset's name makes too`,
      ),
      hint: expect.stringContaining('give this dataset another "name"'),
    });
    expect(readdirSync(location.path)).toEqual(["old.bin"]);
    expect((await readManifest(location.manifestPath))?.etag).toBe("e1");
    expect(
      await occupantProblem("X", location, { uri: "s3://b/x.bin", endpoint: undefined }, pinned),
    ).toBeUndefined();
  });

  it("a publish stopped after its tree went in (no manifest yet) is dsfetch's: the next run replaces it", async () => {
    const { location, attempt } = await ready("stopped");
    // As a SIGKILL between the two renames leaves it.
    let stopped = false;
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "v1", "new.bin"),
        async (what, work) => {
          if (what.startsWith(`making ${location.path} read-only`)) {
            stopped = true;
            throw new Error("killed");
          }
          return work(new AbortController().signal, () => {});
        },
      ),
    ).rejects.toThrow();
    expect(stopped).toBe(true);
    expect(readdirSync(location.path)).toEqual(["new.bin"]);
    expect(existsSync(location.manifestPath)).toBe(false);
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "new2.bin"), "new");
    expect(await publish(next, location, manifestOf("s3://b/ds.bin", "v2", "new2.bin"))).toBe(
      "replaced",
    );
    expect(readdirSync(location.path)).toEqual(["new2.bin"]);
  });

  it("a pending manifest left behind (its tree's rename given up on) vouches only for the tree it names", async () => {
    const { location, attempt } = await ready("stale");
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "v1", "new.bin"),
        async (what, work) => {
          if (what.startsWith(`renaming ${attempt.dataDir}`)) {
            throw new DsfetchError("STALLED", `ds: ${what} got no answer from the storage for 1 s`);
          }
          return work(new AbortController().signal, () => {});
        },
      ),
    ).rejects.toMatchObject({ code: "STALLED" });
    // Kept: the rename may still land.
    expect(pendingManifests(location)).toEqual([
      pendingManifestPath(location, attempt.dir).split("/").at(-1),
    ]);
    usersDirectory(location.path);
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "x.bin"), "new");
    await expect(
      publish(next, location, manifestOf("s3://b/ds.bin", "v2", "x.bin")),
    ).rejects.toMatchObject({ code: "PATH_TAKEN" });
    expect(readdirSync(location.path)).toEqual(["mine.txt"]);
  });

  it("a rename the storage refused (not given up on) withdraws its pending manifest", async () => {
    const { location, attempt } = await ready("refused");
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "v1", "new.bin"),
        async (what, work) => {
          if (what.startsWith(`renaming ${attempt.dataDir}`)) {
            throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
          }
          return work(new AbortController().signal, () => {});
        },
      ),
    ).rejects.toMatchObject({ code: "STORAGE" });
    expect(pendingManifests(location)).toEqual([]);
  });

  // Two publishers at once (a lock lost; an ephemeral volume has none): whatever the
  // interleaving, the tree at the final path is under its own manifest.
  it("another publisher's whole publish lands while ours renames: ours replaces it, under our manifest", async () => {
    const { location, attempt } = await ready("race-a", "a.bin");
    const other = await createAttempt(location);
    writeFileSync(join(other.dataDir, "b.bin"), "new");
    let raced = false;
    const outcome = await publish(
      attempt,
      location,
      manifestOf("s3://b/ds.bin", "va", "a.bin"),
      async (what, work) => {
        if (!raced && what.startsWith(`renaming ${attempt.dataDir}`)) {
          raced = true;
          expect(await publish(other, location, manifestOf("s3://b/ds.bin", "vb", "b.bin"))).toBe(
            "published",
          );
        }
        return work(new AbortController().signal, () => {});
      },
    );
    expect(outcome).toBe("replaced");
    expect(readdirSync(location.path)).toEqual(["a.bin"]);
    expect((await readManifest(location.manifestPath))?.etag).toBe("va");
    expect(pendingManifests(location)).toEqual([]);
  });

  for (const [theirs, expected] of [
    ["vb", "fails: another version is not what it resolved"],
    ["va", "is staged: the same data stands"],
  ] as const) {
    it(`another publisher swaps its tree in between our tree's rename and our manifest's (${theirs}): its manifest stands, never ours over its tree, and ours ${expected}`, async () => {
      const { location, attempt } = await ready(`race-b-${theirs}`, "a.bin");
      const other = await createAttempt(location);
      writeFileSync(join(other.dataDir, "b.bin"), "new");
      let raced = false;
      const publishing = publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "va", "a.bin"),
        async (what, work) => {
          if (!raced && what.startsWith(`making ${location.path} read-only`)) {
            raced = true;
            // Our tree is in, without its manifest: the other sees dsfetch's tree (our pending
            // manifest names it) and replaces it.
            expect(
              await publish(other, location, manifestOf("s3://b/ds.bin", theirs, "b.bin")),
            ).toBe("replaced");
          }
          return work(new AbortController().signal, () => {});
        },
      );
      if (theirs === "vb") {
        // Said to the caller with their manifest: it decides what the run uses
        // (stage-dataset.ts: an unpinned dataset uses theirs).
        const error = await publishing.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(SupersededWhilePublishing);
        expect(error).toMatchObject({
          message: expect.stringMatching(
            /swapped another version \(.*\) in at .* between this one's tree and its manifest$/,
          ),
          theirs: { etag: "vb" },
        });
      } else {
        expect(await publishing).toBe("already-published");
      }
      expect(readdirSync(location.path)).toEqual(["b.bin"]);
      expect((await readManifest(location.manifestPath))?.etag).toBe(theirs);
      expect(pendingManifests(location)).toEqual([]);
    });
  }

  it("another publisher of the same data swaps its tree in and has not written its manifest yet: ours stands down, staged", async () => {
    const { location, attempt } = await ready("race-d", "a.bin");
    const other = await createAttempt(location);
    writeFileSync(join(other.dataDir, "a.bin"), "new");
    let raced = false;
    const outcome = await publish(
      attempt,
      location,
      manifestOf("s3://b/ds.bin", "va", "a.bin"),
      async (what, work) => {
        if (!raced && what.startsWith(`making ${location.path} read-only`)) {
          raced = true;
          // The other replaces our tree (same data), and is stopped before its manifest.
          await expect(
            publish(other, location, manifestOf("s3://b/ds.bin", "va", "a.bin"), async (w, job) => {
              if (w.startsWith(`writing ${location.manifestPath}`)) throw new Error("killed");
              return job(new AbortController().signal, () => {});
            }),
          ).rejects.toThrow();
        }
        return work(new AbortController().signal, () => {});
      },
    );
    expect(outcome).toBe("already-published");
    expect(readdirSync(location.path)).toEqual(["a.bin"]);
  });

  it("a lost-lock race whose swap stops after the other's manifest went aside: the other's tree is still named, the next run replaces it", async () => {
    const { location, attempt } = await ready("race-c", "a.bin");
    const other = await createAttempt(location);
    writeFileSync(join(other.dataDir, "b.bin"), "new");
    let raced = false;
    await expect(
      publish(attempt, location, manifestOf("s3://b/ds.bin", "va", "a.bin"), async (what, work) => {
        if (!raced && what.startsWith(`renaming ${attempt.dataDir}`)) {
          raced = true;
          expect(await publish(other, location, manifestOf("s3://b/ds.bin", "vb", "b.bin"))).toBe(
            "published",
          );
        }
        const result = await work(new AbortController().signal, () => {});
        if (what.startsWith(`moving ${location.manifestPath} aside`)) {
          throw new DsfetchError("STALLED", `ds: ${what} got no answer from the storage for 1 s`);
        }
        return result;
      }),
    ).rejects.toMatchObject({ code: "STALLED" });
    // The other's tree, without its manifest (moved aside).
    expect(readdirSync(location.path)).toEqual(["b.bin"]);
    expect(existsSync(location.manifestPath)).toBe(false);
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "c.bin"), "new");
    expect(await publish(next, location, manifestOf("s3://b/ds.bin", "vc", "c.bin"))).toBe(
      "replaced",
    );
    expect(readdirSync(location.path)).toEqual(["c.bin"]);
  });

  it("birth times are recorded wherever new directories have them (this machine's / and /tmp have none: judged from them, every tree was known by its inode alone)", async () => {
    const { location, attempt } = await ready("birth");
    const born = lstatSync(attempt.dataDir, { bigint: true }).birthtimeNs;
    expect(await birthTimesHold(location.tmpDir)).toBe(born > 0n);
    expect((await treeIdentity(attempt.dataDir, location.tmpDir))?.birth).toBe(
      born > 0n ? String(born) : undefined,
    );
    // No probe left behind.
    expect(readdirSync(location.tmpDir).filter((name) => name.startsWith(".birth-probe"))).toEqual(
      [],
    );
  });

  it("a manifest naming the inode number of the directory there, with another birth time, does not vouch for it (an inode number given out again)", async () => {
    const { location, attempt } = await ready("reused");
    expect(await publish(attempt, location, manifestOf("s3://b/ds.bin", "v1", "new.bin"))).toBe(
      "published",
    );
    const published = await readManifest(location.manifestPath);
    const tree = (published as unknown as { tree: { ino: string; birth?: string } }).tree;
    if (tree.birth === undefined) return expect(await birthTimesHold(location.tmpDir)).toBe(false);
    // The same inode number, born at another time: as ext4 hands a freed inode to a new directory.
    writeFileSync(
      location.manifestPath,
      JSON.stringify({
        ...published,
        tree: { ino: tree.ino, birth: `${BigInt(tree.birth) + 1n}` },
      }),
    );
    expect(await manifestOfTree(location)).toBeUndefined();
    expect(
      await occupantProblem(
        "ds",
        location,
        { uri: "s3://b/ds.bin", endpoint: undefined },
        undefined,
      ),
    ).toMatchObject({
      code: "PATH_TAKEN",
    });
  });

  it("a reader that looked for the manifest just before its publisher renamed it into place: not refused", async () => {
    const { location, attempt } = await ready("reader");
    expect(await publish(attempt, location, manifestOf("s3://b/ds.bin", "v1", "new.bin"))).toBe(
      "published",
    );
    // As the reuse check read it: no manifest yet (undefined), and by now no pending one.
    expect(
      await occupantProblem(
        "ds",
        location,
        { uri: "s3://b/ds.bin", endpoint: undefined },
        undefined,
      ),
    ).toBeUndefined();
    expect(
      await occupantProblem(
        "ds",
        location,
        { uri: "s3://b/other.bin", endpoint: undefined },
        undefined,
      ),
    ).toMatchObject({
      code: "PATH_TAKEN",
    });
  });

  it("a refresh that lands between the look at the tree and the manifest's read: looked at again, not refused as another directory", async () => {
    const { location, attempt } = await ready("landed-between");
    expect(await publish(attempt, location, manifestOf("s3://b/ds.bin", "v1", "new.bin"))).toBe(
      "published",
    );
    const other = await createAttempt(location);
    writeFileSync(join(other.dataDir, "y.bin"), "new");
    // Once the tree was looked at (its pending manifests are read next), another worker's
    // whole refresh lands: its manifest names its own tree.
    hooks.beforeReaddir = async () => {
      expect(await publish(other, location, manifestOf("s3://b/ds.bin", "v2", "y.bin"))).toBe(
        "replaced",
      );
    };
    const problem = await occupantProblem(
      "ds",
      location,
      { uri: "s3://b/ds.bin", endpoint: undefined },
      undefined,
    );
    expect(hooks.beforeReaddir).toBeUndefined();
    expect(problem).toBeUndefined();
    expect(readdirSync(location.path)).toEqual(["y.bin"]);
  });

  it("a tree left by another source's stopped publish is that source's: refused", async () => {
    const { location, attempt } = await ready("stopped-other");
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/projA/ds.bin", "a1", "new.bin"),
        async (what, work) => {
          if (what.startsWith(`making ${location.path} read-only`)) throw new Error("killed");
          return work(new AbortController().signal, () => {});
        },
      ),
    ).rejects.toThrow();
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "b.bin"), "new");
    await expect(
      publish(next, location, manifestOf("s3://b/projB/ds.bin", "b1", "b.bin")),
    ).rejects.toMatchObject({
      code: "PATH_TAKEN",
      message: expect.stringContaining("holds s3://b/projA/ds.bin, not s3://b/projB/ds.bin"),
    });
    expect(readdirSync(location.path)).toEqual(["new.bin"]);
  });
});

describe("publish: second review", () => {
  const plain =
    (hook: (what: string) => void | Promise<void>): StorageCall =>
    async (what, work) => {
      await hook(what);
      return work(new AbortController().signal, () => {});
    };

  it("a rename that landed and then reported an error keeps its pending manifest: the next run replaces the tree", async () => {
    const { location, attempt } = await ready("landed");
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "v1", "new.bin"),
        async (what, work) => {
          const result = await work(new AbortController().signal, () => {});
          if (what.startsWith(`renaming ${attempt.dataDir}`)) {
            throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
          }
          return result;
        },
      ),
    ).rejects.toMatchObject({ code: "STORAGE" });
    expect(readdirSync(location.path)).toEqual(["new.bin"]);
    expect(pendingManifests(location)).toHaveLength(1);
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "next.bin"), "nxt");
    expect(await publish(next, location, manifestOf("s3://b/ds.bin", "v2", "next.bin"))).toBe(
      "replaced",
    );
    expect(readdirSync(location.path)).toEqual(["next.bin"]);
  });

  it("a swap put back after a storage error restores the old manifest even when the chmod is refused (another user's tree)", async () => {
    const { location, attempt: first } = await ready("putback", "old.bin");
    expect(await publish(first, location, manifestOf("s3://b/ds.bin", "v1", "old.bin"))).toBe(
      "published",
    );
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "new.bin"), "new");
    let swapFailed = false;
    await expect(
      publish(
        next,
        location,
        manifestOf("s3://b/ds.bin", "v2", "new.bin"),
        plain((what) => {
          if (what.startsWith(`renaming ${next.dataDir}`)) {
            swapFailed = true;
            throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
          }
          if (swapFailed && what.startsWith(`making ${location.path} read-only`)) {
            throw Object.assign(new Error("EPERM: operation not permitted"), { code: "EPERM" });
          }
        }),
      ),
    ).rejects.toMatchObject({ code: "STORAGE" });
    expect(readdirSync(location.path)).toEqual(["old.bin"]);
    expect((await readManifest(location.manifestPath))?.etag).toBe("v1");
  });

  it("our tree moved away before our manifest went in, nothing in its place: an error, not 'staged'", async () => {
    const { location, attempt } = await ready("moved");
    const elsewhere = join(root, `moved-away-${Date.now()}`);
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "v1", "new.bin"),
        plain((what) => {
          if (what === `syncing ${dirname(location.path)}`) renameSync(location.path, elsewhere);
        }),
      ),
    ).rejects.toMatchObject({
      theirs: undefined,
      message: expect.stringContaining("was moved away by another process"),
    });
    expect(existsSync(location.manifestPath)).toBe(false);
    expect(pendingManifests(location)).toEqual([]);
  });

  it("a manifest over another tree than the one it names does not vouch for it (a user's directory where the dataset was removed by hand)", async () => {
    const { location, attempt } = await ready("by-hand");
    expect(await publish(attempt, location, manifestOf("s3://b/ds.bin", "v1", "new.bin"))).toBe(
      "published",
    );
    await removeTreeReporting(location.path, () => {});
    usersDirectory(location.path);
    expect((await inspectStaged(location)).manifest).toBeUndefined();
    const next = await createAttempt(location);
    writeFileSync(join(next.dataDir, "x.bin"), "new");
    await expect(
      publish(next, location, manifestOf("s3://b/ds.bin", "v2", "x.bin")),
    ).rejects.toMatchObject({ code: "PATH_TAKEN" });
    expect(readdirSync(location.path)).toEqual(["mine.txt"]);
  });

  it("the look before a download does not judge storage it cannot read (the storage check decides)", async () => {
    const location = locationIn(mkdtempSync(join(root, "unreadable-")), "x".repeat(300));
    await expect(
      occupantProblem("ds", location, { uri: "s3://b/ds.bin", endpoint: undefined }, undefined),
    ).rejects.toMatchObject({
      code: "ENAMETOOLONG",
    });
    expect(
      await occupantProblemIfKnown(
        "ds",
        location,
        { uri: "s3://b/ds.bin", endpoint: undefined },
        undefined,
      ),
    ).toBeUndefined();
  });

  it("stale pending manifests are removed by the clean-up; one naming the tree at the path, or of a live attempt, stays", async () => {
    const { location, attempt } = await ready("stale-sweep");
    // A publish stopped after its tree went in: its pending manifest names the tree there.
    await expect(
      publish(
        attempt,
        location,
        manifestOf("s3://b/ds.bin", "v1", "new.bin"),
        plain((what) => {
          if (what.startsWith(`making ${location.path} read-only`)) throw new Error("killed");
        }),
      ),
    ).rejects.toThrow();
    const naming = pendingManifestPath(location, attempt.dir);
    const dir = dirname(location.manifestPath);
    const gone = join(dir, "ds.json.pending.ds.host.1.dead");
    writeFileSync(gone, JSON.stringify({ uri: "s3://b/ds.bin", tree: { ino: "1" } }));
    writeFileSync(`${gone}x.tmp`, "{");
    const live = await createAttempt(location);
    const livePending = pendingManifestPath(location, live.dir);
    writeFileSync(livePending, JSON.stringify({ uri: "s3://b/ds.bin", tree: { ino: "2" } }));
    // Its own attempt directory is gone too (an abandoned attempt removed).
    await removeTreeReporting(attempt.dir, () => {});
    await cleanAbandonedAttempts(location, Number.POSITIVE_INFINITY);
    expect(pendingManifests(location).sort()).toEqual(
      [naming, livePending].map((path) => path.split("/").at(-1)).sort(),
    );
  });

  it("a pending manifest that names a tree as the one it replaces does not describe it when the one going in is asked for", async () => {
    // What a publish superseded at its last step reads as the other worker's version: a third
    // publisher's pending manifest naming that tree as the one it replaces gave its
    // metadata, of other data (second review, 2026-12-07).
    const { location, attempt } = await ready("going-in");
    mkdirSync(location.path);
    const there = await treeIdentity(location.path);
    if (there === undefined) throw new Error("no tree");
    mkdirSync(dirname(location.manifestPath), { recursive: true });
    const third = { uri: "s3://b/ds.bin", name: "ds", etag: "third", tree: { ino: "1" } };
    writeFileSync(
      pendingManifestPath(location, attempt.dir),
      JSON.stringify({ ...third, replacing: there }),
    );
    expect((await pendingNaming(location, there))?.etag).toBe("third");
    expect(await pendingNaming(location, there, { goingIn: true })).toBeUndefined();
    const other = await createAttempt(location);
    writeFileSync(
      pendingManifestPath(location, other.dir),
      JSON.stringify({ ...third, etag: "theirs", tree: there }),
    );
    expect((await pendingNaming(location, there, { goingIn: true }))?.etag).toBe("theirs");
  });

  it("the sweep of dataset y leaves alone the manifest of a dataset named y.json.pending.abc", async () => {
    const data = mkdtempSync(join(root, "pending-name-"));
    const y = locationIn(data, "y");
    const other = locationIn(data, "y.json.pending.abc");
    mkdirSync(dirname(other.manifestPath), { recursive: true });
    writeFileSync(other.manifestPath, JSON.stringify({ uri: "s3://b/other/", tree: { ino: "7" } }));
    expect(await removeStalePending(y)).toBe(0);
    expect(readdirSync(dirname(other.manifestPath))).toEqual(["y.json.pending.abc.json"]);
  });
});

describe("dsfetch fetch next to data it did not write", () => {
  let bucket: string;
  beforeAll(async () => {
    bucket = await createBucket("occupant");
    await putObject(bucket, "projA/train/a.txt", "alpha");
    await putObject(bucket, "projB/train/b.txt", "beta");
    await putObject(bucket, "projA/train.bin", "alpha");
    await putObject(bucket, "projB/train.bin", "beta");
  });

  async function fetch(datasets: unknown, flags: string[], env: Record<string, string> = {}) {
    const result = await runCli(["fetch", "--datasets", "-", "--json", ...flags], {
      env: { ...testEnv(), ...env },
      stdin: JSON.stringify(datasets),
    });
    return {
      ...result,
      entries: (result.stdout === "" ? { datasets: [] } : JSON.parse(result.stdout)).datasets as {
        error?: { code: string; message: string };
      }[],
    };
  }

  it("a hand-made directory in shared storage: exit 7, PATH_TAKEN, its files untouched", async () => {
    const storage = mkdtempSync(join(root, "cli-shared-"));
    const path = sharedLocation(storage, "t", "train", undefined).path;
    usersDirectory(path);
    const run = await fetch(
      [{ uri: `s3://${bucket}/projA/train/` }],
      ["--storage-root", storage, "--team", "t"],
    );
    expect(run.code).toBe(7);
    expect(run.entries[0]?.error).toMatchObject({ code: "PATH_TAKEN" });
    expect(run.entries[0]?.error?.message).toContain("dsfetch did not publish it");
    expect(readdirSync(path)).toEqual(["mine.txt"]);
    expect(readFileSync(join(path, "mine.txt"), "utf8")).toBe("the user's own bytes");
  });

  it("plan says so too, before any fetch", async () => {
    const storage = mkdtempSync(join(root, "cli-plan-"));
    usersDirectory(sharedLocation(storage, "t", "train", undefined).path);
    const result = await runCli(
      ["plan", "--datasets", "-", "--json", "--storage-root", storage, "--team", "t"],
      { env: testEnv(), stdin: JSON.stringify([{ uri: `s3://${bucket}/projA/train/` }]) },
    );
    expect(result.code).toBe(7);
    expect(JSON.parse(result.stdout).datasets[0]).toMatchObject({
      error: { code: "PATH_TAKEN", message: expect.stringContaining("dsfetch did not publish it") },
    });
  });

  it("a user's directory under the ephemeral root: exit 7, left as it was", async () => {
    const ephemeral = mkdtempSync(join(root, "cli-eph-"));
    usersDirectory(join(ephemeral, "train"));
    const run = await fetch(
      [{ uri: `s3://${bucket}/projA/train/`, volumeOptions: { kind: "dynamic", size: "1Mi" } }],
      ["--ephemeral-root", ephemeral],
    );
    expect(run.code).toBe(7);
    expect(run.entries[0]?.error).toMatchObject({ code: "PATH_TAKEN" });
    expect(readdirSync(join(ephemeral, "train"))).toEqual(["mine.txt"]);
  });

  it("two sources named alike, one after the other: the second fails before any download (exit 7), the first stays", async () => {
    const storage = mkdtempSync(join(root, "cli-two-"));
    const flags = ["--storage-root", storage, "--team", "t"];
    const proxy = await startFaultProxy(s3Info().endpoint);
    try {
      const viaProxy = { AWS_ENDPOINT_URL: proxy.endpoint };
      expect((await fetch([{ uri: `s3://${bucket}/projA/train.bin` }], flags, viaProxy)).code).toBe(
        0,
      );
      proxy.resetCounters();
      const second = await fetch([{ uri: `s3://${bucket}/projB/train.bin` }], flags, viaProxy);
      expect(second.code).toBe(7);
      expect(second.entries[0]?.error?.message).toContain(
        `holds s3://${bucket}/projA/train.bin, not s3://${bucket}/projB/train.bin`,
      );
      // Said before the download: its HEAD only, no GET of its bytes.
      expect(proxy.requests.filter((request) => request.method === "GET")).toEqual([]);
    } finally {
      await proxy.close();
    }
    // Both are named "train.bin" (the name of an object that is no archive is its key's basename).
    const path = sharedLocation(storage, "t", "train.bin", undefined).path;
    expect(readdirSync(path)).toEqual(["train.bin"]);
    expect(readFileSync(join(path, "train.bin"), "utf8")).toBe("alpha");
    expect(readdirSync(locationIn(join(storage, "t", "data"), "train.bin").tmpDir)).toEqual([]);
  });
});

describe("clean-up of leftovers", () => {
  it("takes a dataset named pruned.* for no leftover; removes prune's and publish's own when idle", async () => {
    const location = locationIn(mkdtempSync(join(root, "cleanup-")), "other");
    const tmp = location.tmpDir;
    // A live attempt (this process) of the dataset "pruned.resnet50", idle for an hour.
    const host = hostLabel();
    const live = join(tmp, `pruned.resnet50.${host}.${process.pid}.abcdef`);
    const leftovers = [join(tmp, "pruned.0123456789ab"), join(tmp, "replaced.0123456789ab")];
    for (const dir of [live, ...leftovers]) mkdirSync(join(dir, "data"), { recursive: true });
    writeFileSync(join(tmp, "replaced.0123456789ab.json"), "{}");
    const hourAgo = new Date(Date.now() - 3_600_000);
    for (const path of [live, ...leftovers, join(tmp, "replaced.0123456789ab.json")]) {
      utimesSync(path, hourAgo, hourAgo);
      if (existsSync(join(path, "data"))) utimesSync(join(path, "data"), hourAgo, hourAgo);
    }
    expect(await cleanAbandonedAttempts(location, 60_000)).toBe(3);
    expect(readdirSync(tmp)).toEqual([live.split("/").at(-1)]);
  });
});
