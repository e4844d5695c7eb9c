/** Rendering results for people (stderr) and machines (`--json` on stdout). */
import { formatBytes } from "../config/size.ts";
import type { DsfetchError } from "../errors.ts";
import type { PlanEntry } from "../plan/plan.ts";

export function renderPlanTable(entries: readonly PlanEntry[]): string {
  const rows = entries.map((entry) => [
    entry.name,
    entry.kind ?? "-",
    entry.bytes === null ? "-" : formatBytes(entry.bytes),
    entry.objects === null ? "-" : String(entry.objects),
    entry.archive === null
      ? "-"
      : entry.expandedBytes === undefined
        ? entry.archive
        : `${entry.archive} → ${formatBytes(entry.expandedBytes)}`,
    entry.volume,
    entry.error !== undefined
      ? "error"
      : entry.keptInUse !== undefined
        ? "kept: in use"
        : entry.cached
          ? "yes"
          : entry.replaces?.changed === true
            ? "no: changed"
            : entry.replaces !== undefined
              ? "no: stale"
              : "no",
    entry.path ?? "-",
  ]);
  const header = ["NAME", "KIND", "SIZE", "OBJECTS", "ARCHIVE", "VOLUME", "CACHED", "PATH"];
  const out = [table(header, rows)];
  for (const entry of entries) {
    if (entry.fallback !== undefined) {
      out.push(
        "",
        `${entry.name}: ${entry.fallback}; fetch would stage it into an ephemeral volume at ${entry.path ?? "-"}`,
      );
    }
    if (entry.replaces?.changed === true) {
      out.push(
        "",
        `${entry.name}: ${entry.path} was changed after it was published (${entry.replaces.stagedAt}): ${entry.replaces.change ?? "files were added, removed, renamed or resized since"}; ${entry.error === undefined ? "fetch would stage it again" : "fetch would not use it, and would stage it again once the error below is resolved"}`,
      );
    }
    if (entry.timesChanged === true) {
      out.push(
        "",
        `${entry.name}: files of ${entry.path} have other modification times than when it was published, with the same names and sizes (rewritten in place, or storage that sets times on its own): fetch would use it as it is, and say so`,
      );
    }
    if (entry.madeWritable === true) {
      out.push(
        "",
        `${entry.name}: files of ${entry.path} have been made writable by their owner since it was published, or by every user: fetch would use it as it is, and say so`,
      );
    }
    if (entry.storeUnreachable !== undefined) {
      out.push(
        "",
        `${entry.name}: the store cannot be reached (${entry.storeUnreachable}): fetch would use the copy staged at ${entry.path} of the pinned version (ETag ${entry.etag ?? "-"}${entry.versionId === null ? "" : `, versionId ${entry.versionId}`})`,
      );
    }
    if (entry.keptInUse !== undefined) {
      out.push(
        "",
        `${entry.name}: its source changed, but ${entry.path} is in use (${entry.keptInUse.join(", ")}): fetch keeps it as it is until no job uses it`,
      );
    }
    if (entry.error === undefined) continue;
    out.push("", `error: ${entry.error.message} [${entry.error.code}]`);
    if (entry.error.hint !== undefined) out.push(`  hint: ${entry.error.hint}`);
  }
  // The table ends with a newline; the notes after it need theirs (the shell prompt was
  // glued to a hint: review, 2026-12-05).
  return out.length === 1 ? out.join("\n") : `${out.join("\n")}\n`;
}

/** Columns padded to their widest cell; the last column is not padded. Ends with a newline. */
/** `noun` as many times as `count` says: "1 dataset", "2 datasets". */
export function plural(count: number, noun: string): string {
  return count === 1 ? noun : `${noun}s`;
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) =>
        column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0),
      )
      .join("  ");
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

export function renderError(error: DsfetchError): string {
  const lines = [`dsfetch: error: ${error.message} [${error.code}]`];
  if (error.hint !== undefined) lines.push(`  hint: ${error.hint}`);
  return `${lines.join("\n")}\n`;
}
