// The fault suite's summary table (no vitest imports: report-setup.ts runs it in the main
// process).

/** One scenario case's numbers over its runs. */
export interface CaseRow {
  scenario: string;
  case: string;
  runs: number;
  failures: number;
  skipped: number;
  refetchedBytes: number;
  proxyExtraBytes: number;
  maxSeconds: number;
  totalSeconds: number;
  notes: string;
  seed: number;
}

export function formatMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(2)} MiB`;
}

/** The rows as a plain text table (one line per case, then totals). */
export function formatTable(rows: readonly CaseRow[]): string {
  const header = [
    "scenario",
    "case",
    "runs",
    "fail",
    "skip",
    "refetched",
    "proxy extra",
    "max s",
    "total s",
    "notes",
  ];
  const body = rows.map((r) => [
    r.scenario,
    r.case,
    String(r.runs),
    String(r.failures),
    String(r.skipped),
    formatMiB(r.refetchedBytes),
    formatMiB(r.proxyExtraBytes),
    r.maxSeconds.toFixed(1),
    r.totalSeconds.toFixed(1),
    r.notes,
  ]);
  const sum = (pick: (r: CaseRow) => number) => rows.reduce((n, r) => n + pick(r), 0);
  body.push([
    "all",
    "",
    String(sum((r) => r.runs)),
    String(sum((r) => r.failures)),
    String(sum((r) => r.skipped)),
    formatMiB(sum((r) => r.refetchedBytes)),
    formatMiB(sum((r) => r.proxyExtraBytes)),
    Math.max(0, ...rows.map((r) => r.maxSeconds)).toFixed(1),
    sum((r) => r.totalSeconds).toFixed(1),
    `seed ${[...new Set(rows.map((r) => r.seed))].join(", ")}`,
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...body.map((cells) => (cells[i] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, i) =>
        i >= 2 && i <= 8 ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0),
      )
      .join("  ")
      .trimEnd();
  return [line(header), ...body.map(line)].join("\n");
}
