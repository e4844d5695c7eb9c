/** Where a dataset will go: its volume, final location and mount path. Pure. */
import { parseSize } from "../config/size.ts";
import { type DatasetSpec, DEFAULT_VOLUME_SIZE, type Settings } from "../config/types.ts";
import { DsfetchError } from "../errors.ts";
import {
  type DatasetLocation,
  ephemeralLocation,
  mountPath,
  sharedLocation,
} from "../volumes/layout.ts";

export interface Target {
  readonly volume: "shared" | "ephemeral";
  /** Size budget of an ephemeral volume, in bytes. */
  readonly volumeBytes: number | undefined;
  readonly location: DatasetLocation;
  readonly mount: string;
}

export function targetFor(spec: DatasetSpec, settings: Settings): Target {
  const mount = mountPath(settings.mountRoot, spec.name);
  if (spec.volume.kind === "ephemeral") {
    return {
      volume: "ephemeral",
      volumeBytes: spec.volume.sizeBytes,
      location: ephemeralLocation(settings.ephemeralRoot, spec.name),
      mount,
    };
  }
  const { storageRoot, team } = requireSharedStorage(settings);
  return {
    volume: "shared",
    volumeBytes: undefined,
    location: sharedLocation(storageRoot, team, spec.name, spec.etag),
    mount,
  };
}

/**
 * Where a shared dataset goes when shared storage cannot take it (SPEC §6): an ephemeral
 * volume of the default size.
 */
export function fallbackTarget(spec: DatasetSpec, settings: Settings): Target {
  const size = parseSize(DEFAULT_VOLUME_SIZE);
  return {
    volume: "ephemeral",
    volumeBytes: size.ok ? size.bytes : undefined,
    location: ephemeralLocation(settings.ephemeralRoot, spec.name),
    mount: mountPath(settings.mountRoot, spec.name),
  };
}

/**
 * A shared dataset that shared storage cannot take, under `--no-fallback`: for a prefetch, a
 * dataset staged into an ephemeral volume that is gone when it ends is no prefetch at all, and
 * exit 0 said it worked (review, 2026-12-05).
 */
export function noFallbackError(spec: DatasetSpec, reason: string): DsfetchError {
  return new DsfetchError(
    "STORAGE",
    `${spec.name}: ${reason}; not staged into an ephemeral volume instead (--no-fallback)`,
    {
      dataset: spec.name,
      // Not "make shared storage available": the reason may be jobs using the path (review).
      hint: "resolve the reason above and run again; or let it be staged into an ephemeral volume: drop --no-fallback (and unset DSFETCH_FALLBACK=0)",
    },
  );
}

/** Shared storage needs both a root and a team; say which is missing and how to give it. */
export function requireSharedStorage(settings: Settings): { storageRoot: string; team: string } {
  const missing = [
    settings.storageRoot === undefined ? "--storage-root (or DSFETCH_STORAGE_ROOT)" : undefined,
    settings.team === undefined ? "--team (or DSFETCH_TEAM)" : undefined,
  ].filter((item) => item !== undefined);
  if (settings.storageRoot === undefined || settings.team === undefined) {
    throw new DsfetchError(
      "USAGE",
      `shared storage is not configured: missing ${missing.join(" and ")}`,
      {
        hint: 'datasets go to <storage-root>/<team>/data/; set both, or give each dataset volumeOptions { "kind": "dynamic" }',
      },
    );
  }
  return { storageRoot: settings.storageRoot, team: settings.team };
}
