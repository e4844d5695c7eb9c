/**
 * `dsfetch k8s`: prints the Kubernetes objects that run dsfetch beside a training container
 * (src/k8s/render.ts): the datasets ConfigMap and the pod-spec fragment, or with --pod a
 * complete example Pod (or an indexed Job with --workers N). YAML on stdout, or JSON
 * (`kind: List` with --pod) with --json. Notes go to stderr.
 *
 * The paths are the pod's, so this command reads them from flags only: --storage-root
 * (default /mnt/dsfetch), --team, --mount-root (default /data), --ephemeral-root (default
 * /mnt/dsfetch-ephemeral); DSFETCH_* variables describe this machine, not the pod.
 */
import { readFileSync } from "node:fs";
import { DURATION_FORMS, parseDuration } from "../../config/duration.ts";
import { resolveSettings } from "../../config/settings.ts";
import { closest } from "../../config/suggest.ts";
import { DsfetchError } from "../../errors.ts";
import { renderJob, renderPod } from "../../k8s/manifests.ts";
import {
  DEFAULT_POD_EPHEMERAL_ROOT,
  DEFAULT_STORAGE_ROOT,
  defaultImage,
  type K8sMode,
  type K8sOptions,
  type PodFragment,
  renderPodFragment,
  type SharedStorage,
} from "../../k8s/render.ts";
import { renderYamlDocuments } from "../../k8s/yaml.ts";
import { PACKAGE_JSON } from "../../util/worker-file.ts";
import type { ParsedArgs } from "../args.ts";
import type { CommandContext } from "../context.ts";

/** The k8s command's own flags, for `parseArgs` (spread into args.ts's OPTIONS). */
export const K8S_ARG_OPTIONS = {
  mode: { type: "string" },
  image: { type: "string" },
  "storage-claim": { type: "string" },
  "storage-nfs": { type: "string" },
  "storage-class": { type: "string" },
  port: { type: "string" },
  "config-map": { type: "string" },
  "aws-secret": { type: "string" },
  pod: { type: "boolean" },
  workers: { type: "string" },
} as const;

/** The k8s flags as given on the command line (validated by k8sOptionsFrom). */
export interface K8sFlags {
  /** --mode init|sidecar (default sidecar). */
  mode?: string | undefined;
  /** --image <ref> (default dsfetch:<package version>). */
  image?: string | undefined;
  /** --storage-claim <pvc>: the shared storage is this PersistentVolumeClaim. */
  storageClaim?: string | undefined;
  /** --storage-nfs <server>:<path>: the shared storage is this NFS export. */
  storageNfs?: string | undefined;
  /** --storage-class <name>: StorageClass of the ephemeral volume claim. */
  storageClass?: string | undefined;
  /** --port <n>: the sidecar's HTTP port (default 8700). */
  port?: string | undefined;
  /** --config-map <name>: the datasets ConfigMap (default dsfetch-datasets-<hash>). */
  configMap?: string | undefined;
  /** --aws-secret <name>: a Secret with AWS_* keys for the dsfetch container. */
  awsSecret?: string | undefined;
  /** --pod: a complete example Pod (or Job with --workers) instead of the fragment. */
  pod?: boolean | undefined;
  /** --workers <n>: with --pod, an indexed Job of n pods. */
  workers?: string | undefined;
}

/** Maps parseArgs values (with K8S_ARG_OPTIONS) to K8sFlags. */
export function k8sFlagsFrom(
  values: Readonly<Record<string, string | boolean | undefined>>,
): K8sFlags {
  const text = (key: keyof typeof K8S_ARG_OPTIONS) => {
    const value = values[key];
    return typeof value === "string" ? value : undefined;
  };
  return {
    mode: text("mode"),
    image: text("image"),
    storageClaim: text("storage-claim"),
    storageNfs: text("storage-nfs"),
    storageClass: text("storage-class"),
    port: text("port"),
    configMap: text("config-map"),
    awsSecret: text("aws-secret"),
    pod: values.pod === true,
    workers: text("workers"),
  };
}

export const K8S_HELP = `  dsfetch k8s --datasets <file|-> --team <t> (--storage-claim <pvc> | --storage-nfs <host>:<path>)
              [--mode init|sidecar] [--pod [--workers n]] [k8s flags]
                                             print the Kubernetes ConfigMap and pod-spec fragment
                                             that run dsfetch beside a training container

k8s flags:
  --mode <init|sidecar>    native sidecar holding the datasets while training runs (default;
                           Kubernetes >= 1.29), or an init container running fetch
  --image <ref>            dsfetch image (default dsfetch:<version>)
  --storage-claim <pvc>    shared storage: an existing ReadWriteMany PersistentVolumeClaim
  --storage-nfs <host>:<path>  shared storage: an NFS export
  --storage-class <name>   StorageClass of the ephemeral volume claim
  --port <n>               sidecar HTTP port (default 8700)
  --config-map <name>      ConfigMap for datasets.json (default dsfetch-datasets-<hash of it>)
  --aws-secret <name>      Secret whose AWS_* keys the dsfetch container gets as environment
  --timeout <duration>     sidecar: how long staging may take before the pod fails (default 24h)
  --pod                    a complete example Pod instead of the fragment
  --workers <n>            with --pod: an indexed Job of n pods
  (--storage-root default /mnt/dsfetch, --mount-root /data, --ephemeral-root /mnt/dsfetch-ephemeral;
   --json prints JSON instead of YAML)
`;

type K8sArgs = Pick<
  ParsedArgs,
  "storageRoot" | "team" | "mountRoot" | "ephemeralRoot" | "timeout" | "json"
>;

export interface K8sPlan {
  readonly options: K8sOptions;
  /** With --pod: 1 → a Pod, more → a Job. */
  readonly workers: number | undefined;
}

/** Flags → renderer options, with a USAGE error for anything unusable. Pure. */
export function k8sOptionsFrom(args: K8sArgs, flags: K8sFlags, version: string): K8sPlan {
  // Validates the paths and the team like every command does, but never from this machine's
  // environment: the rendered pod runs elsewhere.
  const settings = resolveSettings(
    {
      storageRoot: args.storageRoot,
      team: args.team,
      mountRoot: args.mountRoot,
      ephemeralRoot: args.ephemeralRoot,
    },
    {},
  );
  const mode = parseMode(flags.mode);
  if (flags.storageClaim !== undefined && flags.storageNfs !== undefined) {
    throw new DsfetchError(
      "USAGE",
      "--storage-claim and --storage-nfs both name the shared storage",
      {
        hint: "give one of them",
      },
    );
  }
  let storage: SharedStorage | undefined;
  if (flags.storageClaim !== undefined) storage = { claimName: flags.storageClaim };
  if (flags.storageNfs !== undefined) storage = { nfs: parseNfs(flags.storageNfs) };
  let startupTimeoutSeconds: number | undefined;
  if (args.timeout !== undefined) {
    const timeout = parseDuration(args.timeout);
    if (!timeout.ok) {
      throw new DsfetchError("USAGE", `--timeout: ${timeout.reason}`, {
        hint: `accepted: ${DURATION_FORMS}`,
      });
    }
    startupTimeoutSeconds = timeout.ms / 1000;
  }
  // Flags of the sidecar mode do nothing for an init container (review, 2026-12-05).
  if (mode === "init") {
    for (const [flag, given] of [
      ["--port", flags.port],
      ["--timeout", args.timeout],
    ] as const) {
      if (given !== undefined) {
        throw new DsfetchError("USAGE", `${flag} does nothing with --mode init`, {
          hint: `it sets ${flag === "--port" ? "the sidecar's HTTP port" : "how long dsfetch-wait waits for the staging"}: add --mode sidecar, or drop ${flag}`,
        });
      }
    }
  }
  if (flags.workers !== undefined && flags.pod !== true) {
    throw new DsfetchError("USAGE", "--workers goes with --pod", {
      hint: "dsfetch k8s --pod --workers 4 … renders an indexed Job of 4 pods",
    });
  }
  return {
    options: {
      mode,
      image: flags.image ?? defaultImage(version),
      storage,
      storageRoot: settings.storageRoot ?? DEFAULT_STORAGE_ROOT,
      team: settings.team,
      mountRoot: settings.mountRoot,
      ephemeralRoot:
        args.ephemeralRoot === undefined ? DEFAULT_POD_EPHEMERAL_ROOT : settings.ephemeralRoot,
      port:
        flags.port === undefined
          ? undefined
          : wholeNumber(flags.port, "--port", "a port from 1 to 65535"),
      datasetsConfigMap: flags.configMap,
      storageClass: flags.storageClass,
      awsSecret: flags.awsSecret,
      startupTimeoutSeconds,
    },
    workers:
      flags.pod === true
        ? flags.workers === undefined
          ? 1
          : atLeastOne(wholeNumber(flags.workers, "--workers", "a number of pods, e.g. 4"))
        : undefined,
  };
}

/** The objects to print: ConfigMap + fragment, or ConfigMap + Pod/Job. Pure. */
export function renderK8s(
  datasets: CommandContext["datasets"],
  plan: K8sPlan,
): { yaml: string; json: string } {
  const fragment = renderPodFragment(datasets, plan.options);
  if (plan.workers === undefined) {
    const podFragment = fragmentBody(fragment);
    return {
      yaml: renderYamlDocuments([
        {
          value: fragment.configMap,
          comments: [`The datasets array the pods read (${plan.options.mode} mode).`],
        },
        {
          value: podFragment,
          comments: [
            "Pod-spec fragment (not an object to apply): add volumes and initContainers to the",
            "pod spec, containerVolumeMounts and containerEnv to the training container, and",
            "securityContext to the pod's securityContext. `dsfetch k8s --pod` shows a whole pod.",
          ],
        },
      ]),
      json: `${JSON.stringify({ configMap: fragment.configMap, podFragment }, null, 2)}\n`,
    };
  }
  const name = "dsfetch-example";
  const workload =
    plan.workers > 1
      ? renderJob(fragment, { name, workers: plan.workers })
      : renderPod(fragment, { name });
  const items = [fragment.configMap, workload];
  return {
    yaml: renderYamlDocuments(items.map((value) => ({ value }))),
    json: `${JSON.stringify({ apiVersion: "v1", kind: "List", items }, null, 2)}\n`,
  };
}

export async function k8sCommand(context: CommandContext, flags: K8sFlags): Promise<number> {
  const { args, datasets, out, err, env } = context;
  const plan = k8sOptionsFrom(args, flags, packageVersion());
  const rendered = renderK8s(datasets, plan);
  const pinned = [
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
  ].filter((variable) => (env[variable] ?? "").trim() !== "");
  if (pinned.length > 0) {
    err(
      `k8s: note: the ConfigMap pins each dataset's endpoint and region as resolved here, where ${pinned.join(", ")} ${pinned.length === 1 ? "is" : "are"} set\n`,
    );
  }
  const shared = datasets.some((dataset) => dataset.volume.kind !== "ephemeral");
  if (plan.options.mode === "init" && plan.options.storage !== undefined && shared) {
    // The init container ends before training starts, and with it its leases: nothing tells
    // prune, or another job refreshing a changed source, that this pod reads the datasets
    // (review, 2026-12-06).
    err(
      "k8s: note: --mode init stages the datasets before the training container starts, and nothing holds them while it runs: `dsfetch prune`, or another job refreshing a dataset without an etag or versionId whose source changed, may remove or replace one under it; --mode sidecar holds them (leases) for the pod's life (Kubernetes >= 1.29)\n",
    );
  }
  out(args.json ? rendered.json : rendered.yaml);
  return 0;
}

function fragmentBody(fragment: PodFragment): Omit<PodFragment, "configMap"> {
  const { volumes, initContainers, containerVolumeMounts, containerEnv, securityContext } =
    fragment;
  return { volumes, initContainers, containerVolumeMounts, containerEnv, securityContext };
}

const MODES: readonly K8sMode[] = ["init", "sidecar"];

function parseMode(value: string | undefined): K8sMode {
  // The sidecar by default: an init container's leases end before training starts, and a
  // prune or a refresh could remove or replace a dataset under the pods reading it (review,
  // 2026-12-06). Native sidecars are on by default since Kubernetes 1.29 (December 2023);
  // an older API server refuses the pod outright (restartPolicy on an init container), it
  // never runs it without the sidecar.
  if (value === undefined) return "sidecar";
  if ((MODES as readonly string[]).includes(value)) return value as K8sMode;
  const suggestion = closest(value, MODES);
  throw new DsfetchError("USAGE", `--mode: ${JSON.stringify(value)} is not a mode`, {
    hint: `${suggestion === undefined ? "" : `did you mean "${suggestion}"? `}accepted: init (an init container runs fetch before the job) or sidecar (a native sidecar, for multi-worker jobs)`,
  });
}

function parseNfs(value: string): { server: string; path: string } {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\/.*)$/.exec(value);
  if (match === null) {
    throw new DsfetchError(
      "USAGE",
      `--storage-nfs: ${JSON.stringify(value)} is not <server>:<path>`,
      {
        hint: "e.g. --storage-nfs nfs.example.internal:/exports/datasets",
      },
    );
  }
  const [, server = "", path = ""] = match;
  return { server: server.replace(/^\[|\]$/g, ""), path };
}

function wholeNumber(value: string, flag: string, accepted: string): number {
  if (!/^\d{1,9}$/.test(value)) {
    throw new DsfetchError("USAGE", `${flag}: ${JSON.stringify(value)} is not a whole number`, {
      hint: `accepted: ${accepted}`,
    });
  }
  return Number(value);
}

function atLeastOne(workers: number): number {
  if (workers < 1) {
    throw new DsfetchError("USAGE", `--workers: ${workers} pods would run nothing`, {
      hint: "accepted: a number of pods from 1, e.g. 4",
    });
  }
  return workers;
}

function packageVersion(): string {
  const text = readFileSync(PACKAGE_JSON, "utf8");
  return (JSON.parse(text) as { version: string }).version;
}
