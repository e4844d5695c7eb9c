// A tree's seal (volumes/tree-seal.ts): the same from both walks, changed by what changes the
// data (a file's bytes or time, an entry added, removed or renamed, a link's target), not by
// modes but the owner's read bits (and files' write bits, said: madeWritable).

import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sealVerdict } from "../../src/volumes/inspect.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import { readManifest, writeManifest } from "../../src/volumes/manifest.ts";
import { compareSeal, sealTree } from "../../src/volumes/tree-seal.ts";
import { testManifest } from "../harness/manifests.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-seal-"));
afterAll(() => {
  chmodSync(root, 0o755);
  rmSync(root, { recursive: true, force: true });
});

let trees = 0;
function makeTree(): string {
  const dir = join(root, `t${trees++}`, "data");
  mkdirSync(join(dir, "sub", "deeper"), { recursive: true });
  mkdirSync(join(dir, "empty"));
  writeFileSync(join(dir, "a.txt"), "alpha");
  writeFileSync(join(dir, "sub", "b.txt"), "bravo");
  writeFileSync(join(dir, "sub", "deeper", "c.bin"), Buffer.alloc(1000, 7));
  symlinkSync("sub/b.txt", join(dir, "link"));
  const time = new Date("2024-01-02T03:04:05.678Z");
  for (const file of ["a.txt", "sub/b.txt", "sub/deeper/c.bin"]) {
    utimesSync(join(dir, file), time, time);
  }
  return dir;
}

const seal = (dir: string) => sealTree(dir, { sync: true });

describe("a tree's seal", () => {
  it("is the same from the synchronous and the asynchronous walk, and from a copy made the same way", async () => {
    const one = makeTree();
    const sealed = await seal(one);
    expect(sealed.entries).toBe(7);
    expect(await sealTree(one)).toEqual(sealed);
    expect(await seal(makeTree())).toEqual(sealed);
  });

  it("another shape (a file's size, an entry added, removed or renamed, a link's target) is 'changed'; a file's time alone is 'times'", async () => {
    const before = await seal(makeTree());
    const changes: [string, (dir: string) => void, string][] = [
      ["rewritten, same size", (dir) => writeFileSync(join(dir, "a.txt"), "ALPHA"), "times"],
      [
        "time only",
        (dir) => utimesSync(join(dir, "a.txt"), new Date(), new Date("2024-01-02T03:04:05.679Z")),
        "times",
      ],
      ["rewritten, longer", (dir) => writeFileSync(join(dir, "a.txt"), "alpha!"), "changed"],
      ["added", (dir) => writeFileSync(join(dir, "empty", "new"), ""), "changed"],
      ["removed", (dir) => unlinkSync(join(dir, "sub", "deeper", "c.bin")), "changed"],
      ["renamed", (dir) => renameSync(join(dir, "a.txt"), join(dir, "a2.txt")), "changed"],
      ["directory added", (dir) => mkdirSync(join(dir, "sub", "new")), "changed"],
      [
        "link retargeted",
        (dir) => {
          unlinkSync(join(dir, "link"));
          symlinkSync("a.txt", join(dir, "link"));
        },
        "changed",
      ],
    ];
    for (const [what, change, verdict] of changes) {
      const dir = makeTree();
      change(dir);
      expect((await compareSeal(dir, before, { sync: true })).verdict, what).toBe(verdict);
      expect((await compareSeal(dir, before)).verdict, what).toBe(verdict);
    }
    expect((await compareSeal(makeTree(), before)).verdict).toBe("holds");
  });

  it("says what changed as far as the sums tell: entries more, fewer, or as many of other shapes", async () => {
    const before = await seal(makeTree());
    const added = makeTree();
    writeFileSync(join(added, "new"), "");
    mkdirSync(join(added, "new-dir"));
    expect((await compareSeal(added, before)).change).toBe(
      `files or directories were added (net: 2 entries more than when it was published, ${before.entries + 2} not ${before.entries})`,
    );
    const removed = makeTree();
    unlinkSync(join(removed, "a.txt"));
    expect((await compareSeal(removed, before, { sync: true })).change).toBe(
      `files or directories were removed (net: 1 entry fewer than when it was published, ${before.entries - 1} not ${before.entries})`,
    );
    const renamed = makeTree();
    renameSync(join(renamed, "a.txt"), join(renamed, "a2.txt"));
    expect((await compareSeal(renamed, before)).change).toBe(
      "files were renamed, resized, or replaced by others of another kind, with the same number of entries",
    );
    expect((await compareSeal(makeTree(), before)).change).toBeUndefined();
  });

  it("two files of one size swapped (mv a x; mv b a; mv x b): 'times' when their times differ, even by 10 us", async () => {
    const dir = makeTree();
    // 10 us later (seconds as a number: a Date has whole ms).
    const t = new Date("2024-01-02T03:04:05.678Z").getTime() / 1000 + 0.00001;
    utimesSync(join(dir, "sub", "b.txt"), t, t);
    const before = await seal(dir);
    renameSync(join(dir, "a.txt"), join(dir, "x"));
    renameSync(join(dir, "sub", "b.txt"), join(dir, "a.txt"));
    renameSync(join(dir, "x"), join(dir, "sub", "b.txt"));
    expect(await compareSeal(dir, before, { sync: true })).toEqual({
      verdict: "times",
      madeWritable: false,
    });
  });

  it("does not change with modes", async () => {
    const dir = makeTree();
    const before = await seal(dir);
    chmodSync(join(dir, "a.txt"), 0o666);
    chmodSync(join(dir, "sub"), 0o700);
    expect(await seal(dir)).toEqual(before);
  });

  it("a file or directory its owner may no longer read (the root too) is 'changed'; the group's and others' read bits are not judged", async () => {
    const published = () => {
      const dir = makeTree();
      for (const file of ["a.txt", "sub/b.txt", "sub/deeper/c.bin"])
        chmodSync(join(dir, file), 0o444);
      for (const sub of ["sub/deeper", "sub", "empty"]) chmodSync(join(dir, sub), 0o555);
      return dir;
    };
    const before = await seal(published());
    expect(before).toMatchObject({ readable: true, readOnly: true });
    const unreadable =
      "files or directories in it were made unreadable (chmod: their owner may no longer read them)";
    for (const [what, path, mode] of [
      ["a file", "sub/b.txt", 0o000],
      ["a directory", "sub", 0o000],
      ["a directory, search bit only", "sub/deeper", 0o455],
      ["the root", "", 0o000],
    ] as const) {
      const dir = published();
      chmodSync(join(dir, path), mode);
      // As root here: the walk reads through modes, as a root job's run does.
      for (const sync of [true, false]) {
        expect(await compareSeal(dir, before, { sync }), what).toEqual({
          verdict: "changed",
          madeWritable: false,
          change: unreadable,
        });
      }
      chmodSync(join(dir, path), 0o755);
    }
    const closed = published();
    chmodSync(join(closed, "a.txt"), 0o400);
    chmodSync(join(closed, "sub"), 0o500);
    expect((await compareSeal(closed, before)).verdict).toBe("holds");
    // A seal taken before it recorded readability: not judged.
    const { readable: _readable, ...older } = before;
    const old = published();
    chmodSync(join(old, "a.txt"), 0o000);
    expect((await compareSeal(old, older)).verdict).toBe("holds");
  });

  it("a file made writable by every user (o+w) is 'made writable', not only the owner's write bit; a directory's write bits are not judged", async () => {
    const dir = makeTree();
    for (const file of ["a.txt", "sub/b.txt", "sub/deeper/c.bin"])
      chmodSync(join(dir, file), 0o444);
    const before = await seal(dir);
    expect(before.readOnly).toBe(true);
    chmodSync(join(dir, "a.txt"), 0o446);
    expect(await compareSeal(dir, before)).toEqual({ verdict: "holds", madeWritable: true });
    // Not a directory's (CIFS shows dir_mode, 0777 on Azure Files, whatever a chmod did).
    chmodSync(join(dir, "a.txt"), 0o444);
    chmodSync(join(dir, "sub"), 0o777);
    expect(await compareSeal(dir, before)).toEqual({ verdict: "holds", madeWritable: false });
    // Nor the group's write bit alone.
    chmodSync(join(dir, "sub"), 0o755);
    chmodSync(join(dir, "a.txt"), 0o464);
    expect(await compareSeal(dir, before)).toEqual({ verdict: "holds", madeWritable: false });
  });

  it("a flat directory of many files: the walk gives the event loop turns, and says it progressed", async () => {
    const dir = join(root, "flat");
    mkdirSync(dir);
    for (let i = 0; i < 20_000; i++) writeFileSync(join(dir, `f${i}`), "");
    let turns = 0;
    const timer = setInterval(() => turns++, 1);
    let progressed = 0;
    try {
      const sealed = await sealTree(dir, { sync: true, progressed: () => progressed++ });
      expect(sealed.entries).toBe(20_000);
    } finally {
      clearInterval(timer);
    }
    expect(turns).toBeGreaterThan(0);
    expect(progressed).toBeGreaterThan(0);
  });

  it("a seal of another form (another dsfetch's) is not used, and its manifest is still a manifest", async () => {
    const dir = makeTree();
    const location = locationIn(join(dir, ".."), "data");
    mkdirSync(join(dir, "..", ".dsfetch", "manifests"), { recursive: true });
    const manifest = testManifest("s3://b/data/", "e".repeat(32), "a.txt");
    const other = { entries: 7, sum: "0".repeat(32) };
    await writeManifest(location.manifestPath, {
      ...manifest,
      seal: other,
    } as unknown as typeof manifest);
    const read = await readManifest(location.manifestPath);
    expect(read).toBeDefined();
    expect(read === undefined ? undefined : await sealVerdict(location, read)).toEqual({
      verdict: "holds",
      madeWritable: false,
    });
  });
});
