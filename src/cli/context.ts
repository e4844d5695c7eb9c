/** What every command gets from the CLI shell. */
import type { DatasetSpec, Settings } from "../config/types.ts";
import type { ParsedArgs } from "./args.ts";

export interface CommandContext {
  readonly args: ParsedArgs;
  readonly settings: Settings;
  readonly datasets: readonly DatasetSpec[];
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
  readonly stderrIsTty: boolean;
  /** Aborted on SIGINT/SIGTERM. */
  readonly signal: AbortSignal;
  readonly env: Readonly<Record<string, string | undefined>>;
}
