// The container image, checked without a Docker engine (scripts/check-image.ts): the
// Dockerfile, the build context, a build from that context, and a production install of the
// packed package whose entrypoint must run. The install reaches the npm registry.
import { describe, expect, it } from "vitest";
import { checkImage, dockerIgnore, parseDockerfile } from "../../scripts/check-image.ts";

describe("the container image", () => {
  it(
    "builds from its context and runs from a production install",
    async () => {
      const lines: string[] = [];
      const results = await checkImage({ log: (line) => lines.push(line) });
      const failed = results.filter((result) => !result.ok);
      expect(failed, lines.join("\n")).toEqual([]);
      expect(results.map((result) => result.name)).toEqual(
        expect.arrayContaining([
          "COPY --from=build",
          "entrypoint file",
          "dsfetch version",
          "dsfetch help",
          "production dependencies load",
        ]),
      );
    },
    10 * 60_000,
  );
});

describe("parseDockerfile", () => {
  it("follows continuations, comments, ARG defaults, stages, WORKDIR and COPY", () => {
    const parsed = parseDockerfile(
      [
        "# syntax=docker/dockerfile:1",
        "ARG BASE=node:24-bookworm-slim",
        // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile syntax, not a template
        "FROM ${BASE} AS build",
        "WORKDIR /build",
        "COPY a b ./",
        "RUN one \\",
        "  # a comment inside a continuation",
        " && two",
        "FROM --platform=linux/amd64 $BASE",
        "WORKDIR /app",
        "WORKDIR sub",
        "COPY --from=build --chown=1:1 /build/dist ./dist",
        'ENTRYPOINT ["tini", "--"]',
      ].join("\n"),
    );
    expect(parsed.stages).toEqual([
      { image: "node:24-bookworm-slim", name: "build", workdir: "/build" },
      { image: "node:24-bookworm-slim", name: undefined, workdir: "/app/sub" },
    ]);
    expect(parsed.copies).toEqual([
      { stage: 0, from: undefined, sources: ["a", "b"], destination: "/build" },
      { stage: 1, from: "build", sources: ["/build/dist"], destination: "/app/sub/dist" },
    ]);
    expect(parsed.instructions.find((i) => i.keyword === "RUN")?.args).toMatch(/^one\s+&& two$/);
  });
});

describe("dockerIgnore", () => {
  it("applies the last matching rule to a path or its parents", () => {
    const ignored = dockerIgnore("# allowlist\n*\n!src\n!package.json\nsrc/**/*.test.ts\n");
    expect(ignored("node_modules/x/index.js")).toBe(true);
    expect(ignored("dist")).toBe(true);
    expect(ignored(".git/HEAD")).toBe(true);
    expect(ignored("package.json")).toBe(false);
    expect(ignored("package-lock.json")).toBe(true);
    expect(ignored("src/cli/main.ts")).toBe(false);
    expect(ignored("src/cli/main.test.ts")).toBe(true);
  });

  it("matches * within one segment and ** across them", () => {
    const ignored = dockerIgnore("*.log\n**/tmp\n/bench/\n");
    expect(ignored("a.log")).toBe(true);
    expect(ignored("logs/a.log")).toBe(false);
    expect(ignored("x/y/tmp/z")).toBe(true);
    expect(ignored("bench/run.ts")).toBe(true);
    expect(ignored("src/bench.ts")).toBe(false);
  });
});
