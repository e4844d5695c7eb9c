// Renders examples/k8s/*.yaml from examples/k8s/datasets.json with the same code as
// `dsfetch k8s --pod`; examples.test.ts fails when the checked-in files differ.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type K8sFlags, k8sOptionsFrom, renderK8s } from "../../src/cli/commands/k8s.ts";
import { parseDatasetsText } from "../../src/config/datasets-array.ts";
import { renderSharedStorageClaim } from "../../src/k8s/manifests.ts";
import { renderYamlDocuments } from "../../src/k8s/yaml.ts";

export const EXAMPLES_DIR = fileURLToPath(new URL("../../examples/k8s/", import.meta.url));
export const REGENERATE = "UPDATE_EXAMPLES=1 npx vitest run test/k8s";

interface Example {
  readonly file: string;
  readonly about: readonly string[];
  readonly argv: readonly string[];
  readonly flags: K8sFlags;
  readonly team: string;
  /** Documents printed before the command's output. */
  readonly before?: readonly unknown[];
}

const EXAMPLES: readonly Example[] = [
  {
    file: "single-worker.yaml",
    about: [
      "A single-worker job: dsfetch runs as an init container (`fetch --mount`) and the",
      "training container starts once every dataset is staged. Shared storage is an NFS export.",
    ],
    argv: [
      "--team vision",
      "--storage-nfs nfs.example.internal:/exports/datasets",
      "--mode init",
      "--pod",
    ],
    flags: { mode: "init", storageNfs: "nfs.example.internal:/exports/datasets", pod: true },
    team: "vision",
  },
  {
    file: "multi-worker.yaml",
    about: [
      "A multi-worker job: an indexed Job of 4 pods, each with dsfetch as a native sidecar",
      "(an init container with restartPolicy Always; Kubernetes >= 1.29). Each pod's training",
      "container starts once its sidecar's startup probe sees /readyz; one pod downloads each",
      "shared dataset into the ReadWriteMany claim, the others wait and reuse it, and the",
      "sidecars keep the datasets marked in use (safe from prune) until the job ends.",
      "AWS keys come from the Secret dsfetch-aws (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).",
      "The claim is created once per team; the command prints the ConfigMap and the Job.",
    ],
    argv: [
      "--team vision",
      "--storage-claim dsfetch-shared",
      "--aws-secret dsfetch-aws",
      "--mode sidecar",
      "--pod --workers 4",
    ],
    flags: {
      mode: "sidecar",
      storageClaim: "dsfetch-shared",
      awsSecret: "dsfetch-aws",
      pod: true,
      workers: "4",
    },
    team: "vision",
    before: [renderSharedStorageClaim({ name: "dsfetch-shared", size: "1Ti" })],
  },
];

export function renderExamples(): Map<string, string> {
  const source = `${EXAMPLES_DIR}datasets.json`;
  // An empty environment: the examples must not depend on the machine that renders them.
  const datasets = parseDatasetsText(readFileSync(source, "utf8"), source, {});
  const version = (
    JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version: string;
    }
  ).version;
  const files = new Map<string, string>();
  for (const example of EXAMPLES) {
    const plan = k8sOptionsFrom(
      {
        team: example.team,
        storageRoot: undefined,
        mountRoot: undefined,
        ephemeralRoot: undefined,
        timeout: undefined,
        json: false,
      },
      example.flags,
      version,
    );
    const header = [
      ...example.about,
      "",
      "Generated from examples/k8s/datasets.json by test/k8s/examples.ts; do not edit.",
      `Regenerate: ${REGENERATE}`,
      example.before === undefined
        ? "The same objects come from:"
        : "The objects after the first come from:",
      "  dsfetch k8s --datasets examples/k8s/datasets.json \\",
      ...example.argv.map((part, i) => `    ${part}${i === example.argv.length - 1 ? "" : " \\"}`),
    ];
    const before = (example.before ?? []).map((value) => ({ value }));
    const prefix = before.length === 0 ? "" : `${renderYamlDocuments(before)}---\n`;
    const body = renderK8s(datasets, plan).yaml;
    files.set(
      example.file,
      `${header.map((line) => (line === "" ? "#" : `# ${line}`)).join("\n")}\n${prefix}${body}`,
    );
  }
  return files;
}
