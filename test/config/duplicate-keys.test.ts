// firstDuplicateKey: only a key given twice in the same object counts.
import { describe, expect, it } from "vitest";
import { firstDuplicateKey } from "../../src/config/duplicate-keys.ts";

describe("firstDuplicateKey", () => {
  it("finds a key given twice in one object, with the line of the second", () => {
    expect(firstDuplicateKey('{\n"a": 1,\n"b": 2,\n"a": 3}')).toEqual({ key: "a", line: 4 });
  });

  it("ignores equal keys in different objects, and keys' names used as values or inside strings", () => {
    for (const text of [
      '[{ "uri": "x" }, { "uri": "y" }]',
      '{ "name": "uri", "uri": "s3://b/k" }',
      '{ "a": { "a": 1 }, "b": [{ "a": 2 }, { "a": 3 }] }',
      '{ "a": "{ \\"a\\": 1, \\"a\\": 2 }", "b": "x,y:z" }',
      "{ a: 1, // a: 2\n b: 2, /* a: 3 */ c: 'it''s' }".replace("''", "\\'"),
      '{ "a": [1, 2, {"b": 1}], "b": 2 }',
    ]) {
      expect(firstDuplicateKey(text), text).toBeUndefined();
    }
  });

  it("compares keys by their value: quotes, identifiers and escapes spell the same key", () => {
    expect(firstDuplicateKey("{ uri: 1, 'uri': 2 }")?.key).toBe("uri");
    expect(firstDuplicateKey('{ "uri": 1, "u\\u0072i": 2 }')?.key).toBe("uri");
  });

  it("counts lines inside comments and strings", () => {
    expect(firstDuplicateKey('/*\n\n*/ { "a": "x\\\ny", "a": 2 }')).toEqual({ key: "a", line: 4 });
  });
});
