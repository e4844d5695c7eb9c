import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { EXAMPLES_DIR, REGENERATE, renderExamples } from "./examples.ts";
import { validateObject } from "./validate.ts";

const examples = renderExamples();

describe("examples/k8s", () => {
  it.each([...examples.keys()])("%s is what the renderer produces now", (file) => {
    const path = `${EXAMPLES_DIR}${file}`;
    const expected = examples.get(file) ?? "";
    if (process.env.UPDATE_EXAMPLES === "1") writeFileSync(path, expected);
    const actual = existsSync(path) ? readFileSync(path, "utf8") : "(missing)";
    if (actual !== expected) {
      expect.fail(
        `examples/k8s/${file} differs from what the renderer produces now; if the change is intended, regenerate it with: ${REGENERATE}`,
      );
    }
  });

  it.each([...examples.keys()])("%s holds valid Kubernetes objects", (file) => {
    const documents = parseAllDocuments(examples.get(file) ?? "").map((doc) => {
      expect(doc.errors).toEqual([]);
      return doc.toJS() as Parameters<typeof validateObject>[0];
    });
    expect(documents.length).toBeGreaterThanOrEqual(2);
    for (const object of documents) expect(validateObject(object)).toEqual([]);
  });

  it("shows the multi-worker job with a native sidecar and a ReadWriteMany claim", () => {
    const kinds = parseAllDocuments(examples.get("multi-worker.yaml") ?? "").map(
      (doc) => (doc.toJS() as { kind: string }).kind,
    );
    expect(kinds).toEqual(["PersistentVolumeClaim", "ConfigMap", "Job"]);
    expect(examples.get("multi-worker.yaml")).toMatch(/- ReadWriteMany/);
    expect(examples.get("multi-worker.yaml")).toMatch(/restartPolicy: Always/);
  });
});
