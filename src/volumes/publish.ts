/**
 * Publishing is what makes a dataset visible, and it is atomic: the verified tree is made
 * durable, then moved to its final path with one rename(2) on the same filesystem. A
 * directory at a final path is therefore always complete. The manifest follows it.
 * Correctness never depends on the lock: when two publishers race, the first rename wins
 * and the second removes only its own attempt.
 */

import { randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { lstat, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DsfetchError } from "../errors.ts";
import { syncStorageCallsAhead } from "../util/main-thread-beat.ts";
import { type Attempt, storageError } from "./attempt.ts";
import { inspectStaged, type StagedState } from "./inspect.ts";
import type { DatasetLocation } from "./layout.ts";
import { type Manifest, type WrittenFiles, writeManifest } from "./manifest.ts";
import { chmodDir, touchDir } from "./no-follow.ts";
import {
  manifestOfTree,
  occupantProblem,
  type PendingManifest,
  pathHoldsNamedTree,
  pendingManifestPath,
  pendingNaming,
  sameTree,
  type TreeIdentity,
  treeIdentity,
} from "./occupant.ts";
import { makeReadOnly, makeWritable, removeTreeReporting } from "./permissions.ts";
import { makeSharedDir, retryWhereReplaced } from "./shared-dirs.ts";
import { type StorageCall, unboundedCall } from "./storage-call.ts";
import { fsyncDirectory, SYNC_LIMIT_MS, syncTree } from "./sync-tree.ts";
import { sealTree } from "./tree-seal.ts";

/** "kept": the tree at the final path was left in place (PublishOptions.beforeReplacing). */
export type PublishOutcome = "published" | "replaced" | "already-published" | "kept";

/**
 * Our tree went in, and before our manifest did, another worker (that took our lock over)
 * swapped its own in: another version, or one whose manifest is not in yet (`theirs`
 * undefined). The caller decides what the run uses (stage-dataset.ts): it failed STORAGE
 * "cannot write to …", and `run` never started its command, after a pause at that moment
 * (exploratory tester 2, 2026-12-07).
 */
export class SupersededWhilePublishing extends Error {
  readonly theirs: Manifest | undefined;

  constructor(message: string, theirs: Manifest | undefined) {
    super(message);
    this.name = "SupersededWhilePublishing";
    this.theirs = theirs;
  }
}

export interface PublishOptions {
  /**
   * Asked right before a tree at the final path is swapped out (after the sync, the last
   * moment): false leaves it in place, and ours goes. The refresh of a dataset in use reads
   * the leases here (stage-dataset.ts): read only before the sync, a job that took its lease
   * during the sync (seconds for a large tree) had the dataset replaced under it (review).
   */
  readonly beforeReplacing?: () => Promise<boolean>;
  /**
   * Called once the swap asked about is over, made or not (and after beforeReplacing threw);
   * `mayStillLand`: one of its renames was given up on and may still land. The refresh takes
   * its removal notice down here (removal-notice.ts), or leaves it up when it may still land.
   */
  readonly afterReplacing?: (swap: { readonly mayStillLand: boolean }) => Promise<void>;
  /**
   * False when the answer of beforeReplacing may be stale by the time of the swap (the
   * refresh's removal notice was not kept fresh: removal-notice.ts honoured()); then it is
   * asked again.
   */
  readonly replacingHonoured?: () => boolean;
  /**
   * How a copy at the final path is looked at (default inspectStaged): the staging's own, which
   * takes a copy `--verify` found damaged for a changed one (stage-dataset.ts inspectHere);
   * inspectStaged alone kept it as ours ("same") and dropped the fresh download.
   */
  readonly inspect?: ((progressed: () => void) => Promise<StagedState>) | undefined;
}

/** Whether a manifest found at the final path describes the same data as ours. */
export function sameData(a: Manifest, b: Manifest): boolean {
  if (a.kind !== b.kind || a.uri !== b.uri) return false;
  if (a.kind === "prefix") return a.listingDigest === b.listingDigest;
  return a.etag === b.etag && (a.versionId ?? undefined) === (b.versionId ?? undefined);
}

/**
 * `call` bounds each call on the storage (stage/storage-calls.ts); a call it gives up on
 * fails the publish with its error, and no later step runs.
 */
export async function publish(
  attempt: Attempt,
  location: DatasetLocation,
  manifest: Manifest<WrittenFiles>,
  call: StorageCall = unboundedCall,
  options: PublishOptions = {},
): Promise<PublishOutcome> {
  /** The manifest with the tree's seal, once the tree is read-only and synced. */
  let sealed: Manifest<WrittenFiles> = manifest;
  try {
    await call(`writing ${attempt.manifestPath}`, () =>
      writeManifest(attempt.manifestPath, manifest),
    );
    // Read-only below the root now; the root itself after the rename (moving a directory
    // to another parent needs write permission on it, to update its ".."). Every file in an
    // attempt comes from our own writers, created read-only (permissions.ts).
    // A tree (folder, archive) is walked with synchronous calls: watched (a one-file
    // dataset's walk is one directory, and a watcher thread is not free: main-thread-beat.ts).
    if (manifest.files.length > 1) syncStorageCallsAhead();
    await makeReadOnly(attempt.dataDir, { keepRoot: true, filesCreatedReadOnly: true });
    // Its own bound too: a whole filesystem's dirty data (other writers' included).
    const syncing = call(
      `syncing ${attempt.dir}`,
      (signal, progressed) => syncTree(attempt.dir, signal, progressed),
      {
        atLeastMs: SYNC_LIMIT_MS + 5_000,
      },
    );
    // Sealed as it goes in (tree-seal.ts): a later run finds a tree changed since (a job of
    // the same user that made it writable and wrote to it), and stages it again. While
    // `sync -f` runs (a child process): ~0.2 s for 20,000 files, hidden behind the sync of
    // their data on a disk. Every file is closed by now (on NFS its data and time are the
    // server's: close-to-open), and a sync changes no size. Synchronous calls where the walk
    // above made them.
    const sealing = call(`looking at ${attempt.dataDir}`, (_signal, progressed) =>
      sealTree(attempt.dataDir, { sync: manifest.files.length > 1, progressed }),
    );
    // Both over before either's error is thrown: the attempt is removed only once no call on
    // it is pending (stage-dataset.ts).
    const [synced, walked] = await Promise.allSettled([syncing, sealing]);
    if (synced.status === "rejected") throw synced.reason;
    if (walked.status === "rejected") throw walked.reason;
    sealed = { ...manifest, seal: walked.value };
  } catch (error) {
    throw storageError(error, attempt.dir);
  }
  let outcome: PublishOutcome = "published";
  let replaced: Aside | undefined;
  // Anything at the final path goes through the swap below, never under this rename:
  // rename(2) replaces an empty directory (a published empty archive) and would pair our
  // tree with its manifest until ours is written (found in review).
  let occupant = await call(`looking at ${location.path}`, () =>
    lstat(location.path).then(
      (stats) => stats,
      () => undefined,
    ),
  );
  /** Undefined: it may be replaced; "same": it holds our data; or why it may not. */
  const judge = async (): Promise<DsfetchError | "same" | undefined> => {
    // Only a manifest that describes the tree there (occupant.ts); not a tree changed since
    // it was published (inspect.ts): that one is replaced.
    const there = await call(`reading ${location.manifestPath}`, (_signal, progressed) =>
      (options.inspect ?? ((seen) => inspectStaged(location, seen)))(progressed),
    );
    const existing = there.manifest;
    if (existing !== undefined && sameData(existing, manifest) && there.altered !== true) {
      return "same";
    }
    // A tree of the same data without its manifest (a stopped publish, or one in progress) is
    // replaced, not taken as ours: taken, no manifest would ever be written and every run would
    // fetch it again. A publisher in progress then finds our tree of the same data in place of
    // its own, and stands down (the finishing check below).
    // Only what dsfetch published, of the same source, is replaced (occupant.ts).
    return call(`looking at ${location.path}`, () =>
      occupantProblem(manifest.name, location, manifest, existing),
    );
  };
  let replacing: TreeIdentity | undefined;
  if (occupant !== undefined) {
    let verdict: DsfetchError | "same" | undefined;
    try {
      verdict = await judge();
      if (verdict === undefined) {
        replacing = await call(`looking at ${location.path}`, () =>
          treeIdentity(location.path, location.tmpDir),
        );
      }
    } catch (error) {
      throw storageError(error, location.path);
    }
    if (verdict === "same") {
      // Another worker published the same data first: theirs stands, ours goes.
      await removeAttempt(attempt, call);
      return "already-published";
    }
    if (verdict !== undefined) throw verdict;
  }
  // The manifest goes in as a pending manifest of this attempt first, naming our tree and the
  // one it replaces: stopped anywhere from here, what stands at the final path is known to
  // be dsfetch's (occupant.ts).
  const pendingPath = pendingManifestPath(location, attempt.dir);
  let tree: TreeIdentity | undefined;
  try {
    tree = await call(`looking at ${attempt.dataDir}`, () =>
      treeIdentity(attempt.dataDir, location.tmpDir),
    );
    if (tree === undefined) throw new Error(`${attempt.dataDir} is gone`);
    await writePending(pendingPath, { ...sealed, tree, replacing }, call);
  } catch (error) {
    throw storageError(error, pendingPath);
  }
  /**
   * Our tree did not go in (an error the storage answered with): its voucher goes, unless
   * the final path holds a tree it names after all: ours (a rename that landed, then
   * reported an error: NFS soft mounts), or the one we replaced put back without its
   * manifest (review: removed, that tree was refused as foreign for good).
   */
  const withdraw = () =>
    bestEffort(
      call(
        `removing ${pendingPath}`,
        async () => {
          if (tree !== undefined && (await pathHoldsNamedTree(location, { tree, replacing }))) {
            return;
          }
          await rm(pendingPath, { force: true });
        },
        // Not stopped by an interrupt (often what led here): left, it would name the tree
        // there for as long as that stands (review).
        { uninterruptible: true },
      ),
    );
  try {
    if (occupant !== undefined) throw Object.assign(new Error("occupied"), { code: "EEXIST" });
    // Not stopped by an interrupt: the rename would land all the same, leaving a complete
    // download without its manifest, fetched again (review).
    await call(
      `renaming ${attempt.dataDir} to ${location.path}`,
      () => rename(attempt.dataDir, location.path),
      { uninterruptible: true },
    );
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") {
      if (!(error instanceof DsfetchError)) await withdraw();
      throw storageError(error, location.path);
    }
    if (occupant === undefined) {
      // Published meanwhile (a lock lost or taken over): the same data stands; older data of
      // the same source is replaced as above.
      let verdict: DsfetchError | "same" | undefined;
      try {
        occupant = await call(`looking at ${location.path}`, () => lstat(location.path));
        verdict = await judge();
      } catch (judging) {
        await withdraw();
        throw storageError(judging, location.path);
      }
      if (verdict !== undefined) {
        await withdraw();
        if (verdict !== "same") throw verdict;
        await removeAttempt(attempt, call);
        return "already-published";
      }
      // The tree we now replace is named too, before it moves (review: stopped after its
      // manifest went aside, the other publisher's tree was named by nothing).
      try {
        replacing = await call(`looking at ${location.path}`, () =>
          treeIdentity(location.path, location.tmpDir),
        );
        await writePending(pendingPath, { ...sealed, tree, replacing }, call);
      } catch (naming) {
        throw storageError(naming, pendingPath);
      }
    }
    // Nothing moved yet: the tree there keeps its own manifest, and ours names nothing.
    // Not stopped by an interrupt (the likeliest reason to get here): left, it would name the
    // tree there for as long as that stands (review).
    const standDown = () =>
      bestEffort(
        call(`removing ${pendingPath}`, () => rm(pendingPath, { force: true }), {
          uninterruptible: true,
        }),
      );
    let replace = false;
    let mayStillLand = false;
    try {
      try {
        // Asked again while the answer has gone stale (replacingHonoured: jobs may have taken
        // the refresh's removal notice for over since): at most three times.
        for (let looks = 1; ; looks++) {
          replace = (await options.beforeReplacing?.()) ?? true;
          if (!replace || options.replacingHonoured?.() !== false) break;
          if (looks === 3) throw tooSlowToReplace(location);
        }
      } catch (asking) {
        await standDown();
        throw storageError(asking, location.path);
      }
      if (!replace) {
        await standDown();
      } else {
        try {
          replaced = await swapIn(attempt, location, call, occupant, () =>
            options.replacingHonoured === undefined ? true : options.replacingHonoured(),
          );
        } catch (swapError) {
          // Put back (not a call given up on, which may still land): ours is not in.
          mayStillLand = swapError instanceof DsfetchError && swapError.code === "STALLED";
          if (!mayStillLand) await withdraw();
          throw swapError;
        }
      }
    } finally {
      // The tree there has moved, or stays: jobs waiting on the swap may look again, before
      // the clean-ups below (a large tree's removal). Never the answer of the publish.
      await options.afterReplacing?.({ mayStillLand }).catch(() => {});
    }
    if (!replace) {
      await removeAttempt(attempt, call);
      return "kept";
    }
    outcome = "replaced";
  }
  // Our tree is in: finished even after an interrupt (stopped here, a complete download stood
  // without its manifest and was fetched again: found in review); the caller then reports
  // the interrupt.
  const finishing = { uninterruptible: true };
  try {
    await call(
      `making ${location.path} read-only`,
      // Gone meanwhile (another publisher's swap between its two renames): the look below
      // tells what stands there.
      () => chmodDir(location.path, 0o555).catch(unlessGone),
      finishing,
    );
    await call(
      `syncing ${dirname(location.path)}`,
      () => fsyncDirectory(dirname(location.path)),
      finishing,
    );
    // Still our tree? Another publisher (a lock lost) may have swapped its own in since: its
    // manifest is its own to write, never ours over its tree.
    const there = await call(
      `looking at ${location.path}`,
      () => treeAfterSwaps(location.path),
      finishing,
    );
    if (there === undefined) {
      // Moved away meanwhile, and nothing in its place (a removal by hand; another
      // publisher's swap would have put its tree in within SWAP_GAP_MS): nothing to report
      // as staged.
      await withdraw();
      throw new SupersededWhilePublishing(
        `${location.path} was moved away by another process while this one published it, and nothing stands there`,
        undefined,
      );
    }
    if (!sameTree(there, tree)) {
      // Replaced meanwhile by another publisher (a lock lost): "staged" only if it holds our
      // data; another version is not what this run resolved (review).
      // Its manifest, or its pending one if that is not in yet.
      const theirs = await call(
        `reading ${location.manifestPath}`,
        async () =>
          (await manifestOfTree(location)) ??
          (await pendingNaming(location, there, { goingIn: true })),
        finishing,
      ).catch(() => undefined);
      await withdraw();
      if (theirs === undefined || !sameData(theirs, manifest)) {
        throw new SupersededWhilePublishing(
          `another worker (which took this one's lock over) swapped ${theirs === undefined ? "another tree (its manifest not in yet)" : `another version (${theirs.createdAt})`} in at ${location.path} between this one's tree and its manifest`,
          theirs,
        );
      }
      await removeAttempt(attempt, call);
      return "already-published";
    }
    await call(
      `writing ${location.manifestPath}`,
      async () => {
        await rename(pendingPath, location.manifestPath);
      },
      finishing,
    );
    await call(
      `syncing ${dirname(location.manifestPath)}`,
      () => fsyncDirectory(dirname(location.manifestPath)),
      finishing,
    );
  } catch (error) {
    // The caller's to answer (what the run uses), not the storage's failure.
    if (error instanceof SupersededWhilePublishing) throw error;
    // The attempt is the caller's to remove on a failure (bounded there, and not while a
    // call on it is still pending: stage-dataset.ts).
    throw storageError(error, location.manifestPath);
  }
  // The old tree goes once ours is complete, manifest included (found in review: removed
  // before, ours stood without a manifest for as long as that took).
  if (replaced !== undefined) await removeAside(replaced, call);
  await removeAttempt(attempt, call);
  return outcome;
}

/** Where a replaced dataset's tree and manifest were moved aside. */
interface Aside {
  readonly tree: string;
  readonly manifest: string;
}

/**
 * Replaces the older data (or data without a manifest) at the final path with the attempt's
 * tree. The old manifest goes first, then the old tree is moved aside, then ours moved in:
 * wherever this stops (a crash, a call given up on), the final path holds either no tree or
 * a complete one, and never a tree under another version's manifest (found in review: moved
 * in, then stopped, the new bytes stood under the old manifest and a later run reused them
 * as the old version). A tree without a manifest is replaced by the next run. These steps
 * are not stopped by an interrupt (only by the stall bound: stopped between them, the final
 * path would hold nothing). On an error from the storage that answered (not a call given up
 * on, which may still land) the old tree and manifest are put back.
 */
async function swapIn(
  attempt: Attempt,
  location: DatasetLocation,
  call: StorageCall,
  occupant: Stats | undefined,
  stillHonoured: () => boolean,
): Promise<Aside> {
  const id = `replaced.${randomBytes(6).toString("hex")}`;
  const aside: Aside = {
    tree: join(dirname(attempt.dir), id),
    manifest: join(dirname(attempt.dir), `${id}.json`),
  };
  const steps = { uninterruptible: true };
  let manifestAside = false;
  let treeAside = false;
  try {
    manifestAside = await call(
      `moving ${location.manifestPath} aside`,
      () =>
        rename(location.manifestPath, aside.manifest).then(
          () => true,
          (error: NodeJS.ErrnoException) => {
            if (error.code === "ENOENT") return false;
            throw error;
          },
        ),
      steps,
    );
    if (manifestAside) {
      await call(
        `syncing ${dirname(location.manifestPath)}`,
        () => fsyncDirectory(dirname(location.manifestPath)),
        steps,
      );
    }
    await call(`making ${location.path} writable`, () => makeWritable(location.path), steps);
    await call(
      `renaming ${location.path} to ${aside.tree}`,
      async () => {
        // The last moment before the tree leaves: the steps above may have taken long enough
        // (slow storage, an event loop held up by another dataset's walk) for jobs to take
        // the removal notice for over (review, 2026-12-05).
        if (stillHonoured() === false) throw new NoLongerHonoured();
        await rename(location.path, aside.tree);
      },
      steps,
    );
    treeAside = true;
    // A rename keeps the tree's times: without this, a clean-up would take a tree published
    // long ago for one abandoned long ago (cleanup.ts) while it may still be put back.
    await call(`touching ${aside.tree}`, () => touchDir(aside.tree, new Date()), steps);
    await call(
      `renaming ${attempt.dataDir} to ${location.path}`,
      () => rename(attempt.dataDir, location.path),
      steps,
    );
  } catch (swapError) {
    if (!(swapError instanceof DsfetchError)) {
      await putBack(
        location,
        call,
        treeAside ? aside.tree : undefined,
        manifestAside ? aside.manifest : undefined,
        occupant,
      );
    }
    if (swapError instanceof NoLongerHonoured) throw tooSlowToReplace(location);
    throw storageError(swapError, location.path);
  }
  return aside;
}

/** The replacing publisher's removal notice lapsed before its tree moved (swapIn). */
class NoLongerHonoured extends Error {}

function tooSlowToReplace(location: DatasetLocation): DsfetchError {
  return new DsfetchError(
    "STORAGE",
    `the storage answered too slowly to replace ${location.path} safely (the jobs that use it may have stopped waiting for the swap); nothing was replaced`,
    {
      hint: "run again; if it recurs, check the shared storage's health (calls there took over 30 s)",
    },
  );
}

/** Puts the old tree and manifest back where the swap failed before ours was in. Best effort. */
async function putBack(
  location: DatasetLocation,
  call: StorageCall,
  tree: string | undefined,
  manifest: string | undefined,
  occupant: Stats | undefined,
): Promise<void> {
  const steps = { uninterruptible: true };
  try {
    if (tree !== undefined) {
      await call(`renaming ${tree} to ${location.path}`, () => rename(tree, location.path), steps);
    }
    // The manifest only over the tree it names: another replacer (a lock lost) may have moved
    // its own in meanwhile (found in review).
    const there = await call(`looking at ${location.path}`, () => lstat(location.path), steps);
    if (occupant === undefined || there.ino !== occupant.ino || there.dev !== occupant.dev) return;
    if (manifest !== undefined) {
      await call(
        `renaming ${manifest} to ${location.manifestPath}`,
        () => rename(manifest, location.manifestPath),
        steps,
      );
    }
    // Read-only again (made writable to be moved); last, and on its own: another user's tree
    // refuses the chmod, and its manifest must be back all the same (review).
    await call(
      `making ${location.path} read-only`,
      () => chmodDir(location.path, 0o555),
      steps,
    ).catch(() => {});
  } catch {
    // Left as it is: no tree, or a tree without a manifest, is replaced by the next run.
  }
}

/** Removes a replaced tree and its manifest. Best effort (a later run removes what is left). */
async function removeAside(aside: Aside, call: StorageCall): Promise<void> {
  await bestEffort(
    call(`removing ${aside.tree}`, (signal, progressed) =>
      removeTreeReporting(aside.tree, progressed, signal),
    ),
  );
  await bestEffort(call(`removing ${aside.manifest}`, () => rm(aside.manifest, { force: true })));
}

/**
 * Waits for a clean-up once the dataset is published: nothing it meets fails the dataset (a
 * file another process keeps open on NFS leaves a `.nfs…` entry behind, and the directory's
 * removal fails; found in review), and a later run removes what is left. An interrupt is
 * reported by the caller, which checks for it before it answers (stage-dataset.ts).
 */
async function bestEffort(work: Promise<void>): Promise<void> {
  await work.catch(() => {});
}

/**
 * Removes what is left of an attempt once the dataset is published (its empty directory,
 * or all of its tree when another worker published the same data first). Best effort:
 * published is published. Each entry removed is progress; on storage that stopped answering
 * the call is left to the kernel (and noted: the CLI then ends by execve), and a later
 * run removes what is left.
 */
async function removeAttempt(attempt: Attempt, call: StorageCall): Promise<void> {
  await bestEffort(
    call(`removing ${attempt.dir}`, (signal, progressed) =>
      removeTreeReporting(attempt.dir, progressed, signal),
    ),
  );
}

/** Writes a pending manifest whole or not at all (aside, then renamed), durably. */
async function writePending(
  path: string,
  pending: PendingManifest,
  call: StorageCall,
): Promise<void> {
  await call(`writing the pending manifest ${path}`, async () => {
    await makeSharedDir(dirname(path));
    // The first manifest written in a new manifests directory (shared-dirs.ts makeDirInPlace).
    await retryWhereReplaced(dirname(path), () =>
      writeManifest(`${path}.tmp`, pending, { durable: true }),
    );
    await rename(`${path}.tmp`, path);
    await fsyncDirectory(dirname(path));
  });
}

/** How long another publisher's swap leaves the path empty at most: two renames. */
const SWAP_GAP_MS = 1_000;

/**
 * The tree at `path`, looked at again for up to SWAP_GAP_MS while there is none: another
 * publisher's swap moves the tree there aside, then renames its own in (second review,
 * 2026-12-07: caught between the two, a publish failed STORAGE "is gone").
 */
async function treeAfterSwaps(path: string): Promise<TreeIdentity | undefined> {
  const deadline = performance.now() + SWAP_GAP_MS;
  for (;;) {
    const there = await treeIdentity(path);
    if (there !== undefined || performance.now() >= deadline) return there;
    await sleep(50);
  }
}

/** Throws `error` unless it says the path is gone (ENOENT). */
function unlessGone(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
}
