// The order of a folder's downloads once creates are slow (fetch/download-prefix.ts):
// one object of each directory in turn, so that creates in different directories overlap.
import { describe, expect, it } from "vitest";
import { acrossDirectories } from "../../src/fetch/download-prefix.ts";
import type { ListedObject } from "../../src/fetch/resolve.ts";

const listed = (paths: readonly string[]): ListedObject[] =>
  paths.map((relativePath) => ({ key: `p/${relativePath}`, relativePath, bytes: 1, etag: "e" }));

describe("acrossDirectories", () => {
  it("takes the directories in turn, in order of first appearance, from `from` on", () => {
    const objects = listed(["a/1", "a/2", "a/3", "b/1", "top", "b/2", "c/d/1", "a/4"]);
    expect(acrossDirectories(objects, 0)).toEqual([0, 3, 4, 6, 1, 5, 2, 7]);
    // The first two were fetched already: their places are never read again.
    expect(acrossDirectories(objects, 2).slice(2)).toEqual([2, 3, 4, 6, 7, 5]);
    expect(acrossDirectories(objects, 2)).toHaveLength(objects.length);
  });

  it("one large directory and many small ones: every index once, in linear time", () => {
    const paths = [
      ...Array.from({ length: 200_000 }, (_, i) => `big/${i}`),
      ...Array.from({ length: 20_000 }, (_, i) => `small${i}/x`),
    ];
    const order = acrossDirectories(listed(paths), 0);
    expect(order).toHaveLength(paths.length);
    expect(new Set(order).size).toBe(paths.length);
    expect(order.slice(0, 3)).toEqual([0, 200_000, 200_001]);
  });
});
