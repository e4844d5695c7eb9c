import { describe, expect, it } from "vitest";
import { CollisionGuard } from "../../src/archive/entry-path.ts";

// The guard keys entries by a hash of their folded name: names that share a hash must still
// be told apart, and collisions still found among them. A constant hash puts every name on
// one hash; the real one is seeded and rarely shares.
const guards = [
  ["seeded hash", () => new CollisionGuard()],
  ["every name on one hash", () => new CollisionGuard(() => 7)],
] as const;

describe.each(guards)("CollisionGuard (%s)", (_, make) => {
  it("accepts distinct names and finds case and normalisation collisions with the earlier name", () => {
    const guard = make();
    expect(guard.check("a/File.txt", false)).toBeUndefined();
    expect(guard.check("a/other.txt", false)).toBeUndefined();
    expect(guard.check("a", true)).toBeUndefined();
    expect(guard.check("a/FILE.TXT", false)).toBe("a/File.txt");
    expect(guard.check("A", true)).toBe("a");
    // "é" precomposed, then decomposed (e + U+0301).
    expect(guard.check("caf\u00e9", false)).toBeUndefined();
    expect(guard.check("cafe\u0301", false)).toBe("caf\u00e9");
    expect(guard.check("a/other.txt", false)).toBe("a/other.txt");
  });

  it("lets a directory be listed twice, but not a file as a directory or the other way round", () => {
    const guard = make();
    expect(guard.check("d", true)).toBeUndefined();
    expect(guard.check("d", true)).toBeUndefined();
    expect(guard.check("D", true)).toBe("d");
    expect(guard.check("f", false)).toBeUndefined();
    expect(guard.check("f", true)).toBe("f");
    expect(guard.check("d", false)).toBe("d");
  });

  it("keeps 2,000 names apart", () => {
    const guard = make();
    const count = 2_000;
    for (let i = 0; i < count; i++) expect(guard.check(`dir/file-${i}`, false)).toBeUndefined();
    expect(guard.check(`DIR/FILE-${count - 1}`, false)).toBe(`dir/file-${count - 1}`);
    expect(guard.check("dir/file-0", false)).toBe("dir/file-0");
  });
});
