/**
 * The name dsfetch gives the process space it runs in, in the names of its attempts
 * (`<dir>.<label>.<pid>.<random>`), leases and removal notices (`<label>.<pid>.<random>`):
 * the host name, made safe for a file name, the PID namespace and the boot.
 *
 * Why the namespace: a pid is checked for life (kill(pid, 0)) only by processes of the
 * same label, and a pid means something only in its own PID namespace. Containers on one
 * host often share a host name (two containers of one pod; pods with hostNetwork, common for
 * multi-GPU training), each with its own PID namespace: by the host name alone, a job's live
 * lease read as dead in another container (a refresh or a prune then went ahead under it),
 * and its live attempt as abandoned (removed under its download) (review, 2026-12-05).
 * Where /proc is not there to ask, the host name alone.
 */
import { readFileSync, readlinkSync } from "node:fs";
import { hostname } from "node:os";

let label: string | undefined;

export function hostLabel(): string {
  if (label === undefined) {
    const host =
      hostname()
        .replace(/[^A-Za-z0-9_-]/g, "_")
        .slice(0, 40) || "host";
    label = `${host}${pidNamespaceSuffix()}${bootSuffix()}`;
  }
  return label;
}

/**
 * `-b<12 hex>` of this kernel's boot id, where it can be read. Host names do not tell hosts
 * apart: cut to 40 characters, long pod names of one job are alike, and PID namespace inodes
 * repeat from one machine to the next (every host's first namespace is 4026531836), so a
 * lease of a live job on another node was read as a dead process's of this one, and removed
 * (review, 2026-12-05). One boot id and one namespace inode are one PID namespace.
 */
function bootSuffix(): string {
  try {
    const id = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").replace(/[^0-9a-f]/g, "");
    return id.length >= 12 ? `-b${id.slice(0, 12)}` : "";
  } catch {
    return "";
  }
}

/** `-ns<inode>` of this process's PID namespace ("pid:[4026531836]"), or "" where unknown. */
function pidNamespaceSuffix(): string {
  try {
    const match = /^pid:\[(\d+)\]$/.exec(readlinkSync("/proc/self/ns/pid"));
    return match === null ? "" : `-ns${match[1]}`;
  } catch {
    return "";
  }
}
