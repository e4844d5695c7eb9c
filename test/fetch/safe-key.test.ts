// Why a folder's key cannot be a path: each reason names what is wrong with the key.
import { describe, expect, it } from "vitest";
import { unsafeRelativePath } from "../../src/fetch/safe-key.ts";

describe("unsafeRelativePath", () => {
  it("a key that ends with / yet holds bytes is said to be so, not an empty // segment", () => {
    expect(unsafeRelativePath("images/cats/")).toBe(
      'it ends with "/" yet holds bytes (a file of no name: a directory marker holds none)',
    );
    expect(unsafeRelativePath("images//cats.jpg")).toBe("it has an empty path segment (//)");
    expect(unsafeRelativePath("images/cats.jpg")).toBeUndefined();
  });
});
