import { describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { renderYaml, renderYamlDocuments, yamlString } from "../../src/k8s/yaml.ts";

// Read back with a real YAML parser, both as YAML 1.2 and as YAML 1.1 (kubectl's dialect,
// where yes/on/y are booleans and 1:20 is a number): the emitter must mean the same to both.
function readBack(text: string): { v12: unknown; v11: unknown } {
  return {
    v12: parse(text, { version: "1.2", uniqueKeys: true }),
    v11: parse(text, { version: "1.1", uniqueKeys: true }),
  };
}

const TRICKY = [
  "",
  " ",
  "yes",
  "No",
  "ON",
  "off",
  "y",
  "N",
  "true",
  "False",
  "null",
  "Null",
  "~",
  "1e3",
  "0x1F",
  "0o17",
  "012",
  "1_000",
  "1:20",
  "2001-12-14",
  "-",
  "-1",
  "- x",
  "--mount",
  "---",
  "...",
  "#x",
  "a #b",
  "a: b",
  "a:b",
  " lead",
  "trail ",
  "@x",
  "`x",
  "!tag",
  "&a",
  "*a",
  "%x",
  "{a}",
  "[a]",
  ",",
  "?",
  "|",
  ">",
  "'q'",
  '"q"',
  ".inf",
  ".nan",
  "=",
  "<<",
  "10Gi",
  "dsfetch:0.1.0",
  "s3://b/k",
  "/readyz",
  "app.kubernetes.io/name",
  "é",
  "😀",
  "tab\there",
  "nel\u0085x",
  "ls\u2028x",
  "bom\ufeff",
  "del\u007f",
  "bell\u0007",
  "cr\r\nlf",
  "multi\nline",
  "multi\nline\n",
  "two finals\n\n",
  "\nleading newline",
  "  indented\nblock",
  "a\n  \nb",
  "a\n\nb\n",
  "- a\n- b\n",
  "# not a comment\n",
];

describe("renderYaml", () => {
  it("writes block YAML, lists indented under their key", () => {
    expect(
      renderYaml({
        apiVersion: "v1",
        metadata: { name: "x", labels: { "app.kubernetes.io/name": "dsfetch" } },
        spec: {
          containers: [{ name: "c", args: ["--port", "8700"], ports: [{ containerPort: 8700 }] }],
          emptyDir: {},
          list: [],
          flag: true,
          nothing: null,
          skipped: undefined,
        },
        data: { "datasets.json": '[\n  {"uri": "s3://b/k"}\n]\n' },
      }),
    ).toBe(
      [
        "apiVersion: v1",
        "metadata:",
        "  name: x",
        "  labels:",
        "    app.kubernetes.io/name: dsfetch",
        "spec:",
        "  containers:",
        "    - name: c",
        "      args:",
        "        - --port",
        '        - "8700"',
        "      ports:",
        "        - containerPort: 8700",
        "  emptyDir: {}",
        "  list: []",
        "  flag: true",
        "  nothing: null",
        "data:",
        "  datasets.json: |",
        "    [",
        '      {"uri": "s3://b/k"}',
        "    ]",
        "",
      ].join("\n"),
    );
  });

  it.each(TRICKY)("keeps %j a string, as a value, a key and a list item", (text) => {
    const value = { [text]: text, list: [text, [text], { [text]: [text] }] };
    const { v12, v11 } = readBack(renderYaml(value));
    expect(v12).toEqual(value);
    expect(v11).toEqual(value);
  });

  it("round-trips nested structures and numbers", () => {
    const value = {
      a: [[1, 2], [], [{}], [{ b: [[-3.5]] }]],
      c: { d: { e: { f: "g\nh" } } },
      n: [0, -1, 1e21, 0.5, 8700],
      t: [true, false, null],
    };
    const { v12, v11 } = readBack(renderYaml(value));
    expect(v12).toEqual(value);
    expect(v11).toEqual(value);
  });

  it("writes scalars at the top level", () => {
    expect(renderYaml("yes")).toBe('"yes"\n');
    expect(renderYaml(3)).toBe("3\n");
    expect(renderYaml([])).toBe("[]\n");
  });

  it("refuses what YAML cannot say the same way", () => {
    expect(() => renderYaml({ x: Number.NaN })).toThrow(TypeError);
    expect(() => renderYaml({ x: () => 1 })).toThrow(TypeError);
  });

  it("quotes only when needed", () => {
    expect(yamlString("dsfetch-datasets")).toBe("dsfetch-datasets");
    expect(yamlString("/etc/dsfetch/datasets.json")).toBe("/etc/dsfetch/datasets.json");
    expect(yamlString("--ready-file")).toBe("--ready-file");
    expect(yamlString("yes")).toBe('"yes"');
    expect(yamlString("10Gi")).toBe('"10Gi"');
    expect(yamlString("ls\u2028x")).toBe('"ls\\u2028x"');
  });
});

describe("renderYamlDocuments", () => {
  it("separates documents and writes comments", () => {
    const text = renderYamlDocuments([
      { value: { kind: "A" }, comments: ["first", "", "more"] },
      { value: { kind: "B" } },
    ]);
    expect(text).toBe("# first\n#\n# more\nkind: A\n---\nkind: B\n");
    expect(parseAllDocuments(text).map((doc) => doc.toJS())).toEqual([
      { kind: "A" },
      { kind: "B" },
    ]);
  });
});
