// The plan table on stderr: every line ends with a newline, notes and errors included.
import { describe, expect, it } from "vitest";
import { renderPlanTable } from "../../src/cli/render.ts";
import type { PlanEntry } from "../../src/plan/plan.ts";

const entry: PlanEntry = {
  name: "mnist",
  uri: "s3://b/mnist.zip",
  kind: "object",
  etag: null,
  versionId: null,
  bytes: 1000,
  objects: 1,
  archive: "zip",
  volume: "shared",
  path: "/storage/t/data/mnist",
  mount: "/data/mnist",
  cached: false,
};

describe("renderPlanTable", () => {
  it("ends with a newline when an error and its hint follow the table (the prompt was glued to the hint)", () => {
    const text = renderPlanTable([
      { ...entry, error: { code: "NO_SPACE", message: "mnist: needs more", hint: "raise it" } },
    ]);
    expect(text.endsWith("  hint: raise it\n")).toBe(true);
    expect(text).not.toMatch(/\n\n$/);
  });

  it("ends with exactly one newline without notes", () => {
    const text = renderPlanTable([entry]);
    expect(text.endsWith("/storage/t/data/mnist\n")).toBe(true);
    expect(text).not.toMatch(/\n\n$/);
  });
});
