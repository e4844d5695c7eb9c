// Round trips through the tar extractor with archives made by the system's GNU tar.
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  constants,
  createReadStream,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Codec, decompress } from "../../src/archive/decompress.ts";
import { FileDataPool } from "../../src/archive/file-data-pool.ts";
import { DEFAULT_LIMITS } from "../../src/archive/limits.ts";
import { extractTar, TarExtractor } from "../../src/archive/tar-extract.ts";
import { DsfetchError } from "../../src/errors.ts";
import { SlowCreates } from "../../src/util/slow-creates.ts";
import { slowOpens, withFs } from "../harness/patch-fs.ts";
import { chunks, file, hasProgram, run } from "./tar-helpers.ts";

const UMASK = process.umask();
const DATASET = "roundtrip";

interface Node {
  path: string;
  kind: "file" | "dir" | "symlink";
  mode?: number;
  content?: string;
  target?: string;
  nlink?: number;
}

/** The tree under `root`, sorted; modes of files and directories, contents base64. */
function treeOf(root: string): Node[] {
  const out: Node[] = [];
  const walk = (dir: string, rel: string) => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      const path = rel === "" ? name : `${rel}/${name}`;
      const stat = lstatSync(full);
      if (stat.isSymbolicLink()) out.push({ path, kind: "symlink", target: readlinkSync(full) });
      else if (stat.isDirectory()) {
        out.push({ path, kind: "dir", mode: stat.mode & 0o7777 });
        walk(full, path);
      } else {
        out.push({
          path,
          kind: "file",
          mode: stat.mode & 0o7777,
          nlink: stat.nlink,
          content: readFileSync(full).toString("base64"),
        });
      }
    }
  };
  walk(root, "");
  return out;
}

/** What extracting `source` must give: files 0444/0555 (any x bit: created read-only, as published), dirs 0755, less the umask. */
function expectedOf(source: Node[]): Node[] {
  return source.map((node) => {
    if (node.kind === "file")
      return { ...node, mode: ((node.mode ?? 0) & 0o111 ? 0o555 : 0o444) & ~UMASK };
    if (node.kind === "dir") return { ...node, mode: 0o755 & ~UMASK };
    return node;
  });
}

let scratch: string;
let full: string; // a tree with everything GNU and pax formats can store
let simple: string; // names short enough for ustar and v7
let many: string; // 5,000 small files

function buildFull(root: string): void {
  mkdirSync(join(root, "sub/dir"), { recursive: true });
  mkdirSync(join(root, "emptydir"));
  writeFileSync(join(root, "small.txt"), "hello\n");
  writeFileSync(join(root, "empty"), "");
  writeFileSync(join(root, "exactly512.bin"), randomBytes(512));
  writeFileSync(join(root, "b511.bin"), randomBytes(511));
  writeFileSync(join(root, "b513.bin"), randomBytes(513));
  writeFileSync(join(root, "big.bin"), randomBytes((1 << 20) + 3));
  writeFileSync(join(root, "sub/dir/nested.txt"), "nested\n");
  writeFileSync(join(root, "run.sh"), "#!/bin/sh\necho hi\n");
  chmodSync(join(root, "run.sh"), 0o755);
  writeFileSync(join(root, "setuid"), "s");
  chmodSync(join(root, "setuid"), 0o4755);
  writeFileSync(join(root, "setgid-world-writable"), "g");
  chmodSync(join(root, "setgid-world-writable"), 0o2666);
  writeFileSync(join(root, "group-exec"), "x");
  chmodSync(join(root, "group-exec"), 0o610);
  const longDir = join(root, "l".repeat(120));
  mkdirSync(longDir);
  writeFileSync(join(longDir, "f".repeat(150)), "long name\n");
  writeFileSync(join(root, "ünïcødé-文件.txt"), "unicode\n");
  // Long multibyte names: GNU tar truncates them into the 100-byte header field at a byte
  // boundary (splitting a character); the long name / pax path must win.
  writeFileSync(join(root, `a${"é".repeat(80)}`), "multibyte long name\n");
  symlinkSync(`a${"é".repeat(80)}`, join(root, `l${"文".repeat(40)}`));
  symlinkSync("small.txt", join(root, "link-to-file"));
  symlinkSync("../../small.txt", join(root, "sub/dir/up"));
  symlinkSync("sub/dir", join(root, "dirlink"));
  symlinkSync(`${"l".repeat(120)}/${"f".repeat(150)}`, join(root, "long-link"));
  linkSync(join(root, "small.txt"), join(root, "hard.txt"));
  linkSync(join(root, "big.bin"), join(root, "sub/big-again.bin"));
}

function buildSimple(root: string): void {
  mkdirSync(join(root, "sub/dir"), { recursive: true });
  mkdirSync(join(root, "emptydir"));
  writeFileSync(join(root, "small.txt"), "hello\n");
  writeFileSync(join(root, "empty"), "");
  writeFileSync(join(root, "exactly512.bin"), randomBytes(512));
  writeFileSync(join(root, "sub/dir/nested.bin"), randomBytes(70_000));
  writeFileSync(join(root, "run.sh"), "#!/bin/sh\n");
  chmodSync(join(root, "run.sh"), 0o755);
  symlinkSync("../small.txt", join(root, "sub/link"));
  linkSync(join(root, "small.txt"), join(root, "hard.txt"));
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "dsfetch-tar-roundtrip-"));
  full = join(scratch, "full");
  simple = join(scratch, "simple");
  many = join(scratch, "many");
  mkdirSync(full);
  mkdirSync(simple);
  mkdirSync(many);
  buildFull(full);
  buildSimple(simple);
  for (let i = 0; i < 5000; i++) {
    const d = join(many, `d${Math.floor(i / 100)}`);
    if (i % 100 === 0) mkdirSync(d);
    writeFileSync(join(d, `f${i}.txt`), `file ${i}\n`.repeat(i % 7));
  }
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

let counter = 0;
function freshDest(): string {
  const dest = join(scratch, `dest-${counter++}`);
  mkdirSync(dest);
  return dest;
}

const archives = new Map<string, string>();

/**
 * GNU tar's archive of `source`, made once per source and format: the tests only read it
 * (made again each time, tar read the 5,000 files of `many` 6 times, 2026-12-07).
 */
function makeTar(source: string, format: string): string {
  const key = `${source} ${format}`;
  let out = archives.get(key);
  if (out === undefined) {
    out = join(scratch, `archive-${counter++}.tar`);
    run("tar", [`--format=${format}`, "-C", source, "-cf", out, "."]);
    archives.set(key, out);
  }
  return out;
}

const expectedTrees = new Map<string, Node[]>();

/**
 * expectedOf(treeOf(source)), read once per source tree (full, simple, many): no test changes
 * them. Read again for each comparison, `many` was 5,000 files each time.
 */
function expectedFrom(source: string): Node[] {
  let tree = expectedTrees.get(source);
  if (tree === undefined) {
    tree = expectedOf(treeOf(source));
    expectedTrees.set(source, tree);
  }
  return tree;
}

async function extractFile(archive: string, dest: string) {
  return extractTar(
    createReadStream(archive, { highWaterMark: 4 << 20 }),
    dest,
    DEFAULT_LIMITS,
    DATASET,
  );
}

describe("tar round trips (GNU tar)", () => {
  for (const format of ["gnu", "pax", "oldgnu"]) {
    it(`${format}: every kind of entry, long names, modes, links — byte-exact`, async () => {
      const archive = makeTar(full, format);
      const dest = freshDest();
      const result = await extractFile(archive, dest);
      const tree = treeOf(dest);
      expect(tree).toEqual(expectedFrom(full));
      // setuid/setgid/sticky never survive; exec bits do.
      for (const node of tree) expect((node.mode ?? 0) & 0o7000).toBe(0);
      expect(lstatSync(join(dest, "run.sh")).mode & 0o777).toBe(0o555 & ~UMASK);
      expect(lstatSync(join(dest, "setuid")).mode & 0o7777).toBe(0o555 & ~UMASK);
      expect(lstatSync(join(dest, "setgid-world-writable")).mode & 0o7777).toBe(0o444 & ~UMASK);
      // Hard links are links (same inode) where the filesystem allows.
      expect(lstatSync(join(dest, "hard.txt")).ino).toBe(lstatSync(join(dest, "small.txt")).ino);
      expect(result.symlinks.map((s) => s.path).sort()).toEqual(
        ["dirlink", "link-to-file", "long-link", "sub/dir/up", `l${"文".repeat(40)}`].sort(),
      );
      expect(result.files.map((f) => f.path)).toContain(`${"l".repeat(120)}/${"f".repeat(150)}`);
      expect(result.files.find((f) => f.path === "exactly512.bin")?.bytes).toBe(512);
      expect(result.directories).toContain("emptydir");
      // Every regular file's bytes, hard links made with link(2) adding none.
      expect(result.bytes).toBe(
        result.files
          .filter((f) => f.path !== "hard.txt" && f.path !== "sub/big-again.bin")
          .reduce((sum, f) => sum + f.bytes, 0),
      );
    });
  }

  for (const format of ["ustar", "v7"]) {
    it(`${format}: short names`, async () => {
      const archive = makeTar(simple, format);
      const dest = freshDest();
      await extractFile(archive, dest);
      expect(treeOf(dest)).toEqual(expectedFrom(simple));
    });
  }

  it("names listed without a leading ./ and a ustar name split into prefix + name", async () => {
    const source = join(scratch, "prefix-src");
    const deep = `${"p".repeat(90)}/${"q".repeat(60)}`;
    mkdirSync(join(source, deep), { recursive: true });
    writeFileSync(join(source, deep, "file.txt"), "prefix\n");
    const archive = join(scratch, "prefix.tar");
    run("tar", ["--format=ustar", "-C", source, "-cf", archive, "p".repeat(90)]);
    const dest = freshDest();
    await extractFile(archive, dest);
    expect(readFileSync(join(dest, deep, "file.txt"), "utf8")).toBe("prefix\n");
  });

  it("5,000 small files", async () => {
    const archive = makeTar(many, "gnu");
    const dest = freshDest();
    const result = await extractFile(archive, dest);
    expect(result.files).toHaveLength(5000);
    expect(treeOf(dest)).toEqual(expectedFrom(many));
  });

  const codecs: { codec: Codec; flag: string; program: string }[] = [
    { codec: "gzip", flag: "-z", program: "gzip" },
    { codec: "bzip2", flag: "-j", program: "bzip2" },
    { codec: "xz", flag: "-J", program: "xz" },
  ];
  for (const { codec, flag, program } of codecs) {
    it.skipIf(!hasProgram(program))(`tar ${flag} through decompress("${codec}")`, async () => {
      const archive = join(scratch, `compressed-${codec}.tar.x`);
      run("tar", ["--format=pax", flag, "-C", full, "-cf", archive, "."]);
      const dest = freshDest();
      await extractTar(
        decompress(codec, createReadStream(archive, { highWaterMark: 4 << 20 })),
        dest,
        DEFAULT_LIMITS,
        DATASET,
      );
      expect(treeOf(dest)).toEqual(expectedFrom(full));
    });
  }

  it("any chunking gives the same result (random chunk sizes from 1 byte to 1 MiB)", async () => {
    const archive = readFileSync(makeTar(full, "pax"));
    const expected = expectedFrom(full);
    for (let seed = 1; seed <= 12; seed++) {
      const dest = freshDest();
      const extractor = new TarExtractor(dest, DEFAULT_LIMITS, DATASET);
      let state = seed;
      let at = 0;
      while (at < archive.length) {
        // Log-uniform sizes: many tiny chunks (split headers), some large ones.
        state = (state * 1103515245 + 12345) % 2 ** 31;
        const size = Math.max(1, Math.floor(2 ** ((state / 2 ** 31) * 20)));
        extractor.write(archive.subarray(at, at + size));
        at += size;
      }
      extractor.end();
      expect(treeOf(dest)).toEqual(expected);
    }
  });

  it("one byte at a time", async () => {
    const archive = readFileSync(makeTar(simple, "gnu"));
    const dest = freshDest();
    await extractTar(chunks(archive, 1, 1), dest, DEFAULT_LIMITS, DATASET);
    expect(treeOf(dest)).toEqual(expectedFrom(simple));
  });

  it("an empty archive (only the end marker) extracts nothing", async () => {
    const source = join(scratch, "empty-src");
    mkdirSync(source);
    const archive = join(scratch, "empty.tar");
    run("tar", ["-C", source, "-cf", archive, "--files-from", "/dev/null"]);
    const dest = freshDest();
    const result = await extractFile(archive, dest);
    expect(result).toMatchObject({ files: [], bytes: 0, entries: 0 });
    expect(readdirSync(dest)).toEqual([]);
  });

  it("git archive output (pax global header with a comment)", async () => {
    const repo = join(scratch, "repo");
    mkdirSync(repo);
    writeFileSync(join(repo, "a.txt"), "from git\n");
    const git = (...args: string[]) =>
      run("git", ["-c", "user.name=t", "-c", "user.email=t@t", ...args], repo);
    if (!hasProgram("git")) return;
    git("init", "-q");
    git("add", ".");
    git("commit", "-qm", "x");
    const archive = join(scratch, "git.tar");
    writeFileSync(archive, git("archive", "--format=tar", "HEAD"));
    const dest = freshDest();
    await extractFile(archive, dest);
    expect(readFileSync(join(dest, "a.txt"), "utf8")).toBe("from git\n");
  });
});

describe("files written in parallel (the way to network storage: parallel-writes.ts)", () => {
  const parallel = { mode: "parallel" } as const;

  /** extractTar in parallel mode: the result, or what it threw. */
  function extractParallel(source: AsyncIterable<Buffer>, dest: string) {
    return extractTar(source, dest, DEFAULT_LIMITS, DATASET, undefined, parallel).catch(
      (e: unknown) => e,
    );
  }

  /**
   * A download that gives `first`, then never anything again: how often it was asked for
   * more, and whether it was told to stop.
   */
  function stallingAfter(first: Buffer) {
    const seen = { asked: 0, returned: false };
    const source: AsyncIterable<Buffer> = {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          seen.asked++;
          if (seen.asked > 1) return new Promise<IteratorResult<Buffer>>(() => {});
          return Promise.resolve({ done: false, value: first });
        },
        return: () => {
          seen.returned = true;
          return Promise.resolve({ done: true, value: undefined });
        },
      }),
    };
    return { source, seen };
  }

  for (const format of ["gnu", "pax"]) {
    it(`${format}: every kind of entry byte-exact, hard links to files still on their way`, async () => {
      const dest = freshDest();
      const result = await extractTar(
        createReadStream(makeTar(full, format), { highWaterMark: 64 << 10 }),
        dest,
        DEFAULT_LIMITS,
        DATASET,
        undefined,
        parallel,
      );
      expect(treeOf(dest)).toEqual(expectedFrom(full));
      expect(lstatSync(join(dest, "hard.txt")).ino).toBe(lstatSync(join(dest, "small.txt")).ino);
      expect(lstatSync(join(dest, "sub/big-again.bin")).ino).toBe(
        lstatSync(join(dest, "big.bin")).ino,
      );
      // All regular files but big.bin (over 1 MiB: written by the parser) and 2 hard links.
      expect(result.writtenInParallel).toBe(result.files.length - 3);
    });
  }

  it("each queued file's memory is reused once it is written (file-data-pool.ts), bytes exact", async () => {
    // Distinct random contents of 4-48 KiB: a buffer handed out again while a write of the
    // file it held was still in flight would show as another file's bytes.
    const source = join(scratch, "pooled");
    mkdirSync(source);
    const names: string[] = [];
    for (let i = 0; i < 1500; i++) {
      const dir = `d${i % 15}`;
      if (i < 15) mkdirSync(join(source, dir));
      const name = `${dir}/f${i}.bin`;
      writeFileSync(join(source, name), randomBytes(4096 + ((i * 7919) % (44 << 10))));
      names.push(name);
    }
    const pool = new FileDataPool(1 << 20);
    const dest = freshDest();
    const result = await extractTar(
      createReadStream(makeTar(source, "gnu")),
      dest,
      DEFAULT_LIMITS,
      DATASET,
      undefined,
      { mode: "parallel", queuedBytes: 256 << 10, fileData: pool },
    );
    expect(result.writtenInParallel).toBe(1500);
    const differing = names.filter(
      (name) => !readFileSync(join(dest, name)).equals(readFileSync(join(source, name))),
    );
    expect(differing).toEqual([]);
    // 256 KiB waiting and 16 files in flight, in a dozen sizes: 33 buffers here (a new one
    // per file before: 1,500).
    expect(pool.allocated).toBeLessThan(150);
  });

  it("auto: one file at a time while creates are fast; in parallel after a slow window", async () => {
    const archive = makeTar(many, "gnu");
    const never = await extractTar(
      createReadStream(archive),
      freshDest(),
      DEFAULT_LIMITS,
      DATASET,
      undefined,
      { mode: "auto", creates: new SlowCreates(1e9) },
    );
    expect(never.writtenInParallel).toBe(0);
    const dest = freshDest();
    const switched = await extractTar(
      createReadStream(archive),
      dest,
      DEFAULT_LIMITS,
      DATASET,
      undefined,
      // Any create is slow, on wall time alone (a local disk works on the CPU: not waiting).
      { mode: "auto", creates: new SlowCreates(0, null) },
    );
    // The first window of 32 files is timed one at a time, the rest goes in parallel.
    expect(switched.writtenInParallel).toBe(5000 - 32);
    expect(treeOf(dest)).toEqual(expectedFrom(many));
  });

  /** Every path under `dest` with its size, to see that nothing changes after an answer. */
  function snapshot(dest: string): string[] {
    return treeOf(dest).map((node) => `${node.path} ${node.kind} ${node.content?.length ?? ""}`);
  }

  it("a failure mid-way (a file already there): UNSAFE_PATH, the planted file intact", async () => {
    const dest = freshDest();
    mkdirSync(join(dest, "d30"));
    writeFileSync(join(dest, "d30", "f3001.txt"), "planted\n");
    const error = await extractParallel(
      createReadStream(makeTar(many, "gnu"), { highWaterMark: 16 << 10 }),
      dest,
    );
    expect(error).toBeInstanceOf(DsfetchError);
    expect((error as DsfetchError).code).toBe("UNSAFE_PATH");
    expect((error as DsfetchError).message).toMatch(
      /"\.\/d30\/f3001\.txt" would overwrite something already in the destination/,
    );
    const after = snapshot(dest);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(snapshot(dest)).toEqual(after);
    expect(readFileSync(join(dest, "d30", "f3001.txt"), "utf8")).toBe("planted\n");
  });

  it("the source fails mid-way (a cut download): its error, and nothing appears afterwards", async () => {
    const archive = readFileSync(makeTar(many, "gnu"));
    async function* cut(): AsyncGenerator<Buffer> {
      for (let at = 0; at < archive.length / 2; at += 64 << 10) {
        yield archive.subarray(at, at + (64 << 10));
      }
      throw new Error("connection reset");
    }
    const dest = freshDest();
    const error = await extractParallel(cut(), dest);
    expect((error as Error).message).toBe("connection reset");
    const after = snapshot(dest);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(snapshot(dest)).toEqual(after);
  });

  it("a write that fails while the source waits is the answer at once (the source is told to stop)", async () => {
    const dest = freshDest();
    writeFileSync(join(dest, "a"), "planted\n");
    // No end marker: the rest never comes.
    const archive = Buffer.concat([file("a", "from the archive"), file("b", "b")]);
    // The archive's first bytes, then a download that never delivers the rest: without the
    // failure ending the wait, this test would time out.
    const { source, seen } = stallingAfter(archive);
    const error = await extractParallel(source, dest);
    expect(error).toBeInstanceOf(DsfetchError);
    expect((error as DsfetchError).code).toBe("UNSAFE_PATH");
    expect((error as DsfetchError).message).toMatch(/"a" would overwrite something already/);
    expect(seen.returned).toBe(true);
    expect(readFileSync(join(dest, "a"), "utf8")).toBe("planted\n");
  });

  it("a write that fails while the extractor waits out its backpressure: no more input is asked for", async () => {
    const dest = freshDest();
    writeFileSync(join(dest, "a"), "planted\n");
    // "a" fails at once; behind it 20 MiB of files wait (over the 16 MiB bound), then the
    // download stalls for good: asking it for more would hang.
    const big = Buffer.alloc(1 << 20, 7);
    const archive = Buffer.concat([
      file("a", "x"),
      ...Array.from({ length: 20 }, (_, i) => file(`d${i % 4}/big-${i}`, big)),
    ]);
    const { source, seen } = stallingAfter(archive);
    const error = await extractParallel(source, dest);
    expect((error as DsfetchError).code).toBe("UNSAFE_PATH");
    expect((error as DsfetchError).message).toMatch(/"a" would overwrite something already/);
    expect(seen.asked).toBe(1);
  });

  it("an entry refused by the extractor tells the source to stop (a decompressor is killed)", async () => {
    let stopped = false;
    async function* source(): AsyncGenerator<Buffer> {
      try {
        yield file("../evil", "x");
        await new Promise(() => {});
      } finally {
        stopped = true;
      }
    }
    for (const writes of [{ mode: "serial" }, parallel] as const) {
      stopped = false;
      const error = await extractTar(
        source(),
        freshDest(),
        DEFAULT_LIMITS,
        DATASET,
        undefined,
        writes,
      ).catch((e: unknown) => e);
      expect((error as DsfetchError).code).toBe("UNSAFE_PATH");
      await new Promise((resolve) => setImmediate(resolve));
      expect(stopped, writes.mode).toBe(true);
    }
  });

  for (const waiting of ["its backpressure", "the last files"] as const) {
    it(`an abort while it waits for ${waiting} on slow storage: the reason once the files in flight are done`, async () => {
      // Creates take 200 ms (slow storage). With a 16 KiB queue bound the extractor waits out
      // its backpressure from the first files on; with the default bound every file is
      // handed over at once and it waits for the last ones (written()).
      const dest = freshDest();
      const controller = new AbortController();
      const reason = new Error("the job was cancelled");
      setTimeout(() => controller.abort(reason), 300);
      const started = performance.now();
      const error = await withFs(slowOpens(200), () =>
        extractTar(
          createReadStream(makeTar(many, "gnu")),
          dest,
          DEFAULT_LIMITS,
          DATASET,
          undefined,
          {
            mode: "parallel",
            signal: controller.signal,
            ...(waiting === "its backpressure" ? { queuedBytes: 16 << 10 } : {}),
          },
        ).catch((e: unknown) => e),
      );
      expect(error).toBe(reason);
      // 5,000 files 16 at a time would take a minute: it stopped, well before.
      expect(performance.now() - started).toBeLessThan(5000);
      const after = snapshot(dest);
      await new Promise((resolve) => setTimeout(resolve, 400));
      expect(snapshot(dest)).toEqual(after);
      expect(after.filter((line) => / file /.test(line)).length).toBeLessThan(5000);
    });
  }

  it("queued files count their names too: 16,000 empty files with long names wait their turn", async () => {
    const { ParallelWrites } = await import("../../src/archive/parallel-writes.ts");
    const dest = freshDest();
    const writes = new ParallelWrites(
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
      () => {},
      1,
    );
    const long = "n".repeat(200);
    let waitedAt = -1;
    // 16,000: past the 13,000 the check below allows. Were names not counted, the wait would
    // come at 32,768 files (512 bytes each), here never (-1): a failure either way. Every
    // file is created on disk: 40,000 took ~5 s (2026-12-07).
    for (let i = 0; i < 16_000; i++) {
      writes.add({
        path: join(dest, `${long}-${i}`),
        name: `${long}-${i}`,
        mode: 0o444,
        data: Buffer.alloc(0),
      });
      if (waitedAt === -1 && writes.backpressure() !== undefined) waitedAt = i;
    }
    // 16 MiB at (512 + 2 x ~460) bytes a file: the extractor would have waited near 11,700.
    expect(waitedAt).toBeGreaterThan(10_000);
    expect(waitedAt).toBeLessThan(13_000);
    await writes.idle();
    expect(readdirSync(dest)).toHaveLength(16_000);
  });
});
