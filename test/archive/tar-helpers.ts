// Helpers for the archive tests: tar headers written by hand (for hostile archives), temp
// workspaces, tree snapshots, and chunked sources.
import { execFileSync } from "node:child_process";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface HeaderOptions {
  name: string;
  /** Type flag character ("0", "5", "2", …) or a byte value. */
  type?: string | number;
  size?: number;
  mode?: number;
  linkname?: string;
  /** ustar prefix field (only meaningful with the POSIX magic). */
  prefix?: string;
  /** "posix" (ustar\0 00), "gnu" (ustar  \0) or "v7" (no magic). */
  format?: "posix" | "gnu" | "v7";
  /** Raw bytes for the size field instead of the octal size (checksum still computed). */
  rawSize?: Buffer;
  /** Raw bytes for the name field (e.g. not UTF-8). */
  rawName?: Buffer;
  /** Corrupt the checksum after computing it. */
  badChecksum?: boolean;
}

function octal(value: number, width: number): string {
  return `${value.toString(8).padStart(width - 1, "0")}\0`;
}

/** One 512-byte tar header with a correct checksum (unless told otherwise). */
export function tarHeader(options: HeaderOptions): Buffer {
  const block = Buffer.alloc(512);
  if (options.rawName !== undefined) options.rawName.copy(block, 0, 0, 100);
  else block.write(options.name, 0, 100, "utf8");
  block.write(octal(options.mode ?? 0o644, 8), 100, "latin1");
  block.write(octal(0, 8), 108, "latin1");
  block.write(octal(0, 8), 116, "latin1");
  if (options.rawSize !== undefined) options.rawSize.copy(block, 124, 0, 12);
  else block.write(octal(options.size ?? 0, 12), 124, "latin1");
  block.write(octal(0o14000000000, 12), 136, "latin1");
  const type = options.type ?? "0";
  block[156] = typeof type === "number" ? type : type.charCodeAt(0);
  block.write(options.linkname ?? "", 157, 100, "utf8");
  const format = options.format ?? "posix";
  if (format === "posix") {
    block.write("ustar\0", 257, "latin1");
    block.write("00", 263, "latin1");
  } else if (format === "gnu") {
    block.write("ustar  \0", 257, "latin1");
  }
  if (format !== "v7") {
    block.write("root", 265, "latin1");
    block.write("root", 297, "latin1");
  }
  if (options.prefix !== undefined) block.write(options.prefix, 345, 155, "utf8");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  if (options.badChecksum === true) block.write("000001\0 ", 148, "latin1");
  return block;
}

function pad(data: Buffer): Buffer {
  const rest = data.length % 512;
  return rest === 0 ? data : Buffer.concat([data, Buffer.alloc(512 - rest)]);
}

/** A header plus its data, padded to 512. `size` defaults to the data's length. */
export function tarEntry(options: HeaderOptions, data: Buffer | string = Buffer.alloc(0)): Buffer {
  const bytes = typeof data === "string" ? Buffer.from(data) : data;
  return Buffer.concat([tarHeader({ size: bytes.length, ...options }), pad(bytes)]);
}

export const file = (name: string, data: string | Buffer = "", mode = 0o644): Buffer =>
  tarEntry({ name, mode }, data);
export const dir = (name: string): Buffer => tarEntry({ name, type: "5", mode: 0o755 });
export const symlink = (name: string, target: string): Buffer =>
  tarEntry({ name, type: "2", linkname: target, mode: 0o777 });
export const hardlink = (name: string, target: string): Buffer =>
  tarEntry({ name, type: "1", linkname: target });

/** A pax extended header ('x', or 'g' global) carrying these records. */
export function pax(records: Record<string, string>, type: "x" | "g" = "x"): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of Object.entries(records)) {
    const body = ` ${key}=${value}\n`;
    const bodyBytes = Buffer.byteLength(body);
    let length = bodyBytes + 1;
    while (String(length).length + bodyBytes !== length) length = String(length).length + bodyBytes;
    parts.push(Buffer.from(`${length}${body}`));
  }
  return tarEntry({ name: "PaxHeader/x", type }, Buffer.concat(parts));
}

/** A GNU base-256 size field (rawSize): 0x80, then the number big-endian in 11 bytes. */
export function base256(value: number): Buffer {
  const field = Buffer.alloc(12);
  field[0] = 0x80;
  let rest = value;
  for (let i = 11; i > 0 && rest > 0; i--) {
    field[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  return field;
}

/** A GNU long name ('L') or long link name ('K') header for the next entry. */
export function gnuLong(type: "L" | "K", value: string): Buffer {
  return tarEntry({ name: "././@LongLink", type, format: "gnu" }, Buffer.from(`${value}\0`));
}

/** The end-of-archive marker: two zero blocks. */
export const END = Buffer.alloc(1024);

export function tar(...parts: Buffer[]): Buffer {
  return Buffer.concat([...parts, END]);
}

/** Yields `data` in chunks of the given sizes (cycled), or random sizes in [min, max]. */
export async function* chunks(
  data: Buffer,
  min = 1 << 20,
  max = min,
  seed = 1,
): AsyncGenerator<Buffer> {
  let state = seed >>> 0 || 1;
  const random = () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
  let at = 0;
  while (at < data.length) {
    const size = min + Math.floor(random() * (max - min + 1));
    yield data.subarray(at, at + size);
    at += size;
  }
}

export interface Workspace {
  /** A fresh temp dir: root/work/dest. */
  root: string;
  work: string;
  dest: string;
  /** What exists outside dest (under root), to compare before and after. */
  outside(): string[];
  cleanup(): void;
}

export function workspace(prefix = "dsfetch-tar-"): Workspace {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const work = join(root, "work");
  const dest = join(work, "dest");
  mkdirSync(dest, { recursive: true });
  return {
    root,
    work,
    dest,
    outside: () => snapshot(root, new Set([dest])),
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** path, type, size, links and content of everything under `dir` (not following links, skipping `skip`). */
export function snapshot(dir: string, skip = new Set<string>()): string[] {
  const out: string[] = [];
  const walk = (path: string, rel: string) => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name);
      const relative = rel === "" ? name : `${rel}/${name}`;
      const stat = lstatSync(full);
      if (skip.has(full)) {
        out.push(`${relative} (skipped dir)`);
        continue;
      }
      if (stat.isSymbolicLink()) out.push(`${relative} -> ${readlinkSync(full)}`);
      else if (stat.isDirectory()) {
        out.push(`${relative}/ ${(stat.mode & 0o7777).toString(8)}`);
        walk(full, relative);
      } else {
        out.push(
          `${relative} ${(stat.mode & 0o7777).toString(8)} nlink=${stat.nlink} ${readFileSync(full).toString("base64")}`,
        );
      }
    }
  };
  walk(dir, "");
  return out;
}

/** Runs a program, returns stdout. */
export function run(file: string, args: string[], cwd?: string): Buffer {
  return execFileSync(file, args, { cwd, maxBuffer: 1 << 30, stdio: ["ignore", "pipe", "pipe"] });
}

export function hasProgram(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
