// What storageError says of a filesystem error: the cause named, not a bare errno.
import { describe, expect, it } from "vitest";
import { storageError } from "../../src/volumes/attempt.ts";

const systemError = (code: string, extra: Record<string, string>) =>
  Object.assign(new Error(`${code}: raw`), { code, ...extra });

describe("storageError", () => {
  it("a file where a directory goes (mkdir EEXIST): names it", () => {
    const error = storageError(
      systemError("EEXIST", { syscall: "mkdir", path: "/s/t/data/.dsfetch/tmp" }),
      "/s/t/data/x",
    );
    expect(error.code).toBe("STORAGE");
    expect(error.message).toBe(
      "cannot write to /s/t/data/x: /s/t/data/.dsfetch/tmp is in the way: it exists and is not a directory (move it away)",
    );
  });

  it("ENOTDIR: names the path that met it", () => {
    const error = storageError(systemError("ENOTDIR", { path: "/s/t/data/x/y" }), "/s/t/data/x");
    expect(error.message).toBe(
      "cannot write to /s/t/data/x: a part of /s/t/data/x/y is a file, not a directory (move it away)",
    );
  });

  it("EEXIST of another call (a rename, an exclusive open) keeps its own text", () => {
    const error = storageError(systemError("EEXIST", { syscall: "open", path: "/p" }), "/p");
    expect(error.message).toBe("cannot write to /p: EEXIST: raw");
  });
});
