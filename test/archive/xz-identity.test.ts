// An `xz` on the PATH that is not XZ Utils (review, 2026-12-07): BusyBox's applet (Alpine,
// slim images) takes `xz -d [-cfk]` only, refused the options dsfetch gives xz
// ("unrecognized option '--decompress'", exit 1), and every .tar.xz failed as a corrupt
// archive (ARCHIVE_INVALID, exit 8). Such an `xz` is passed over: XZ Utils' `xz` later on
// the PATH, else pixz, else lzma-native. The stand-in below answers as BusyBox 1.35's did.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { decompress, decompressorFor, findProgram } from "../../src/archive/decompress.ts";
import { runCli } from "../harness/cli.ts";
import { createBucket, putObject, testEnv } from "../harness/s3.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-xz-identity-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** A directory holding only a BusyBox-like `xz`: it refuses every long option. */
const busyboxLike = join(root, "busybox-bin");
mkdirSync(busyboxLike);
writeFileSync(
  join(busyboxLike, "xz"),
  `#!/bin/sh
for arg in "$@"; do
  case "$arg" in
    --*) echo "xz: unrecognized option '$arg'" >&2
         echo "BusyBox v1.35.0 multi-call binary." >&2
         echo "Usage: xz -d [-cfk] [FILE]..." >&2
         exit 1 ;;
  esac
done
exec ${JSON.stringify(findProgram("xz") ?? "/usr/bin/xz")} "$@"
`,
);
chmodSync(join(busyboxLike, "xz"), 0o755);

/** The stand-in first, then a directory with the real XZ Utils xz. */
const realXz = findProgram("xz");

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of source) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* once(data: Buffer): AsyncGenerator<Buffer> {
  yield data;
}

describe("an xz that is not XZ Utils", () => {
  it("is passed over for XZ Utils' xz later on the PATH", async () => {
    expect(realXz, "XZ Utils' xz is needed: apt-get install -y xz-utils").toBeDefined();
    const searchPath = `${busyboxLike}:${join(realXz as string, "..")}`;
    const chosen = decompressorFor("xz", { searchPath });
    expect(chosen.via).toBe("xz");
    expect(chosen.command?.[0]).toBe(realXz);
    const data = randomBytes(200_000);
    const xz = execFileSync(realXz as string, ["-c"], { input: data });
    expect((await collect(decompress("xz", once(xz), { searchPath }))).equals(data)).toBe(true);
  });

  it("alone on the PATH: not used; the data is decompressed all the same", async () => {
    const chosen = decompressorFor("xz", { searchPath: busyboxLike });
    expect(chosen.via).not.toBe("xz");
    expect(chosen.via).not.toBe("none");
    const data = randomBytes(200_000);
    const xz = execFileSync(realXz as string, ["-c"], { input: data });
    const out = await collect(decompress("xz", once(xz), { searchPath: busyboxLike }));
    expect(out.equals(data)).toBe(true);
  });

  it("dsfetch fetch of a .tar.xz with it first on the PATH: exit 0, byte-exact", async () => {
    const source = join(root, "source");
    mkdirSync(join(source, "train"), { recursive: true });
    writeFileSync(join(source, "train", "a.bin"), randomBytes(50_000));
    writeFileSync(join(source, "labels.csv"), "id,label\n1,cat\n");
    const archive = join(root, "data.tar.xz");
    execFileSync("tar", ["-cJf", archive, "-C", source, "."]);
    const bucket = await createBucket("xz-identity");
    await putObject(bucket, "data.tar.xz", readFileSync(archive));
    const storage = await mkdtemp(join(root, "storage-"));
    const result = await runCli(
      ["fetch", "--datasets", "-", "--storage-root", storage, "--team", "ml", "--json"],
      {
        env: { ...testEnv(), PATH: `${busyboxLike}:${process.env.PATH ?? "/usr/bin:/bin"}` },
        stdin: JSON.stringify([{ uri: `s3://${bucket}/data.tar.xz` }]),
        timeoutMs: 60_000,
      },
    );
    expect(result.code, result.stdout + result.stderr).toBe(0);
    const data = join(storage, "ml", "data", "data");
    expect(readFileSync(join(data, "train", "a.bin"))).toEqual(
      readFileSync(join(source, "train", "a.bin")),
    );
    expect(readFileSync(join(data, "labels.csv"), "utf8")).toBe("id,label\n1,cat\n");
  });
});
