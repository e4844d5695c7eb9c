/** `dsfetch list` and `dsfetch prune`: what is in a team's shared storage, and removing what is not needed. */

import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { DURATION_FORMS, parseDuration } from "../../config/duration.ts";
import { resolveSettings } from "../../config/settings.ts";
import { formatBytes, parseSize, SIZE_FORMS } from "../../config/size.ts";
import { resolveTuning } from "../../config/tuning.ts";
import { DsfetchError, EXIT_CODES } from "../../errors.ts";
import { requireSharedStorage } from "../../plan/target.ts";
import { stopGraceMs } from "../../stage/progress-watchdog.ts";
import { StorageCalls } from "../../stage/storage-calls.ts";
import { type CatalogEntry, listDatasets, type UnreadableDataset } from "../../volumes/catalog.ts";
import { prune } from "../../volumes/prune.ts";
import type { StorageCall } from "../../volumes/storage-call.ts";
import type { ParsedArgs } from "../args.ts";
import { plural, table } from "../render.ts";

export interface StorageIo {
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * Aborted at the first SIGINT/SIGTERM: both commands then end with INTERRUPTED (130), not
   * at their end, as they did (review, 2026-12-06: a prune CronJob at its deadline, or
   * `timeout 60 dsfetch list` on slow storage, ignored the SIGTERM).
   */
  readonly signal?: AbortSignal | undefined;
}

export async function listCommand(args: ParsedArgs, io: StorageIo): Promise<number> {
  const { storageRoot, team } = requireSharedStorage(resolveSettings(args, io.env));
  const unreadable: UnreadableDataset[] = [];
  // Only reads: a call in flight is interrupted too (answered within the stall bound's grace).
  const entries = await listDatasets(
    storageRoot,
    team,
    boundedCalls("dsfetch list", io.env, io.signal),
    {
      onUnreadable: (dataset) => unreadable.push(dataset),
      check: args.check,
      verify: args.verify,
      signal: io.signal,
    },
  ).catch((error: unknown) => {
    throw io.signal?.aborted === true ? listInterrupted(error) : error;
  });
  // Not a list printed after the signal, as if nothing had asked it to stop.
  if (io.signal?.aborted === true) throw listInterrupted(io.signal.reason);
  if (entries.length === 0) await warnIfNoTeam(storageRoot, team, "list", io);
  for (const { path, manifest, reason } of unreadable) {
    io.err(
      reason === "damaged"
        ? `dsfetch: warning: ${path} is not listed: its manifest ${manifest} is damaged, so dsfetch cannot tell what it holds; prune never removes it and fetch will not reuse it: remove it by hand (chmod -R u+w, then rm -rf) and fetch it again\n`
        : `dsfetch: warning: ${path} is not listed: its manifest ${manifest} cannot be read by this user (${reason}); run list as a user who can read the shared storage\n`,
    );
  }
  // `list --verify` that found bytes other than those published: INTEGRITY's exit code, for
  // the monitoring job that runs it (the list itself is printed as usual).
  const differs = entries.filter((entry) => (entry.content?.mismatched ?? 0) > 0);
  const status = differs.length > 0 ? EXIT_CODES.INTEGRITY : 0;
  if (args.json) {
    io.out(`${JSON.stringify({ datasets: entries, unreadable }, null, 2)}\n`);
    return status;
  }
  const rows = entries.map((entry) => [
    entry.name,
    formatBytes(entry.bytes),
    entry.lastUsed.replace("T", " ").slice(0, 19),
    entry.inUse.length > 0 ? "yes" : "no",
    ...(args.check || args.verify ? [stateText(entry)] : []),
    ...(args.verify ? [contentText(entry)] : []),
    entry.uri,
    entry.path,
  ]);
  const header = ["NAME", "SIZE", "LAST USED (UTC)", "IN USE", "SOURCE", "PATH"];
  if (args.check || args.verify) header.splice(4, 0, "STATE");
  if (args.verify) header.splice(5, 0, "CONTENT");
  io.err(table(header, rows));
  const total = entries.reduce((sum, entry) => sum + entry.bytes, 0);
  io.err(`${entries.length} ${plural(entries.length, "dataset")}, ${formatBytes(total)}\n`);
  for (const entry of entries) {
    if (entry.state === "changed") {
      io.err(
        `${entry.name}: ${entry.path} was changed after it was published${entry.change === undefined ? "" : ` (${entry.change})`}; its files hold ${formatBytes(entry.bytesNow ?? 0)} now, not the ${formatBytes(entry.bytes)} listed: the next fetch of it replaces it${entry.inUse.length > 0 ? " once no job uses it" : ""}\n`,
      );
    }
    const content = entry.content;
    if (content !== undefined && content.mismatched > 0) {
      io.err(
        `${entry.name}: ${content.mismatched} ${plural(content.mismatched, "file")} of ${entry.path} ${content.mismatched === 1 ? "is" : "are"} not what was published (${content.examples.join("; ")}${content.mismatched > content.examples.length ? "; …" : ""}): remove it once no job uses it (chmod -R u+w, then rm -rf, with its manifest) and fetch it again\n`,
      );
    }
  }
  return status;
}

/** `list --verify`'s CONTENT column. */
function contentText(entry: CatalogEntry): string {
  const content = entry.content;
  if (content === undefined) return "-";
  const unchecked = content.unchecked > 0 ? `, ${content.unchecked} unchecked` : "";
  if (content.mismatched > 0) return `${content.mismatched} differ${unchecked}`;
  return `${content.checked} ok${unchecked}`;
}

/** `list --check`'s STATE column. */
function stateText(entry: CatalogEntry): string {
  const state =
    entry.state === "times"
      ? "times changed"
      : entry.state === "unsealed"
        ? "no seal"
        : (entry.state ?? "-");
  return entry.madeWritable === true ? `${state}, writable` : state;
}

export async function pruneCommand(args: ParsedArgs, io: StorageIo): Promise<number> {
  const { storageRoot, team } = requireSharedStorage(resolveSettings(args, io.env));
  let olderThanMs: number | undefined;
  if (args.olderThan !== undefined) {
    const parsed = parseDuration(args.olderThan);
    if (!parsed.ok) {
      throw new DsfetchError("USAGE", `--older-than: ${parsed.reason}`, {
        hint: `accepted: ${DURATION_FORMS}`,
      });
    }
    olderThanMs = parsed.ms;
  }
  let maxBytes: number | undefined;
  if (args.maxSize !== undefined) {
    const parsed = parseSize(args.maxSize);
    if (!parsed.ok)
      throw new DsfetchError("USAGE", `--max-size: ${parsed.reason}`, {
        hint: `accepted: ${SIZE_FORMS}`,
      });
    maxBytes = parsed.bytes;
  }
  const result = await prune(storageRoot, team, {
    olderThanMs,
    maxBytes,
    dryRun: args.dryRun,
    lockStaleMs: resolveTuning(io.env).lock.staleMs,
    // Not interrupted inside a call (a removal's notice and lock must be taken down): prune
    // stops between its steps itself.
    call: boundedCalls("dsfetch prune", io.env),
    signal: io.signal,
  });
  if (result.removed.length === 0 && result.kept.length === 0) {
    await warnIfNoTeam(storageRoot, team, "prune", io);
  }
  if (args.json) {
    io.out(`${JSON.stringify({ dryRun: args.dryRun, ...result }, null, 2)}\n`);
    return 0;
  }
  const verb = args.dryRun ? "would remove" : "removed";
  for (const entry of result.removed)
    io.err(`${verb} ${entry.name} (${formatBytes(entry.bytes)}, last used ${entry.lastUsed})\n`);
  for (const entry of result.kept) io.err(`kept ${entry.name}: ${entry.keptBecause}\n`);
  io.err(
    `${verb} ${result.removed.length} ${plural(result.removed.length, "dataset")}, ${formatBytes(result.freedBytes)}; ${formatBytes(result.remainingBytes)} remain\n`,
  );
  return 0;
}

/**
 * A team with no directory under the storage root: a `--team` typo listed "0 datasets" and
 * pruned nothing, exit 0, for good (exploratory review, 2026-12-07). Said, with the teams
 * that are there; not an error (a team that has staged nothing yet has no directory either).
 */
async function warnIfNoTeam(
  storageRoot: string,
  team: string,
  command: string,
  io: StorageIo,
): Promise<void> {
  const dir = join(storageRoot, team);
  // Under the stall bound, as list's and prune's other calls.
  const call = boundedCalls(`dsfetch ${command}`, io.env, io.signal);
  const there = await call(`looking at ${dir}`, () =>
    stat(dir).then(
      () => true,
      () => false,
    ),
  ).catch(() => true);
  if (there) return;
  const teams = await call(`reading ${storageRoot}`, () =>
    readdir(storageRoot, { withFileTypes: true }),
  )
    .then((entries) =>
      entries
        .filter(
          (entry) =>
            entry.isDirectory() && !entry.name.startsWith(".") && entry.name !== "lost+found",
        )
        .map((entry) => entry.name),
    )
    .catch(() => [] as string[]);
  const err = io.err;
  err(
    `dsfetch ${command}: warning: ${dir} does not exist: team ${JSON.stringify(team)} has staged nothing under ${storageRoot}${teams.length === 0 ? "" : ` (teams there: ${teams.sort().slice(0, 10).join(", ")}${teams.length > 10 ? ", …" : ""})`}; check --team (DSFETCH_TEAM)\n`,
  );
}

/**
 * Calls on shared storage under the stall bound: on storage that stopped answering (a
 * network mount whose server is gone), `list` and `prune` (a cron job) say STALLED and end,
 * instead of waiting for good.
 */
function boundedCalls(
  label: string,
  env: StorageIo["env"],
  signal?: AbortSignal | undefined,
): StorageCall {
  const stallMs = resolveTuning(env).extractStallTimeoutMs;
  return new StorageCalls({ dataset: label, stallMs, graceMs: stopGraceMs(stallMs), signal }).call;
}

function listInterrupted(cause: unknown): DsfetchError {
  return new DsfetchError("INTERRUPTED", "list: interrupted; nothing was listed", { cause });
}
