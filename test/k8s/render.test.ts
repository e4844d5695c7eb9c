import type { Container } from "kubernetes-types/core/v1.js";
import { describe, expect, it } from "vitest";
import { parseDatasetsValue } from "../../src/config/datasets-array.ts";
import type { DatasetSpec } from "../../src/config/types.ts";
import { datasetEnvName, envNameClash } from "../../src/k8s/env-names.ts";
import { renderJob, renderPod, renderSharedStorageClaim } from "../../src/k8s/manifests.ts";
import {
  type K8sOptions,
  type PodFragment,
  renderPodFragment,
  renderPodSpec,
} from "../../src/k8s/render.ts";
import { thrown } from "../harness/thrown.ts";
import { validateObject, validatePodSpec } from "./validate.ts";

const ETAG = "9a0364b9e99bb480dd25e1f0284c8555";

function datasets(entries: unknown[], env: Record<string, string> = {}): readonly DatasetSpec[] {
  return parseDatasetsValue(entries, "test", env);
}

const SHARED = datasets([
  { uri: "s3://ml/mnist.tar.gz", etag: `"${ETAG.toUpperCase()}"` },
  { uri: "s3://ml/imagenet/train/", name: "imagenet-train" },
]);

const TRAIN: Container = {
  name: "train",
  image: "python:3.12-slim",
  command: ["python", "train.py"],
};

function dsfetchOf(fragment: PodFragment): Container {
  // The sidecar is followed by the container that waits for its staging (waitContainer).
  expect(fragment.initContainers.map((c) => c.name)).toEqual(
    fragment.initContainers[0]?.restartPolicy === "Always"
      ? ["dsfetch", "dsfetch-wait"]
      : ["dsfetch"],
  );
  const [container] = fragment.initContainers;
  if (container === undefined) throw new Error("no init container");
  return container;
}

function ephemeralClaimSize(fragment: PodFragment): unknown {
  const volume = fragment.volumes.find((v) => v.name === "dsfetch-ephemeral");
  return volume?.ephemeral?.volumeClaimTemplate?.spec.resources?.requests?.storage;
}

describe("a single-worker job: init container", () => {
  const options: K8sOptions = {
    mode: "init",
    image: "dsfetch:0.1.0",
    storage: { nfs: { server: "nfs.example.internal", path: "/exports/datasets" } },
    team: "vision",
  };
  const fragment = renderPodFragment(SHARED, options);
  const dsfetch = dsfetchOf(fragment);

  it("runs fetch --mount to completion, with every path given", () => {
    expect(dsfetch.name).toBe("dsfetch");
    expect(dsfetch.image).toBe("dsfetch:0.1.0");
    expect(dsfetch.args).toEqual([
      "fetch",
      "--datasets",
      "/etc/dsfetch/datasets.json",
      "--storage-root",
      "/mnt/dsfetch",
      "--team",
      "vision",
      "--mount-root",
      "/data",
      "--ephemeral-root",
      "/mnt/dsfetch-ephemeral",
      "--mount",
    ]);
    expect(dsfetch.command).toBeUndefined(); // the image's entrypoint is dsfetch
  });

  it("is a plain init container: no restartPolicy, no probes, no ports", () => {
    expect(dsfetch.restartPolicy).toBeUndefined();
    expect(dsfetch.startupProbe).toBeUndefined();
    expect(dsfetch.readinessProbe).toBeUndefined();
    expect(dsfetch.livenessProbe).toBeUndefined();
    expect(dsfetch.ports).toBeUndefined();
  });

  it("mounts the config read-only and writes storage, mounts and ephemeral volumes", () => {
    expect(dsfetch.volumeMounts).toEqual([
      { name: "dsfetch-config", mountPath: "/etc/dsfetch", readOnly: true },
      { name: "dsfetch-storage", mountPath: "/mnt/dsfetch" },
      { name: "dsfetch-mounts", mountPath: "/data" },
      { name: "dsfetch-ephemeral", mountPath: "/mnt/dsfetch-ephemeral" },
    ]);
  });

  it("gives the training container the same paths, all read-only", () => {
    expect(fragment.containerVolumeMounts).toEqual([
      { name: "dsfetch-storage", mountPath: "/mnt/dsfetch", readOnly: true },
      { name: "dsfetch-mounts", mountPath: "/data", readOnly: true },
      { name: "dsfetch-ephemeral", mountPath: "/mnt/dsfetch-ephemeral", readOnly: true },
    ]);
  });

  it("sets DSFETCH_PATH_<NAME> to <mount-root>/<name>", () => {
    expect(fragment.containerEnv).toEqual([
      { name: "DSFETCH_PATH_MNIST", value: "/data/mnist" },
      { name: "DSFETCH_PATH_IMAGENET_TRAIN", value: "/data/imagenet-train" },
    ]);
  });

  it("renders the volumes: ConfigMap, NFS, emptyDir for links, a fallback emptyDir", () => {
    expect(fragment.volumes).toEqual([
      {
        name: "dsfetch-config",
        configMap: {
          name: fragment.configMap.metadata?.name,
          items: [{ key: "datasets.json", path: "datasets.json" }],
        },
      },
      {
        name: "dsfetch-storage",
        nfs: { server: "nfs.example.internal", path: "/exports/datasets" },
      },
      { name: "dsfetch-mounts", emptyDir: {} },
      // no ephemeral datasets: room for each shared one to fall back to (5Gi each)
      { name: "dsfetch-ephemeral", emptyDir: { sizeLimit: "10Gi" } },
    ]);
  });

  it("runs as the image's non-root user, with the pod's fsGroup for volume claims", () => {
    expect(dsfetch.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
    });
    expect(fragment.securityContext).toEqual({
      fsGroup: 10001,
      fsGroupChangePolicy: "OnRootMismatch",
    });
  });

  it("puts the datasets array in the ConfigMap, as it parses back", () => {
    expect(fragment.configMap).toMatchObject({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: expect.stringMatching(/^dsfetch-datasets-[0-9a-f]{10}$/) },
      immutable: true,
    });
    const text = fragment.configMap.data?.["datasets.json"] ?? "";
    expect(JSON.parse(text)).toEqual([
      { uri: "s3://ml/mnist.tar.gz", name: "mnist", etag: ETAG },
      { uri: "s3://ml/imagenet/train/", name: "imagenet-train" },
    ]);
    expect(stripIndex(datasets(JSON.parse(text)))).toEqual(stripIndex(SHARED));
  });

  it("names the ConfigMap after its contents: two jobs' arrays never share one (review, 2026-12-06)", () => {
    const name = (specs: Parameters<typeof renderPodFragment>[0], given?: string) =>
      renderPodFragment(specs, { ...options, datasetsConfigMap: given }).configMap;
    const other = datasets([{ uri: "s3://ml/other.tar.gz" }]);
    expect(name(SHARED).metadata?.name).toBe(name(SHARED).metadata?.name);
    expect(name(other).metadata?.name).not.toBe(name(SHARED).metadata?.name);
    // A name given is kept, and the ConfigMap may then be updated in place.
    expect(name(SHARED, "my-datasets")).toMatchObject({ metadata: { name: "my-datasets" } });
    expect(name(SHARED, "my-datasets").immutable).toBeUndefined();
  });

  it("refuses a datasets array larger than a ConfigMap holds (1 MiB), naming its size", () => {
    // 9,000 datasets of long keys: 1.9 MB, rendered before, refused by `kubectl apply`.
    const many = datasets(
      Array.from({ length: 9_000 }, (_, i) => ({
        uri: `s3://ml/${"some/long/prefix/".repeat(6)}shard-${i}.tar`,
      })),
    );
    const error = thrown(() => renderPodFragment(many, options));
    expect(error.code).toBe("USAGE");
    expect(error.message).toMatch(
      /^the datasets array takes \d+ bytes as datasets\.json, more than a ConfigMap holds \(1048576 bytes/,
    );
    expect(error.hint).toMatch(/split the datasets over several jobs/);
    // A smaller array is rendered.
    expect(() =>
      renderPodFragment(
        datasets(Array.from({ length: 100 }, (_, i) => ({ uri: `s3://ml/s-${i}.tar` }))),
        options,
      ),
    ).not.toThrow();
  });

  it("merges into a valid pod spec and Pod", () => {
    const spec = renderPodSpec(fragment, TRAIN);
    expect(validatePodSpec(spec)).toEqual([]);
    expect(spec.containers[0]?.env).toEqual(fragment.containerEnv);
    expect(spec.containers[0]?.volumeMounts).toEqual(fragment.containerVolumeMounts);
    const pod = renderPod(fragment, { name: "train-mnist", container: TRAIN });
    expect(pod.spec?.restartPolicy).toBe("Never");
    expect(validateObject(pod)).toEqual([]);
    expect(validateObject(fragment.configMap)).toEqual([]);
  });

  it("keeps what the training container already has and refuses clashes", () => {
    const spec = renderPodSpec(fragment, {
      ...TRAIN,
      env: [{ name: "EPOCHS", value: "3" }],
      volumeMounts: [{ name: "dsfetch-mounts-x", mountPath: "/scratch" }],
    });
    expect(spec.containers[0]?.env?.[0]).toEqual({ name: "EPOCHS", value: "3" });
    expect(spec.containers[0]?.volumeMounts?.[0]?.mountPath).toBe("/scratch");
    expect(
      thrown(() =>
        renderPodSpec(fragment, { ...TRAIN, volumeMounts: [{ name: "x", mountPath: "/data" }] }),
      ).message,
    ).toMatch(/already mounts something at \/data/);
    expect(
      thrown(() =>
        renderPodSpec(fragment, { ...TRAIN, env: [{ name: "DSFETCH_PATH_MNIST", value: "/x" }] }),
      ).message,
    ).toMatch(/already sets DSFETCH_PATH_MNIST/);
    expect(thrown(() => renderPodSpec(fragment, { name: "dsfetch" })).code).toBe("USAGE");
  });
});

describe("a multi-worker job: native sidecar", () => {
  const all = datasets([
    ...SHARED.map((spec) => ({ uri: spec.uri, name: spec.name })),
    { uri: "s3://scratch/shards/", volumeOptions: { kind: "dynamic", size: "10Gi" } },
  ]);
  const options: K8sOptions = {
    mode: "sidecar",
    image: "registry.example.com/dsfetch:0.1.0",
    storage: { claimName: "dsfetch-shared" },
    team: "vision",
    awsSecret: "dsfetch-aws",
  };
  const fragment = renderPodFragment(all, options);
  const dsfetch = dsfetchOf(fragment);

  it("runs sidecar, listening on all interfaces, with a ready file under the mount root", () => {
    expect(dsfetch.args).toEqual([
      "sidecar",
      "--datasets",
      "/etc/dsfetch/datasets.json",
      "--storage-root",
      "/mnt/dsfetch",
      "--team",
      "vision",
      "--mount-root",
      "/data",
      "--ephemeral-root",
      "/mnt/dsfetch-ephemeral",
      "--listen",
      ":8700",
      "--ready-file",
      "/data/.dsfetch-ready",
      "--hold-on-failure",
    ]);
  });

  it("is followed by dsfetch wait on its ready file: a failed staging fails the pod (not a restart loop)", () => {
    // Review, 2026-12-06: gated by the sidecar's startup probe on /readyz, a failed staging
    // made the kubelet restart the sidecar for ever (restartPolicy Always), staging again.
    const wait = fragment.initContainers[1];
    expect(wait).toEqual({
      name: "dsfetch-wait",
      image: "registry.example.com/dsfetch:0.1.0",
      imagePullPolicy: "IfNotPresent",
      args: [
        "wait",
        "--ready-file",
        "/data/.dsfetch-ready",
        "--url",
        "http://127.0.0.1:8700/readyz",
        "--timeout",
        "86400s",
      ],
      volumeMounts: [{ name: "dsfetch-mounts", mountPath: "/data", readOnly: true }],
      securityContext: dsfetch.securityContext,
    });
    expect(wait?.restartPolicy).toBeUndefined();
  });

  it("is a native sidecar: restartPolicy Always, no startup probe (dsfetch-wait is the gate), readiness on /readyz, liveness on /healthz", () => {
    expect(dsfetch.restartPolicy).toBe("Always");
    expect(dsfetch.ports).toEqual([{ name: "dsfetch", containerPort: 8700, protocol: "TCP" }]);
    // Review, 2026-12-06: a startup probe kept the gate from starting when the sidecar failed
    // before it listened (a bad setting, its port taken): the pod never failed.
    expect(dsfetch.startupProbe).toBeUndefined();
    expect(dsfetch.readinessProbe).toEqual({
      httpGet: { path: "/readyz", port: 8700 },
      timeoutSeconds: 5,
      periodSeconds: 10,
      failureThreshold: 3,
    });
    expect(dsfetch.livenessProbe).toEqual({
      httpGet: { path: "/healthz", port: 8700 },
      timeoutSeconds: 5,
      periodSeconds: 20,
      failureThreshold: 3,
    });
  });

  it("follows the port and the startup timeout", () => {
    const custom = dsfetchOf(
      renderPodFragment(all, { ...options, port: 9100, startupTimeoutSeconds: 600 }),
    );
    expect(custom.args).toContain(":9100");
    expect(
      renderPodFragment(all, { ...options, port: 9100, startupTimeoutSeconds: 600 })
        .initContainers[1]?.args,
    ).toEqual([
      "wait",
      "--ready-file",
      "/data/.dsfetch-ready",
      "--url",
      "http://127.0.0.1:9100/readyz",
      "--timeout",
      "600s",
    ]);
    expect(custom.livenessProbe?.httpGet?.port).toBe(9100);
    expect(custom.ports?.[0]?.containerPort).toBe(9100);
  });

  it("takes AWS credentials from the Secret, as the standard variables", () => {
    expect(dsfetch.envFrom).toEqual([{ secretRef: { name: "dsfetch-aws" } }]);
    expect(dsfetch.env).toBeUndefined();
  });

  it("mounts the shared claim and a generic ephemeral volume for the dynamic dataset", () => {
    expect(fragment.volumes.find((v) => v.name === "dsfetch-storage")).toEqual({
      name: "dsfetch-storage",
      persistentVolumeClaim: { claimName: "dsfetch-shared" },
    });
    const ephemeral = fragment.volumes.find((v) => v.name === "dsfetch-ephemeral");
    expect(ephemeral?.ephemeral?.volumeClaimTemplate?.spec).toEqual({
      accessModes: ["ReadWriteOnce"],
      resources: { requests: { storage: "10Gi" } },
    });
    expect(fragment.containerVolumeMounts.every((mount) => mount.readOnly === true)).toBe(true);
  });

  it("renders a valid indexed Job and a ReadWriteMany claim", () => {
    const job = renderJob(fragment, { name: "train-imagenet", workers: 4, container: TRAIN });
    expect(job.spec).toMatchObject({ completionMode: "Indexed", completions: 4, parallelism: 4 });
    expect(job.spec?.template.spec?.restartPolicy).toBe("Never");
    expect(job.spec?.template.spec?.initContainers?.[0]?.restartPolicy).toBe("Always");
    expect(validateObject(job)).toEqual([]);
    const claim = renderSharedStorageClaim({ name: "dsfetch-shared", size: "1Ti" });
    expect(claim.spec?.accessModes).toEqual(["ReadWriteMany"]);
    expect(validateObject(claim)).toEqual([]);
    expect(thrown(() => renderJob(fragment, { name: "j", workers: 0 })).code).toBe("USAGE");
  });
});

describe("ephemeral datasets", () => {
  const claimFor = (entries: unknown[], extra: Partial<K8sOptions> = {}) =>
    ephemeralClaimSize(
      renderPodFragment(datasets(entries), { mode: "init", image: "i", ...extra }),
    );

  it.each<[string, unknown, string]>([
    ["10Gi", { kind: "dynamic", size: "10Gi" }, "10Gi"],
    ["the 5Gi default", { kind: "dynamic" }, "5Gi"],
    ["1.5G (decimal, exact)", { kind: "dynamic", size: "1.5G" }, "1500M"],
    ["500M", { kind: "dynamic", size: "500M" }, "500M"],
    ["1.5Gi", { kind: "dynamic", size: "1.5Gi" }, "1536Mi"],
    ["a byte count", { kind: "dynamic", size: 1_000_001 }, "1000001"],
  ])("claims %s", (_label, volumeOptions, expected) => {
    expect(claimFor([{ uri: "s3://b/k", volumeOptions }])).toBe(expected);
  });

  it("shares one volume sized to the sum (each dataset is held to its own size by dsfetch)", () => {
    expect(
      claimFor([
        { uri: "s3://b/a", volumeOptions: { kind: "dynamic", size: "10Gi" } },
        { uri: "s3://b/b", volumeOptions: { kind: "dynamic" } },
      ]),
    ).toBe("15Gi");
  });

  it("uses the storage class when given", () => {
    const fragment = renderPodFragment(
      datasets([{ uri: "s3://b/k", volumeOptions: { kind: "dynamic" } }]),
      { mode: "init", image: "i", storageClass: "fast-ssd" },
    );
    const volume = fragment.volumes.find((v) => v.name === "dsfetch-ephemeral");
    expect(volume?.ephemeral?.volumeClaimTemplate?.spec.storageClassName).toBe("fast-ssd");
    expect(volume?.ephemeral?.volumeClaimTemplate?.spec.accessModes).toEqual(["ReadWriteOnce"]);
  });

  it("needs no shared storage nor team when every dataset is ephemeral", () => {
    const fragment = renderPodFragment(
      datasets([{ uri: "s3://b/k", volumeOptions: { kind: "dynamic" } }]),
      { mode: "init", image: "i" },
    );
    const args = dsfetchOf(fragment).args ?? [];
    expect(args).not.toContain("--storage-root");
    expect(args).not.toContain("--team");
    expect(fragment.volumes.map((v) => v.name)).toEqual([
      "dsfetch-config",
      "dsfetch-mounts",
      "dsfetch-ephemeral",
    ]);
    expect(fragment.containerVolumeMounts.map((m) => m.mountPath)).toEqual([
      "/data",
      "/mnt/dsfetch-ephemeral",
    ]);
    expect(validatePodSpec(renderPodSpec(fragment, TRAIN))).toEqual([]);
  });
});

describe("environment variable names", () => {
  it.each([
    ["mnist", "DSFETCH_PATH_MNIST"],
    ["imagenet-train", "DSFETCH_PATH_IMAGENET_TRAIN"],
    ["ImageNet.v2", "DSFETCH_PATH_IMAGENET_V2"],
    ["a+b=c@d,e_f", "DSFETCH_PATH_A_B_C_D_E_F"],
    ["1st", "DSFETCH_PATH_1ST"],
  ])("%s → %s", (name, expected) => {
    expect(datasetEnvName(name)).toBe(expected);
  });

  it("refuses two datasets that would get the same variable", () => {
    expect(envNameClash(["a.b", "x", "a-b"])).toEqual({
      variable: "DSFETCH_PATH_A_B",
      names: ["a.b", "a-b"],
    });
    const error = thrown(() =>
      renderPodFragment(
        datasets([
          { uri: "s3://b/1", name: "a.b", volumeOptions: { kind: "dynamic" } },
          { uri: "s3://b/2", name: "a-b", volumeOptions: { kind: "dynamic" } },
        ]),
        { mode: "init", image: "i" },
      ),
    );
    expect(error.code).toBe("USAGE");
    expect(error.message).toMatch(
      /"a\.b" and "a-b" would both be given to the job as DSFETCH_PATH_A_B/,
    );
  });
});

describe("credentials", () => {
  const secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  const keyId = "AKIAIOSFODNN7EXAMPLE";
  const withKeys = datasets([
    { uri: "s3://public/open" },
    {
      uri: "s3://private/data/",
      name: "secret-data",
      awsAccessKeyId: keyId,
      awsSecretAccessKey: secretKey,
      awsSessionToken: "token-value",
    },
  ]);

  it("are refused, with a way to give them through a Secret", () => {
    const error = thrown(() =>
      renderPodFragment(withKeys, {
        mode: "init",
        image: "i",
        storage: { claimName: "c" },
        team: "t",
      }),
    );
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toMatch(
      /datasets\[1\] \("secret-data"\) carries awsAccessKeyId\/awsSecretAccessKey/,
    );
    expect(error.hint).toMatch(/Secret/);
    expect(error.hint).toMatch(/--aws-secret/);
    const everything = JSON.stringify({ ...error.toJSON(), stack: error.stack });
    for (const secret of [keyId, secretKey, "token-value"])
      expect(everything).not.toContain(secret);
  });
});

describe("options are checked before anything is rendered", () => {
  const base: K8sOptions = {
    mode: "init",
    image: "dsfetch:0.1.0",
    storage: { claimName: "shared" },
    team: "vision",
  };
  it.each<[string, Partial<K8sOptions>, RegExp]>([
    [
      "no shared storage",
      { storage: undefined },
      /use shared storage, but no shared storage volume/,
    ],
    ["no team", { team: undefined }, /--team is required/],
    ["a bad team", { team: "../x" }, /--team: the team handle is not usable/],
    ["a bad mode", { mode: "daemon" as never }, /--mode: "daemon" is not a mode/],
    ["a bad image", { image: "dsfetch 0.1" }, /--image/],
    ["a bad port", { port: 70000 }, /--port: 70000 is not a port/],
    [
      "a relative mount root",
      { mountRoot: "data" },
      /--mount-root: "data" is not an absolute path/,
    ],
    ["a root mount", { mountRoot: "/" }, /cannot be a volume's mount path/],
    // Second exploratory tester, 2026-12-08: rendered, and the sidecar could not start.
    [
      "a mount root over dsfetch",
      { mountRoot: "/app" },
      /--mount-root: a volume mounted at \/app would hide \/app .*dsfetch/,
    ],
    [
      "a storage root over node",
      { storageRoot: "/usr" },
      /--storage-root: a volume mounted at \/usr would hide \/usr\/local\/bin .*node/,
    ],
    [
      "an ephemeral root over /etc",
      { ephemeralRoot: "/etc" },
      /--ephemeral-root: a volume mounted at \/etc would hide/,
    ],
    [
      "nested paths",
      { mountRoot: "/mnt/dsfetch/data" },
      /--storage-root \/mnt\/dsfetch and --mount-root \/mnt\/dsfetch\/data overlap/,
    ],
    ["the config directory", { ephemeralRoot: "/etc/dsfetch" }, /overlap/],
    [
      "a bad ConfigMap name",
      { datasetsConfigMap: "Datasets_1" },
      /--config-map: "Datasets_1" is not a valid ConfigMap name/,
    ],
    ["a bad claim name", { storage: { claimName: "Shared" } }, /--storage-claim/],
    ["a bad Secret name", { awsSecret: "aws secret" }, /--aws-secret/],
    ["a bad NFS server", { storage: { nfs: { server: "", path: "/x" } } }, /--storage-nfs/],
    ["a relative NFS path", { storage: { nfs: { server: "h", path: "x" } } }, /--storage-nfs/],
    ["a zero startup timeout", { startupTimeoutSeconds: 0 }, /--timeout/],
  ])("%s", (_label, change, message) => {
    const error = thrown(() => renderPodFragment(SHARED, { ...base, ...change }));
    expect(error.code).toBe("USAGE");
    expect(error.message).toMatch(message);
    expect(error.hint).toBeTruthy();
  });

  it("normalises paths", () => {
    const fragment = renderPodFragment(SHARED, {
      ...base,
      mountRoot: "/inputs/",
      storageRoot: "/mnt//shared/.",
    });
    expect(dsfetchOf(fragment).args).toContain("/inputs");
    expect(dsfetchOf(fragment).args).toContain("/mnt/shared");
    expect(fragment.containerEnv[0]?.value).toBe("/inputs/mnist");
  });
});

function stripIndex(specs: readonly DatasetSpec[]): unknown[] {
  return specs.map(({ index: _index, ...rest }) => rest);
}
