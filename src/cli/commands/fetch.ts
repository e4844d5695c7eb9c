/** `dsfetch fetch`: standalone prefetch: stage every dataset, then exit. */
import { resolveTuning } from "../../config/tuning.ts";
import { exitCodeOfStage, failuresOf, stage } from "../../stage/stage.ts";
import type { CommandContext } from "../context.ts";
import { ProgressView } from "../progress-view.ts";
import { renderError } from "../render.ts";

export async function fetchCommand({
  args,
  settings,
  datasets,
  out,
  err,
  stderrIsTty,
  signal,
  env,
}: CommandContext): Promise<number> {
  const view = new ProgressView(err, stderrIsTty);
  const tuning = resolveTuning(env);
  const result = await stage(datasets, settings, {
    onEvent: view.handle,
    signal,
    tuning,
    mount: args.mount,
    verifyContent: args.verify,
  });
  view.close();
  if (args.json) {
    const datasetsJson = result.datasets.map((outcome) => {
      if (outcome.ok) {
        const { ok: _ok, ...staged } = outcome;
        return staged;
      }
      return { name: outcome.name, uri: outcome.uri, error: outcome.error.toJSON() };
    });
    out(`${JSON.stringify({ datasets: datasetsJson }, null, 2)}\n`);
  }
  // On stderr with --json too: human output always goes there (README), and a log that keeps
  // only stderr (or a test that printed only it) said nothing of a failed dataset but its exit
  // code (a CI run, 2026-12-07).
  for (const outcome of failuresOf(result)) err(renderError(outcome.error));
  return exitCodeOfStage(result);
}
