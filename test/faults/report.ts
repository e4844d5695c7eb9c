// The fault suite's numbers. Each scenario case (a FaultCase) runs its runs, catches what
// fails in each one (so a run that fails does not hide the others), and prints one line:
// runs, failures, bytes fetched twice, longest run. Each file prints its table in an afterAll;
// under vitest.faults.config.ts the rows also go to a JSON-lines file that
// test/faults/report-setup.ts prints as one table at the end of the run.
import { appendFileSync } from "node:fs";
import { afterAll, inject } from "vitest";
import { SEED } from "./helpers.ts";
import { type CaseRow, formatMiB, formatTable } from "./table.ts";

export type { CaseRow } from "./table.ts";

declare module "vitest" {
  export interface ProvidedContext {
    /** The JSON-lines file collecting every scenario's rows (vitest.faults.config.ts only). */
    faultReport: string;
  }
}

export interface RunMetrics {
  /** What dsfetch says it fetched twice (`refetchedBytes` of `fetch --json`). */
  refetchedBytes?: number;
  /** Object body bytes the proxy delivered beyond the dataset's size. */
  proxyExtraBytes?: number;
}

export class FaultCase {
  readonly scenario: string;
  readonly name: string;
  runs = 0;
  failures = 0;
  skipped = 0;
  refetchedBytes = 0;
  proxyExtraBytes = 0;
  maxSeconds = 0;
  totalSeconds = 0;
  private readonly counts = new Map<string, number>();
  private readonly problems: string[] = [];
  private readonly notes: string[] = [];
  private skipReason: string | undefined;

  constructor(scenario: string, name: string) {
    this.scenario = scenario;
    this.name = name;
  }

  /** One run: timed; a throw counts as a failure (with its message) and the next run goes on. */
  async run(index: number, fn: () => Promise<RunMetrics | undefined>): Promise<void> {
    const started = performance.now();
    this.runs += 1;
    try {
      const metrics = await fn();
      this.refetchedBytes += metrics?.refetchedBytes ?? 0;
      this.proxyExtraBytes += metrics?.proxyExtraBytes ?? 0;
    } catch (error) {
      this.failures += 1;
      const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
      this.problems.push(`run ${index}: ${text.split("\n").slice(0, 40).join("\n")}`);
    } finally {
      const seconds = (performance.now() - started) / 1000;
      this.totalSeconds += seconds;
      this.maxSeconds = Math.max(this.maxSeconds, seconds);
    }
  }

  /** Adds to a named counter shown in the notes (faults fired, where kills landed, …). */
  count(key: string, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  /** A free-text note shown with the counters. */
  note(text: string): void {
    this.notes.push(text);
  }

  /** The case could not run here: counted as skipped, never as passed. */
  skip(reason: string): void {
    this.skipped += 1;
    this.skipReason = reason;
  }

  row(): CaseRow {
    const notes = [...this.counts].map(([key, n]) => `${key} ${n}`);
    notes.push(...this.notes);
    if (this.skipReason !== undefined) notes.push(`skipped: ${this.skipReason}`);
    return {
      scenario: this.scenario,
      case: this.name,
      runs: this.runs,
      failures: this.failures,
      skipped: this.skipped,
      refetchedBytes: this.refetchedBytes,
      proxyExtraBytes: this.proxyExtraBytes,
      maxSeconds: this.maxSeconds,
      totalSeconds: this.totalSeconds,
      notes: notes.join(", "),
      seed: SEED,
    };
  }

  /** Prints the case's line; throws with every failed run's message when one failed. */
  finish(): void {
    const r = this.row();
    console.log(
      `faults ${r.scenario}/${r.case}: runs ${r.runs}, failures ${r.failures}` +
        `${r.skipped > 0 ? `, skipped ${r.skipped}` : ""}, refetched ${formatMiB(r.refetchedBytes)}` +
        ` (proxy: ${formatMiB(r.proxyExtraBytes)} beyond the size), max ${r.maxSeconds.toFixed(1)} s,` +
        ` total ${r.totalSeconds.toFixed(1)} s${r.notes === "" ? "" : ` [${r.notes}]`} (seed ${SEED})`,
    );
    if (this.failures > 0) {
      throw new Error(
        `${this.scenario}/${this.name}: ${this.failures} of ${this.runs} runs failed ` +
          `(replay with DSFETCH_FAULT_SEED=${SEED}):\n\n${this.problems.join("\n\n")}`,
      );
    }
  }
}

/** A scenario file's cases; its table is printed (and collected) after the file's tests. */
export class FaultReport {
  readonly scenario: string;
  private readonly cases: FaultCase[] = [];

  constructor(scenario: string) {
    this.scenario = scenario;
    afterAll(() => this.flush());
  }

  case(name: string): FaultCase {
    const c = new FaultCase(this.scenario, name);
    this.cases.push(c);
    return c;
  }

  private flush(): void {
    const rows = this.cases.map((c) => c.row());
    if (rows.length === 0) return;
    console.log(formatTable(rows));
    const file = inject("faultReport") as string | undefined;
    if (file !== undefined) {
      appendFileSync(file, rows.map((row) => `${JSON.stringify(row)}\n`).join(""));
    }
  }
}
