// decompress(): round trips against the system's compressors, every implementation that is
// present (programs found on a PATH we build per test, the npm libraries if installed),
// and corrupt/truncated data for each.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { endsWithBzip2Stream } from "../../src/archive/bzip2-end.ts";
import {
  type Codec,
  type DecompressOptions,
  type DecompressorVia,
  decompress,
  decompressorFor,
  findProgram,
  libraryAvailable,
} from "../../src/archive/decompress.ts";
import { DsfetchError } from "../../src/errors.ts";
import { chunks } from "./tar-helpers.ts";

let scratch: string;
let plain: Buffer;

/** Compressible but not trivial: text with random words, and a random block. */
/**
 * ~1.1 MB of text and random bytes: more than one bzip2 block (900 kB), several of the pixz
 * path's 200 KiB xz blocks, many pipe buffers. Half of what it was (2.3 MB): the file took
 * 40-60 s, most of it decoding this 8 times over in every path (2026-12-07).
 */
function sample(): Buffer {
  const words = Array.from({ length: 2000 }, () => randomBytes(6).toString("hex"));
  const lines: string[] = [];
  for (let i = 0; i < 30_000; i++)
    lines.push(`${i} ${words[i % words.length]} ${words[(i * 7) % words.length]}`);
  return Buffer.concat([Buffer.from(lines.join("\n")), randomBytes(150_000)]);
}

function compress(program: string, args: string[], input: Buffer): Buffer {
  return execFileSync(program, args, { input, maxBuffer: 1 << 30 });
}

const compressedSamples = new Map<string, Buffer>();

/**
 * `plain` compressed by this command line, once per file: the paths of a codec share their
 * compressor (xz -c, bzip2 -c), which took seconds of CPU run again for each (2026-12-07).
 * Every user only reads it (corrupted() copies).
 */
function compressedSample(program: string, args: string[]): Buffer {
  const key = [program, ...args].join(" ");
  let data = compressedSamples.get(key);
  if (data === undefined) {
    data = compress(program, args, plain);
    compressedSamples.set(key, data);
  }
  return data;
}

/**
 * Byte equality. Not toEqual: vitest compares Buffers element by element, ~0.5-2 s of CPU
 * per megabyte; 21 such comparisons were a third of this file's CPU (2026-12-07). A failure
 * says where the bytes part.
 */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  let at = 0;
  if (!actual.equals(expected)) {
    while (at < actual.length && actual[at] === expected[at]) at++;
  }
  expect(
    actual.equals(expected),
    `${actual.length} bytes, expected ${expected.length}; first difference at byte ${at}`,
  ).toBe(true);
}

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  // A copy: a chunk is valid only until the next is asked for (decompress()'s contract).
  for await (const chunk of source) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function failure(source: AsyncIterable<Buffer>): Promise<DsfetchError> {
  try {
    await collect(source);
  } catch (error) {
    expect(error).toBeInstanceOf(DsfetchError);
    return error as DsfetchError;
  }
  throw new Error("no error");
}

/** A directory holding only the named programs, to use as PATH. */
function pathWith(...programs: string[]): string {
  const dir = join(scratch, `path-${programs.join("-") || "empty"}`);
  mkdirSync(dir, { recursive: true });
  for (const program of programs) {
    const real = findProgram(program);
    if (real !== undefined) {
      try {
        symlinkSync(real, join(dir, program));
      } catch {
        // already there
      }
    }
  }
  return dir;
}

function corrupted(data: Buffer): Buffer {
  const copy = Buffer.from(data);
  for (let i = Math.floor(copy.length / 2); i < copy.length / 2 + 64; i++)
    copy[i] = (copy[i] ?? 0) ^ 0x5a;
  return copy;
}

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), "dsfetch-decompress-"));
  plain = sample();
});

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

interface Path {
  codec: Codec;
  via: DecompressorVia;
  available: () => boolean;
  options: () => DecompressOptions;
  compressor: [string, string[]];
}

const PATHS: Path[] = [
  {
    codec: "gzip",
    via: "node:zlib",
    available: () => findProgram("gzip") !== undefined,
    options: () => ({}),
    compressor: ["gzip", ["-c"]],
  },
  {
    codec: "xz",
    via: "xz",
    available: () => findProgram("xz") !== undefined,
    options: () => ({ searchPath: pathWith("xz") }),
    compressor: ["xz", ["-c", "-T2", "--block-size=200KiB"]],
  },
  {
    codec: "xz",
    via: "pixz",
    available: () => findProgram("pixz") !== undefined && findProgram("xz") !== undefined,
    options: () => ({ searchPath: pathWith("pixz") }),
    compressor: ["xz", ["-c"]],
  },
  {
    codec: "xz",
    via: "lzma-native",
    available: () => libraryAvailable("lzma-native") && findProgram("xz") !== undefined,
    options: () => ({ prefer: "library" }),
    compressor: ["xz", ["-c"]],
  },
  {
    codec: "bzip2",
    via: "lbzip2",
    available: () => findProgram("lbzip2") !== undefined && findProgram("bzip2") !== undefined,
    options: () => ({ searchPath: pathWith("lbzip2") }),
    compressor: ["bzip2", ["-c"]],
  },
  {
    codec: "bzip2",
    via: "bzip2",
    available: () => findProgram("bzip2") !== undefined,
    options: () => ({ searchPath: pathWith("bzip2") }),
    compressor: ["bzip2", ["-c"]],
  },
  {
    codec: "bzip2",
    via: "unbzip2-stream",
    available: () => libraryAvailable("unbzip2-stream") && findProgram("bzip2") !== undefined,
    options: () => ({ prefer: "library" }),
    compressor: ["bzip2", ["-c"]],
  },
];

for (const path of PATHS) {
  describe.skipIf(!path.available())(`${path.codec} via ${path.via}`, () => {
    let compressed: Buffer;
    beforeAll(() => {
      compressed = compressedSample(path.compressor[0], path.compressor[1]);
    });

    it("is the implementation chosen", () => {
      expect(decompressorFor(path.codec, path.options()).via).toBe(path.via);
    });

    it("round trip (large and tiny input chunks)", async () => {
      expectSameBytes(
        await collect(decompress(path.codec, chunks(compressed, 4 << 20), path.options())),
        plain,
      );
      expectSameBytes(
        await collect(decompress(path.codec, chunks(compressed, 1, 5000, 3), path.options())),
        plain,
      );
    });

    it("input whose memory is reused once the next chunk is asked for (inputReused)", async () => {
      // The extraction thread gives each batch back to the sender when the decompressor asks
      // for the next (extract-worker.ts): a chunk still queued for the program's stdin, or
      // held by a stream decompressor, would then be overwritten before it was decoded.
      async function* reused(data: Buffer, size: number): AsyncGenerator<Buffer> {
        const memory = Buffer.alloc(size);
        for (let at = 0; at < data.length; at += size) {
          const n = data.copy(memory, 0, at, at + size);
          yield memory.subarray(0, n);
          memory.fill(0xa5);
        }
      }
      for (const size of [8 * 1024, 100_000, 1 << 20]) {
        const out = await collect(
          decompress(path.codec, reused(compressed, size), {
            ...path.options(),
            inputReused: true,
          }),
        );
        expect(out.equals(plain), `chunks of ${size} bytes`).toBe(true);
      }
    });

    it("concatenated streams decode as one", async () => {
      const second = compress(
        path.compressor[0],
        path.compressor[1],
        Buffer.from("second member\n"),
      );
      const out = await collect(
        decompress(path.codec, chunks(Buffer.concat([compressed, second]), 65536), path.options()),
      );
      expectSameBytes(out, Buffer.concat([plain, Buffer.from("second member\n")]));
    });

    it("empty input decompresses to nothing (or fails clearly)", async () => {
      const empty = compress(path.compressor[0], path.compressor[1], Buffer.alloc(0));
      expect(await collect(decompress(path.codec, chunks(empty), path.options()))).toEqual(
        Buffer.alloc(0),
      );
    });

    it("truncated data → ARCHIVE_INVALID naming the codec", async () => {
      for (const cut of [compressed.length - 7, Math.floor(compressed.length / 2), 20]) {
        const error = await failure(
          decompress(path.codec, chunks(compressed.subarray(0, cut), 65536), {
            ...path.options(),
            dataset: "ds",
          }),
        );
        expect(error.code).toBe("ARCHIVE_INVALID");
        expect(error.message).toMatch(
          new RegExp(`^ds: the ${path.codec} data is corrupt or truncated \\(${path.via}: `),
        );
        expect(error.hint).toMatch(/nothing was published/);
      }
    });

    it("corrupt data → ARCHIVE_INVALID", async () => {
      const error = await failure(
        decompress(path.codec, chunks(corrupted(compressed), 65536), path.options()),
      );
      expect(error.code).toBe("ARCHIVE_INVALID");
      expect(error.message).toMatch(new RegExp(`the ${path.codec} data is corrupt or truncated`));
      // pixz reading a pipe says this before every error: not the cause, left out.
      expect(error.message).not.toContain("Illegal seek");
    });

    it("an error of the source passes through unchanged", async () => {
      const boom = new DsfetchError("TRANSIENT", "network went away");
      async function* broken(): AsyncGenerator<Buffer> {
        yield compressed.subarray(0, 100_000);
        throw boom;
      }
      await expect(collect(decompress(path.codec, broken(), path.options()))).rejects.toBe(boom);
    });

    it("stopping early ends the decompressor and the source", async () => {
      let returned = false;
      async function* source(): AsyncGenerator<Buffer> {
        try {
          // Endless: the data again and again (only the start is ever read).
          for (;;) yield* chunks(compressed, 65536);
        } finally {
          returned = true;
        }
      }
      for await (const chunk of decompress(path.codec, source(), path.options())) {
        expect(chunk.length).toBeGreaterThan(0);
        break;
      }
      await expect.poll(() => returned, { timeout: 5000 }).toBe(true);
    });

    it("abort signal", async () => {
      const controller = new AbortController();
      const reason = new Error("stop now");
      async function* slow(): AsyncGenerator<Buffer> {
        yield compressed.subarray(0, 65536);
        await new Promise((resolve) => setTimeout(resolve, 200));
        yield compressed.subarray(65536);
      }
      const iterable = decompress(path.codec, slow(), {
        ...path.options(),
        signal: controller.signal,
      });
      setTimeout(() => controller.abort(reason), 50);
      await expect(collect(iterable)).rejects.toBe(reason);
    });
  });
}

describe("gzip specifics", () => {
  it("bytes after the gzip stream that are not a member: ARCHIVE_INVALID saying how many and from where, not 'corrupt or truncated' (exploratory review, 2026-12-07)", async () => {
    const gz = compress("gzip", ["-c"], Buffer.from("hello"));
    const second = compress("gzip", ["-c"], Buffer.from(" again"));
    const garbage = Buffer.from("garbage!\n");
    for (const members of [gz, Buffer.concat([gz, second])]) {
      const data = Buffer.concat([members, garbage]);
      // Whole, cut where the stream ends, one byte later, in small pieces, and copied as an
      // extraction thread's input is (inputReused).
      const sources: [AsyncIterable<Buffer>, DecompressOptions][] = [
        [chunks(data), { dataset: "ds" }],
        [
          (async function* () {
            yield data.subarray(0, members.length);
            yield data.subarray(members.length);
          })(),
          { dataset: "ds" },
        ],
        [
          (async function* () {
            yield data.subarray(0, members.length + 1);
            yield data.subarray(members.length + 1);
          })(),
          { dataset: "ds" },
        ],
        [chunks(data, 1, 7, 5), { dataset: "ds" }],
        [chunks(data, 3), { dataset: "ds", inputReused: true }],
      ];
      for (const [source, options] of sources) {
        const error = await failure(decompress("gzip", source, options));
        expect(error.code).toBe("ARCHIVE_INVALID");
        expect(error.message).toBe(
          `ds: the gzip data has ${garbage.length} bytes after the end of the gzip stream (at byte ${members.length} of ${data.length}) that are not a gzip member`,
        );
        expect(error.hint).toMatch(/^nothing was published\. The gzip stream before them is whole/);
        expect(error.hint).toContain(`head -c ${members.length} <file> > fixed.tar.gz`);
        expect(error.hint).toContain("trailing garbage ignored");
      }
    }
    // Data that is no gzip at all stays "corrupt".
    const error = await failure(decompress("gzip", chunks(Buffer.from("garbage!\n"))));
    expect(error.message).toMatch(
      /gzip data is corrupt or truncated \(node:zlib: incorrect header check\)/,
    );
  });

  it("bytes after the stream of a larger archive: where it ends, exactly (zlib's gunzip could not say it past 8 MiB)", async () => {
    const big = gzipSync(randomBytes(9 << 20), { level: 0 });
    const garbage = Buffer.from("garbage!\n");
    const data = Buffer.concat([big, garbage]);
    const error = await failure(decompress("gzip", chunks(data, 1 << 20), { dataset: "ds" }));
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toBe(
      `ds: the gzip data has 9 bytes after the end of the gzip stream (at byte ${big.length} of ${data.length}) that are not a gzip member`,
    );
    expect(error.hint).toContain(`head -c ${big.length} <file> > fixed.tar.gz`);
  });

  it("bytes after the stream, many of them: read on 16 MiB at most for the count, not to the end (review)", async () => {
    const gz = gzipSync(Buffer.from("hello"));
    let given = 0;
    const source = (async function* () {
      yield gz;
      for (let i = 0; i < 64; i++) {
        given += 1 << 20;
        yield Buffer.alloc(1 << 20, 0x61);
      }
    })();
    const error = await failure(decompress("gzip", source, { dataset: "ds" }));
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toMatch(
      /^ds: the gzip data has more than \d+ bytes after the end of the gzip stream \(at byte \d+ of more than \d+: not read to its end\) that are not a gzip member$/,
    );
    expect(given).toBeLessThanOrEqual(24 << 20);
  });

  it("bytes after a stream of many members: where it ends, exactly", async () => {
    const members = Buffer.concat(Array.from({ length: 1001 }, () => gzipSync(Buffer.alloc(0))));
    const source = (async function* () {
      yield members;
      yield Buffer.from("garbage!\n");
    })();
    const error = await failure(decompress("gzip", source, { dataset: "ds" }));
    expect(error.code).toBe("ARCHIVE_INVALID");
    expect(error.message).toBe(
      `ds: the gzip data has 9 bytes after the end of the gzip stream (at byte ${members.length} of ${members.length + 9}) that are not a gzip member`,
    );
  });

  it("bytes after the last member: zeros are accepted, anything else refused, after a NUL too (review, 2026-12-06)", async () => {
    // node:zlib stops at a NUL byte after a member and ignores the rest, whatever it is:
    // "\0junk", even a whole member after a NUL, was dropped without a word.
    const gz = compress("gzip", ["-c"], Buffer.from("hello"));
    const second = compress("gzip", ["-c"], Buffer.from(" again"));
    /** The data whole, cut where the member ends, one byte later, and in small pieces. */
    const cuttings = (data: Buffer): AsyncIterable<Buffer>[] => [
      chunks(data),
      (async function* () {
        yield data.subarray(0, gz.length);
        yield data.subarray(gz.length);
      })(),
      (async function* () {
        yield data.subarray(0, gz.length + 1);
        yield data.subarray(gz.length + 1);
      })(),
      chunks(data, 1, 7, 5),
    ];
    for (const tail of [
      Buffer.from("\0junk"),
      Buffer.concat([Buffer.from([0]), second]),
      Buffer.concat([Buffer.alloc(10_000), Buffer.from("x")]),
    ]) {
      for (const source of cuttings(Buffer.concat([gz, tail]))) {
        const error = await failure(decompress("gzip", source, { dataset: "ds" }));
        expect(error.code).toBe("ARCHIVE_INVALID");
        expect(error.message).toBe(
          `ds: the gzip data has ${tail.length} bytes after the end of the gzip stream (at byte ${gz.length} of ${gz.length + tail.length}) that are not a gzip member`,
        );
        expect(error.hint).toMatch(/nothing was published/);
      }
    }
    // zlib stopped at the NUL and the output ended before the source did: its rest is read.
    const large = compress("gzip", ["-c"], randomBytes(5 << 20));
    async function* later(): AsyncGenerator<Buffer> {
      yield Buffer.concat([large, Buffer.alloc(1)]);
      await new Promise((resolve) => setTimeout(resolve, 50));
      yield* chunks(Buffer.alloc(6 << 20), 64 << 10);
      yield Buffer.from("junk");
    }
    const error = await failure(decompress("gzip", later()));
    expect(error.message).toBe(
      `the gzip data has ${1 + (6 << 20) + 4} bytes after the end of the gzip stream (at byte ${large.length} of ${large.length + 1 + (6 << 20) + 4}) that are not a gzip member`,
    );
    // Zero padding (a tape's or dd's blocking) is not an error, nor a member after a member.
    for (const tail of [Buffer.alloc(1), Buffer.alloc(10_000), second]) {
      for (const source of cuttings(Buffer.concat([gz, tail]))) {
        const out = await collect(decompress("gzip", source, { dataset: "ds" }));
        expect(out.toString()).toBe(tail === second ? "hello again" : "hello");
      }
    }
  });

  it("gzip always uses node:zlib", () => {
    expect(decompressorFor("gzip", { prefer: "library", searchPath: "" })).toEqual({
      codec: "gzip",
      via: "node:zlib",
    });
  });
});

describe("bzip2: bytes after the last stream (decoders ignore them)", () => {
  const bzip2Paths = PATHS.filter((path) => path.codec === "bzip2");
  for (const path of bzip2Paths) {
    it.skipIf(!path.available())(`${path.via}: refused; several streams are not`, async () => {
      const first = compress("bzip2", ["-c"], Buffer.from("hello "));
      const second = compressedSample("bzip2", ["-c"]);
      // Two streams, as pbzip2 and lbzip2 write: one text.
      const both = await collect(
        decompress("bzip2", chunks(Buffer.concat([first, second]), 1000, 70_000), path.options()),
      );
      expect(both.equals(Buffer.concat([Buffer.from("hello "), plain]))).toBe(true);
      // In chunks of 1-5 bytes too: the last bytes arrive split across chunks.
      for (const [stream, min, max] of [
        [first, 1, 5],
        [second, 1000, 70_000],
      ] as const) {
        // Zeros alone are padding, accepted (review-2026-12-06.test.ts); a byte that is not
        // zero is refused, after zeros too.
        for (const appended of [
          Buffer.from("garbage after the stream"),
          Buffer.from([1]),
          Buffer.from([0, 0, 1]),
        ]) {
          const error = await failure(
            decompress("bzip2", chunks(Buffer.concat([stream, appended]), min, max), {
              ...path.options(),
              dataset: "imagenet",
            }),
          );
          expect(error.code).toBe("ARCHIVE_INVALID");
          // unbzip2-stream refuses some appended bytes itself ("corrupt"); the programs never.
          expect(error.message).toMatch(
            path.via === "unbzip2-stream"
              ? /^imagenet: the bzip2 data (does not end with the end of a bzip2 stream|is corrupt)/
              : /^imagenet: the bzip2 data does not end with the end of a bzip2 stream: bytes follow it \(bzip2 and lbzip2 would ignore them\)$/,
          );
        }
      }
    });
  }

  it("every bit padding of a stream's end is found; appended bytes are not taken for one", () => {
    const paddings = new Set<number>();
    // Until every padding was seen (~20-40 sizes; one bzip2 run each), at most 120 sizes.
    for (let size = 0; size < 120 && (paddings.size < 8 || size < 16); size++) {
      const stream = compress("bzip2", ["-c"], randomBytes(size));
      expect(endsWithBzip2Stream(stream)).toBe(true);
      // Where the end marker sits: the bits of padding after the CRC, 0-7.
      for (let padding = 0; padding < 8; padding++) {
        const tail = stream.subarray(stream.length - 11);
        let value = 0n;
        for (const byte of tail) value = (value << 8n) | BigInt(byte);
        if (((value >> BigInt(padding + 32)) & 0xffffffffffffn) === 0x177245385090n) {
          paddings.add(padding);
        }
      }
      for (const extra of [1, 2, 7, 11, 40]) {
        const appended = Buffer.concat([stream, randomBytes(extra)]);
        expect(endsWithBzip2Stream(appended)).toBe(false);
      }
    }
    // The sizes above end their streams at every one of the 8 bit offsets.
    expect([...paddings].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
  });
});

describe("xz memory limit (xz bombs)", () => {
  it.skipIf(findProgram("xz") === undefined)(
    "a stream needing more than the limit is refused",
    async () => {
      // The default preset (-6) uses an 8 MiB dictionary: more than a 1 MiB limit.
      const xz = compress("xz", ["-c", "-6"], Buffer.alloc(1 << 20));
      const error = await failure(
        decompress("xz", chunks(xz), {
          searchPath: pathWith("xz"),
          xzMemoryLimit: 1 << 20,
          dataset: "bomb",
        }),
      );
      expect(error.code).toBe("ARCHIVE_INVALID");
      expect(error.message).toMatch(
        /^bomb: the xz data needs more memory to decompress than the limit of 1048576 bytes/,
      );
      // Not xz's own figures: xz 5.4.1 says "1 MiB of memory is required" whatever is needed.
      expect(error.message).not.toMatch(/of memory is required/);
      expect(error.hint).toMatch(/smaller dictionary/);
    },
  );
});

describe("choice of implementation", () => {
  it("programs first, then libraries; none → UNSUPPORTED with what to install", async () => {
    const empty = pathWith();
    for (const codec of ["xz", "bzip2"] as const) {
      const library = codec === "xz" ? "lzma-native" : "unbzip2-stream";
      const choice = decompressorFor(codec, { searchPath: empty });
      if (libraryAvailable(library)) {
        expect(choice.via).toBe(library);
        continue;
      }
      expect(choice).toEqual({ codec, via: "none" });
      const error = await failure(
        decompress(codec, chunks(Buffer.from("x")), { searchPath: empty, dataset: "ds" }),
      );
      expect(error.code).toBe("UNSUPPORTED");
      expect(error.message).toMatch(new RegExp(`^ds: cannot decompress ${codec} data`));
      expect(error.hint).toMatch(
        codec === "xz" ? /apt-get install -y xz-utils/ : /apt-get install -y bzip2/,
      );
      expect(error.hint).toMatch(new RegExp(`npm install ${library}`));
    }
  });

  it("describes the command line of a program", () => {
    const xz = findProgram("xz");
    if (xz === undefined) return;
    const choice = decompressorFor("xz", { searchPath: pathWith("xz"), xzMemoryLimit: 12345 });
    expect(choice.via).toBe("xz");
    expect(choice.command).toEqual([
      join(pathWith("xz"), "xz"),
      "--decompress",
      "--stdout",
      "--format=xz",
      "--threads=0",
      "--memlimit-decompress=12345",
    ]);
  });
});
