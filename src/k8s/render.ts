/**
 * The Kubernetes pod-spec fragment that runs dsfetch next to a training container. Pure:
 * datasets and options in, API objects (typed by kubernetes-types, v1.30) out.
 *
 * Shape of a pod with the fragment merged in (renderPodSpec):
 *
 *   volumes           dsfetch-config     ConfigMap with datasets.json, at /etc/dsfetch
 *                     dsfetch-storage    the team-wide shared storage (PVC or NFS), at <storage-root>
 *                     dsfetch-mounts     emptyDir at <mount-root>: dsfetch writes a link per dataset
 *                     dsfetch-ephemeral  at <ephemeral-root>: the datasets with volumeOptions
 *                                        { kind: "dynamic" } (a generic ephemeral volume), and where
 *                                        shared datasets fall back to when shared storage is down
 *   initContainers    dsfetch            `fetch --mount` (mode "init"), or a native sidecar
 *                                        (`sidecar --hold-on-failure`, restartPolicy Always)
 *                     dsfetch-wait       sidecar mode: `wait --ready-file --url`, the gate (waitContainer)
 *   your container    + read-only mounts of storage, mounts and ephemeral volumes at the same
 *                       paths (the links under <mount-root> point into them), and
 *                       DSFETCH_PATH_<NAME>=<mount-root>/<name> for each dataset
 *
 * Ephemeral datasets share one volume: dsfetch stages an ephemeral dataset in an attempt
 * directory under <ephemeral-root>/.dsfetch/tmp and publishes it with one rename to
 * <ephemeral-root>/<name>, so the attempt and the result must be on one filesystem — a
 * volume per dataset mounted at <ephemeral-root>/<name> would make that rename cross
 * filesystems. The one volume is sized to the sum of their sizes; dsfetch still holds each
 * dataset to its own size. Without ephemeral datasets it is an emptyDir limited to 5Gi per
 * dataset, the size of a fallback volume.
 */
import { createHash } from "node:crypto";
import { posix } from "node:path";
import type {
  ConfigMap,
  Container,
  EnvVar,
  PodSecurityContext,
  PodSpec,
  SecurityContext,
  Volume,
  VolumeMount,
} from "kubernetes-types/core/v1.js";
import { checkName, NAME_FORMS } from "../config/s3-uri.ts";
import { parseSize } from "../config/size.ts";
import { type DatasetSpec, DEFAULT_VOLUME_SIZE } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import { datasetEnvName, envNameClash } from "./env-names.ts";
import { checkObjectName } from "./names.ts";
import { bytesToQuantity } from "./quantity.ts";
import { serializeDatasets } from "./serialize.ts";

export type K8sMode = "init" | "sidecar";

/** The team-wide shared storage volume: an existing PVC (ReadWriteMany) or an NFS export. */
export type SharedStorage =
  | { readonly claimName: string }
  | { readonly nfs: { readonly server: string; readonly path: string } };

export interface K8sOptions {
  /** "init": an init container runs `dsfetch fetch --mount` to completion before the job.
   *  "sidecar": a native sidecar (Kubernetes >= 1.29) runs `dsfetch sidecar`; the job's
   *  containers start once `dsfetch wait` (an init container after it) saw every dataset
   *  staged, and it holds the datasets in use. */
  readonly mode: K8sMode;
  /** The dsfetch image, e.g. "dsfetch:0.1.0" (the CLI's default: dsfetch:<package version>). */
  readonly image: string;
  /** Required when any dataset uses shared storage. */
  readonly storage?: SharedStorage | undefined;
  /** Where shared storage is mounted in the pod. Default "/mnt/dsfetch". */
  readonly storageRoot?: string | undefined;
  /** Team directory under the storage root; required with storage. */
  readonly team?: string | undefined;
  /** Where datasets appear in the job. Default "/data". */
  readonly mountRoot?: string | undefined;
  /** Where the ephemeral volume is mounted. Default "/mnt/dsfetch-ephemeral". */
  readonly ephemeralRoot?: string | undefined;
  /** Sidecar HTTP port (/healthz, /readyz, /metrics). Default 8700. */
  readonly port?: number | undefined;
  /**
   * Name of the ConfigMap holding datasets.json. Default "dsfetch-datasets-<hash>", the hash of
   * its contents (immutable, then).
   */
  readonly datasetsConfigMap?: string | undefined;
  /** StorageClass of the ephemeral volume claim; default: the cluster's default class. */
  readonly storageClass?: string | undefined;
  /** A Secret whose keys (AWS_ACCESS_KEY_ID, …) become the dsfetch container's environment. */
  readonly awsSecret?: string | undefined;
  /** Sidecar: how long staging may take before the kubelet gives up and restarts it. Default 24 h. */
  readonly startupTimeoutSeconds?: number | undefined;
}

export interface PodFragment {
  readonly volumes: Volume[];
  readonly initContainers: Container[];
  /** To add to the training container: read-only views of what dsfetch wrote. */
  readonly containerVolumeMounts: VolumeMount[];
  /** To add to the training container: DSFETCH_PATH_<NAME> for each dataset. */
  readonly containerEnv: EnvVar[];
  /** Pod-level: fsGroup lets the non-root dsfetch user write to the ephemeral volume claim. */
  readonly securityContext: PodSecurityContext;
  readonly configMap: ConfigMap;
}

export const DEFAULT_STORAGE_ROOT = "/mnt/dsfetch";
export const DEFAULT_POD_MOUNT_ROOT = "/data";
export const DEFAULT_POD_EPHEMERAL_ROOT = "/mnt/dsfetch-ephemeral";
export const DEFAULT_PORT = 8700;
export const DEFAULT_CONFIG_MAP = "dsfetch-datasets";

/**
 * The default ConfigMap's name: DEFAULT_CONFIG_MAP and the first 10 hex digits of the SHA-256
 * of its datasets.json. One name for every job, applied in one namespace, gave each job the
 * datasets of whichever was applied last: a job's pods that started later (waiting for GPUs,
 * retried, a restarted sidecar) staged another job's datasets (review, 2026-12-06).
 */
export function defaultConfigMapName(datasetsJson: string): string {
  return `${DEFAULT_CONFIG_MAP}-${createHash("sha256").update(datasetsJson).digest("hex").slice(0, 10)}`;
}
export const DEFAULT_STARTUP_TIMEOUT_SECONDS = 24 * 60 * 60;
/** The image's user and group (Dockerfile). */
export const DSFETCH_UID = 10001;
export const CONFIG_DIR = "/etc/dsfetch";
export const DATASETS_KEY = "datasets.json";
/** Kubernetes' limit on a ConfigMap's data (etcd's request size bounds it). */
const MAX_CONFIG_MAP_BYTES = 1024 * 1024;
export const READY_FILE_NAME = ".dsfetch-ready";
export const CONTAINER_NAME = "dsfetch";
/** Sidecar mode: the init container that waits for the staging (waitContainer). */
export const WAIT_CONTAINER_NAME = "dsfetch-wait";
export const VOLUMES = {
  config: "dsfetch-config",
  storage: "dsfetch-storage",
  mounts: "dsfetch-mounts",
  ephemeral: "dsfetch-ephemeral",
} as const;
export const LABELS = { "app.kubernetes.io/name": "dsfetch" } as const;

export function defaultImage(version: string): string {
  return `dsfetch:${version}`;
}

export function renderPodFragment(
  datasets: readonly DatasetSpec[],
  options: K8sOptions,
): PodFragment {
  const o = resolveOptions(datasets, options);
  const datasetsJson = serializeDatasets(datasets); // refuses credentials first
  // Kubernetes refuses a ConfigMap over 1 MiB: rendered anyway, `kubectl apply` failed
  // (review, 2026-12-05: 9,000 datasets made 1.9 MB).
  const jsonBytes = Buffer.byteLength(datasetsJson);
  if (jsonBytes > MAX_CONFIG_MAP_BYTES) {
    throw usage(
      `the datasets array takes ${jsonBytes} bytes as ${DATASETS_KEY}, more than a ConfigMap holds (${MAX_CONFIG_MAP_BYTES} bytes: Kubernetes refuses larger ones)`,
      "split the datasets over several jobs, or use folders (s3://bucket/prefix/) instead of one entry per object",
    );
  }
  const configMapName = o.configMap ?? defaultConfigMapName(datasetsJson);
  const clash = envNameClash(datasets.map((spec) => spec.name));
  if (clash !== undefined) {
    throw new DsfetchError(
      "USAGE",
      `datasets "${clash.names[0]}" and "${clash.names[1]}" would both be given to the job as ${clash.variable}`,
      {
        hint: 'rename one of them ("name" field): DSFETCH_PATH_<NAME> upper-cases the name and turns other characters into "_"',
      },
    );
  }

  const volumes: Volume[] = [
    {
      name: VOLUMES.config,
      configMap: { name: configMapName, items: [{ key: DATASETS_KEY, path: DATASETS_KEY }] },
    },
  ];
  if (o.storage !== undefined) volumes.push({ name: VOLUMES.storage, ...storageSource(o.storage) });
  volumes.push({ name: VOLUMES.mounts, emptyDir: {} }, ephemeralVolume(datasets, o.storageClass));

  const views: VolumeMount[] = [
    ...(o.storage === undefined ? [] : [{ name: VOLUMES.storage, mountPath: o.storageRoot }]),
    { name: VOLUMES.mounts, mountPath: o.mountRoot },
    { name: VOLUMES.ephemeral, mountPath: o.ephemeralRoot },
  ];
  const dsfetch: Container = {
    name: CONTAINER_NAME,
    image: o.image,
    imagePullPolicy: "IfNotPresent",
    args: containerArgs(o),
    ...(o.awsSecret === undefined ? {} : { envFrom: [{ secretRef: { name: o.awsSecret } }] }),
    ...(o.mode === "sidecar" ? sidecarParts(o.port) : {}),
    volumeMounts: [
      { name: VOLUMES.config, mountPath: CONFIG_DIR, readOnly: true },
      ...views.map((mount) => ({ ...mount })),
    ],
    securityContext: containerSecurity(),
  };

  return {
    volumes,
    initContainers: o.mode === "sidecar" ? [dsfetch, waitContainer(o)] : [dsfetch],
    containerVolumeMounts: views.map((mount) => ({ ...mount, readOnly: true })),
    containerEnv: datasets.map((spec) => ({
      name: datasetEnvName(spec.name),
      value: posix.join(o.mountRoot, spec.name),
    })),
    securityContext: { fsGroup: DSFETCH_UID, fsGroupChangePolicy: "OnRootMismatch" },
    configMap: {
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: {
        name: configMapName,
        labels: { ...LABELS, "app.kubernetes.io/component": "datasets" },
      },
      // Named after its contents: never changed in place (another array is another name).
      ...(o.configMap === undefined ? { immutable: true } : {}),
      data: { [DATASETS_KEY]: datasetsJson },
    },
  };
}

/**
 * A full pod spec: the fragment's init container and volumes, and the training container
 * with the fragment's mounts and environment added. Clashes are errors, not overrides.
 */
export function renderPodSpec(fragment: PodFragment, trainingContainer: Container): PodSpec {
  const where = `container "${trainingContainer.name}"`;
  if (trainingContainer.name === CONTAINER_NAME) {
    throw new DsfetchError("USAGE", `${where}: the name "${CONTAINER_NAME}" is dsfetch's own`);
  }
  const mounts = trainingContainer.volumeMounts ?? [];
  for (const mount of fragment.containerVolumeMounts) {
    if (mounts.some((own) => own.mountPath === mount.mountPath || own.name === mount.name)) {
      throw new DsfetchError(
        "USAGE",
        `${where} already mounts something at ${mount.mountPath} or uses the volume name ${mount.name}`,
        { hint: "choose other paths with --storage-root, --mount-root or --ephemeral-root" },
      );
    }
  }
  const env = trainingContainer.env ?? [];
  for (const variable of fragment.containerEnv) {
    if (env.some((own) => own.name === variable.name)) {
      throw new DsfetchError("USAGE", `${where} already sets ${variable.name}`);
    }
  }
  return {
    securityContext: { ...fragment.securityContext },
    initContainers: [...fragment.initContainers],
    containers: [
      {
        ...trainingContainer,
        env: [...env, ...fragment.containerEnv],
        volumeMounts: [...mounts, ...fragment.containerVolumeMounts],
      },
    ],
    volumes: [...fragment.volumes],
  };
}

interface Resolved {
  readonly mode: K8sMode;
  readonly image: string;
  readonly storage: SharedStorage | undefined;
  readonly storageRoot: string;
  readonly team: string | undefined;
  readonly mountRoot: string;
  readonly ephemeralRoot: string;
  readonly port: number;
  /** As given; undefined: the default, named after its contents (defaultConfigMapName). */
  readonly configMap: string | undefined;
  readonly storageClass: string | undefined;
  readonly awsSecret: string | undefined;
  readonly startupTimeoutSeconds: number;
}

function resolveOptions(datasets: readonly DatasetSpec[], options: K8sOptions): Resolved {
  if (datasets.length === 0)
    throw usage(
      "there are no datasets to render",
      "give a datasets array with at least one dataset",
    );
  if (options.mode !== "init" && options.mode !== "sidecar") {
    throw usage(`--mode: ${JSON.stringify(options.mode)} is not a mode`, '"init" or "sidecar"');
  }
  if (options.image.trim() === "" || /\s/.test(options.image)) {
    throw usage(
      `--image: ${JSON.stringify(options.image)} is not an image reference`,
      "e.g. registry.example.com/dsfetch:0.1.0",
    );
  }
  const storageRoot = podPath(options.storageRoot ?? DEFAULT_STORAGE_ROOT, "--storage-root");
  const mountRoot = podPath(options.mountRoot ?? DEFAULT_POD_MOUNT_ROOT, "--mount-root");
  const ephemeralRoot = podPath(
    options.ephemeralRoot ?? DEFAULT_POD_EPHEMERAL_ROOT,
    "--ephemeral-root",
  );
  for (const [flag, path] of [
    ["--storage-root", storageRoot],
    ["--mount-root", mountRoot],
    ["--ephemeral-root", ephemeralRoot],
  ] as const) {
    const hidden = IMAGE_PATHS.find((own) => own === path || own.startsWith(`${path}/`));
    if (hidden !== undefined) {
      throw usage(
        `${flag}: a volume mounted at ${path} would hide ${hidden} of the containers (the dsfetch image keeps ${hidden === "/app" ? "dsfetch" : hidden === "/usr/local/bin" ? "node" : "system files"} there): the sidecar could not start`,
        "give a directory of its own, such as /mnt/dsfetch or /data",
      );
    }
  }
  const paths: Array<[string, string]> = [
    ["--mount-root", mountRoot],
    ["--ephemeral-root", ephemeralRoot],
    ["the config directory", CONFIG_DIR],
  ];
  if (options.storage !== undefined) paths.unshift(["--storage-root", storageRoot]);
  for (const [i, [flagA, a]] of paths.entries()) {
    for (const [flagB, b] of paths.slice(i + 1)) {
      if (a === b || a.startsWith(`${b}/`) || b.startsWith(`${a}/`)) {
        throw usage(
          `${flagA} ${a} and ${flagB} ${b} overlap: each is a separate volume in the pod`,
          "give them separate paths, none inside another",
        );
      }
    }
  }

  const shared = datasets.filter((spec) => spec.volume.kind === "shared");
  const storage = options.storage === undefined ? undefined : checkStorage(options.storage);
  if (shared.length > 0 && storage === undefined) {
    throw usage(
      `${describe(shared)} ${shared.length === 1 ? "uses" : "use"} shared storage, but no shared storage volume was given`,
      'pass --storage-claim <pvc> (a ReadWriteMany claim) or --storage-nfs <server>:<path>; or give the datasets volumeOptions { "kind": "dynamic" }',
    );
  }
  const team = options.team;
  if (storage !== undefined && team === undefined) {
    throw usage(
      "--team is required with shared storage",
      "e.g. --team vision: datasets go to <storage-root>/<team>/data/",
    );
  }
  if (team !== undefined) {
    const problem = checkName(team);
    if (problem !== undefined)
      throw usage(
        `--team: the team handle is not usable: ${problem}`,
        `a team handle is ${NAME_FORMS}`,
      );
  }
  const port = options.port ?? DEFAULT_PORT;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw usage(`--port: ${port} is not a port`, "a whole number from 1 to 65535");
  }
  const startupTimeoutSeconds = options.startupTimeoutSeconds ?? DEFAULT_STARTUP_TIMEOUT_SECONDS;
  if (!Number.isFinite(startupTimeoutSeconds) || startupTimeoutSeconds <= 0) {
    throw usage(`--timeout: ${startupTimeoutSeconds} s is not a usable startup timeout`, "e.g. 6h");
  }
  const name = (value: string | undefined, flag: string, what: string) =>
    value === undefined ? undefined : checkObjectName(value, flag, what);
  return {
    mode: options.mode,
    image: options.image,
    storage,
    storageRoot,
    team,
    mountRoot,
    ephemeralRoot,
    port,
    configMap:
      options.datasetsConfigMap === undefined
        ? undefined
        : checkObjectName(options.datasetsConfigMap, "--config-map", "ConfigMap"),
    storageClass: name(options.storageClass, "--storage-class", "StorageClass"),
    awsSecret: name(options.awsSecret, "--aws-secret", "Secret"),
    startupTimeoutSeconds,
  };
}

function checkStorage(storage: SharedStorage): SharedStorage {
  if ("claimName" in storage) {
    return {
      claimName: checkObjectName(storage.claimName, "--storage-claim", "PersistentVolumeClaim"),
    };
  }
  const { server, path } = storage.nfs;
  if (server === "" || /[\s/]/.test(server)) {
    throw usage(
      `--storage-nfs: ${JSON.stringify(server)} is not an NFS server`,
      "<server>:<path>, e.g. nfs.example.internal:/exports/datasets",
    );
  }
  return { nfs: { server, path: podPath(path, "--storage-nfs") } };
}

/**
 * Directories of the containers a volume must not be mounted over, nor above: the dsfetch
 * image's own (/app, node in /usr/local/bin) and the system's. `--mount-root /app` rendered a
 * pod whose sidecar could not start (second exploratory tester, 2026-12-08).
 */
const IMAGE_PATHS = [
  "/app",
  "/usr/local/bin",
  "/usr/local/lib",
  "/usr/bin",
  "/usr/lib",
  "/bin",
  "/sbin",
  "/lib",
  "/lib64",
  "/etc/ssl",
  "/etc/passwd",
  "/proc",
  "/sys",
  "/dev",
] as const;

/** An absolute, normalised path inside the pod, not "/". */
function podPath(value: string, flag: string): string {
  if (!posix.isAbsolute(value) || value.includes("\0")) {
    throw usage(
      `${flag}: ${JSON.stringify(value)} is not an absolute path`,
      "give an absolute path such as /mnt/dsfetch",
    );
  }
  const normalized = posix.normalize(value).replace(/\/+$/, "");
  if (normalized === "")
    throw usage(
      `${flag}: "/" cannot be a volume's mount path`,
      "give a directory such as /mnt/dsfetch",
    );
  return normalized;
}

function storageSource(storage: SharedStorage): Omit<Volume, "name"> {
  if ("claimName" in storage) return { persistentVolumeClaim: { claimName: storage.claimName } };
  return { nfs: { server: storage.nfs.server, path: storage.nfs.path } };
}

function ephemeralVolume(
  datasets: readonly DatasetSpec[],
  storageClass: string | undefined,
): Volume {
  let dynamicBytes = 0;
  let sharedCount = 0;
  for (const spec of datasets) {
    if (spec.volume.kind === "ephemeral") dynamicBytes += spec.volume.sizeBytes;
    else sharedCount += 1;
  }
  if (dynamicBytes === 0) {
    const fallback = parseSize(DEFAULT_VOLUME_SIZE);
    const perDataset = fallback.ok ? fallback.bytes : 5 * 2 ** 30;
    return {
      name: VOLUMES.ephemeral,
      emptyDir: { sizeLimit: bytesToQuantity(perDataset * sharedCount) },
    };
  }
  if (!Number.isSafeInteger(dynamicBytes)) {
    throw usage(
      "the ephemeral datasets' sizes add up to more than 8 PiB",
      "smaller volumeOptions.size values",
    );
  }
  return {
    name: VOLUMES.ephemeral,
    ephemeral: {
      volumeClaimTemplate: {
        metadata: { labels: { ...LABELS, "app.kubernetes.io/component": "ephemeral-datasets" } },
        spec: {
          accessModes: ["ReadWriteOnce"],
          ...(storageClass === undefined ? {} : { storageClassName: storageClass }),
          resources: { requests: { storage: bytesToQuantity(dynamicBytes) } },
        },
      },
    },
  };
}

function containerArgs(o: Resolved): string[] {
  const common = ["--datasets", posix.join(CONFIG_DIR, DATASETS_KEY)];
  if (o.storage !== undefined && o.team !== undefined) {
    common.push("--storage-root", o.storageRoot, "--team", o.team);
  }
  common.push("--mount-root", o.mountRoot, "--ephemeral-root", o.ephemeralRoot);
  if (o.mode === "init") return ["fetch", ...common, "--mount"];
  return [
    "sidecar",
    ...common,
    "--listen",
    // Every address, IPv6 too (0.0.0.0 is IPv4 only: review, 2026-12-06).
    `:${o.port}`,
    "--ready-file",
    posix.join(o.mountRoot, READY_FILE_NAME),
    // Exited, it would be started again (restartPolicy Always) and stage again, for good.
    "--hold-on-failure",
  ];
}

/**
 * Sidecar mode's gate: a regular init container after the sidecar, `dsfetch wait` on its ready
 * file. The job's containers start once it has ended, that is once every dataset is staged;
 * a failed staging ends it with the sidecar's error, and a failed init container fails a pod
 * whose restartPolicy is Never (a Job then counts it against its backoffLimit). Gated by the
 * sidecar's startup probe on /readyz instead, a failed staging made the kubelet restart the
 * sidecar for ever (review, 2026-12-06: Init:CrashLoopBackOff, the data downloaded again at
 * every restart, the Job never failing).
 */
function waitContainer(o: Resolved): Container {
  return {
    name: WAIT_CONTAINER_NAME,
    image: o.image,
    imagePullPolicy: "IfNotPresent",
    // The sidecar's /readyz too (the pod shares one network namespace): across the
    // containers' PID namespaces only it tells a failure the running sidecar holds (final
    // at once) from one an earlier sidecar left in the emptyDir, and a ready file left so
    // does not count before this sidecar says ready (review, 2026-12-06).
    args: [
      "wait",
      "--ready-file",
      posix.join(o.mountRoot, READY_FILE_NAME),
      "--url",
      `http://127.0.0.1:${o.port}/readyz`,
      "--timeout",
      `${Math.ceil(o.startupTimeoutSeconds)}s`,
    ],
    volumeMounts: [{ name: VOLUMES.mounts, mountPath: o.mountRoot, readOnly: true }],
    securityContext: containerSecurity(),
  };
}

/** Native sidecar: restartPolicy Always on an init container, and its probes. */
function sidecarParts(port: number): Partial<Container> {
  const get = (path: string) => ({ httpGet: { path, port }, timeoutSeconds: 5 });
  // No startup probe: the next init container (waitContainer) starts once the sidecar runs,
  // and waits for the staging itself. Gated by a probe, a sidecar that failed before it
  // listened (a bad setting, its port taken) kept the gate from ever starting, and the pod
  // from ever failing (review, 2026-12-06); every failure is in the ready file it reads.
  return {
    restartPolicy: "Always",
    ports: [{ name: "dsfetch", containerPort: port, protocol: "TCP" }],
    readinessProbe: { ...get("/readyz"), periodSeconds: 10, failureThreshold: 3 },
    livenessProbe: { ...get("/healthz"), periodSeconds: 20, failureThreshold: 3 },
  };
}

function containerSecurity(): SecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: DSFETCH_UID,
    runAsGroup: DSFETCH_UID,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
  };
}

function describe(specs: readonly DatasetSpec[]): string {
  const names = specs.slice(0, 3).map((spec) => `"${spec.name}"`);
  return `${specs.length === 1 ? "dataset" : "datasets"} ${names.join(", ")}${specs.length > 3 ? ` and ${specs.length - 3} more` : ""}`;
}

function usage(message: string, hint: string): DsfetchError {
  return new DsfetchError("USAGE", message, { hint });
}
