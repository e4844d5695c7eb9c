/**
 * Whole objects around a pod fragment: the Pod of a single-worker job, the indexed Job of a
 * multi-worker one, and the team's shared storage claim. Pure. Used by `dsfetch k8s --pod`
 * and by the checked-in examples (examples/k8s/).
 */
import type { Job } from "kubernetes-types/batch/v1.js";
import type { Container, PersistentVolumeClaim, Pod } from "kubernetes-types/core/v1.js";
import { DsfetchError } from "../errors.ts";
import { checkObjectName } from "./names.ts";
import { LABELS, type PodFragment, renderPodSpec } from "./render.ts";

/** The stand-in for the user's own container in rendered examples. */
export const EXAMPLE_TRAINING_CONTAINER: Container = Object.freeze({
  name: "train",
  image: "python:3.12-slim",
  command: ["python", "train.py"],
});

export interface WorkloadOptions {
  /** The Pod's or Job's name. */
  readonly name: string;
  readonly container?: Container | undefined;
}

/** A single-worker job: one Pod that never restarts (a failed staging fails the pod). */
export function renderPod(fragment: PodFragment, options: WorkloadOptions): Pod {
  const name = checkObjectName(options.name, "name", "Pod");
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, labels: { ...LABELS, "app.kubernetes.io/instance": name } },
    spec: {
      restartPolicy: "Never",
      ...renderPodSpec(fragment, options.container ?? EXAMPLE_TRAINING_CONTAINER),
    },
  };
}

/**
 * A multi-worker job: an indexed Job of `workers` pods that start together; every pod's
 * dsfetch stages the same datasets, one downloads, the others wait and reuse.
 */
export function renderJob(
  fragment: PodFragment,
  options: WorkloadOptions & { readonly workers: number },
): Job {
  const name = checkObjectName(options.name, "name", "Job");
  if (!Number.isInteger(options.workers) || options.workers < 1 || options.workers > 100_000) {
    throw new DsfetchError("USAGE", `--workers: ${options.workers} is not a number of workers`, {
      hint: "a whole number from 1 to 100000",
    });
  }
  const labels = { ...LABELS, "app.kubernetes.io/instance": name };
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, labels },
    spec: {
      completionMode: "Indexed",
      completions: options.workers,
      parallelism: options.workers,
      backoffLimit: 3,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          ...renderPodSpec(fragment, options.container ?? EXAMPLE_TRAINING_CONTAINER),
        },
      },
    },
  };
}

/** The team's shared storage: one ReadWriteMany claim that every job's pods mount. */
export function renderSharedStorageClaim(options: {
  readonly name: string;
  readonly size: string;
  readonly storageClass?: string | undefined;
}): PersistentVolumeClaim {
  return {
    apiVersion: "v1",
    kind: "PersistentVolumeClaim",
    metadata: {
      name: checkObjectName(options.name, "--storage-claim", "PersistentVolumeClaim"),
      labels: { ...LABELS, "app.kubernetes.io/component": "shared-storage" },
    },
    spec: {
      accessModes: ["ReadWriteMany"],
      ...(options.storageClass === undefined ? {} : { storageClassName: options.storageClass }),
      resources: { requests: { storage: options.size } },
    },
  };
}
