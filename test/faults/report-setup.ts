// globalSetup of vitest.faults.config.ts: hands the workers a file to collect the scenarios'
// rows in (see report.ts), and prints them as one table when the run ends.
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestProject } from "vitest/node";
import { type CaseRow, formatTable } from "./table.ts";

export default function setup(project: TestProject): () => void {
  const file = join(tmpdir(), `dsfetch-faults-report-${process.pid}-${Date.now()}.jsonl`);
  rmSync(file, { force: true });
  project.provide("faultReport", file);
  return () => {
    if (!existsSync(file)) return;
    const rows = readFileSync(file, "utf8")
      .split("\n")
      .filter((line) => line.trim() !== "")
      .map((line) => JSON.parse(line) as CaseRow);
    rmSync(file, { force: true });
    rows.sort((a, b) => a.scenario.localeCompare(b.scenario));
    process.stdout.write(
      `\nfault suite summary (DSFETCH_FAULT_RUNS=${process.env.DSFETCH_FAULT_RUNS ?? "1"}):\n${formatTable(rows)}\n`,
    );
  };
}
