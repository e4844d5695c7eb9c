/** argv → a command and its flags. Unknown flags and commands are usage errors. */
import { parseArgs } from "node:util";
import { closest } from "../config/suggest.ts";
import { DsfetchError } from "../errors.ts";
import { K8S_ARG_OPTIONS, K8S_HELP, type K8sFlags, k8sFlagsFrom } from "./commands/k8s.ts";

export const COMMANDS = [
  "fetch",
  "run",
  "sidecar",
  "wait",
  "k8s",
  "plan",
  "list",
  "prune",
  "help",
  "version",
] as const;
export type CommandName = (typeof COMMANDS)[number];

const OPTIONS = {
  datasets: { type: "string" },
  "storage-root": { type: "string" },
  team: { type: "string" },
  "mount-root": { type: "string" },
  "ephemeral-root": { type: "string" },
  json: { type: "boolean" },
  mount: { type: "boolean" },
  fallback: { type: "boolean" },
  "older-than": { type: "string" },
  "max-size": { type: "string" },
  "dry-run": { type: "boolean" },
  check: { type: "boolean" },
  verify: { type: "boolean" },
  listen: { type: "string" },
  "ready-file": { type: "string" },
  "hold-on-failure": { type: "boolean" },
  url: { type: "string" },
  timeout: { type: "string" },
  ...K8S_ARG_OPTIONS,
  help: { type: "boolean", short: "h" },
  version: { type: "boolean" },
} as const;

export interface ParsedArgs {
  command: CommandName;
  datasets: string | undefined;
  storageRoot: string | undefined;
  team: string | undefined;
  mountRoot: string | undefined;
  ephemeralRoot: string | undefined;
  json: boolean;
  /** fetch: also link each dataset at <mount-root>/<name>. */
  mount: boolean;
  /** prune: remove datasets unused for longer than this ("7d"). */
  olderThan: string | undefined;
  /** prune: remove least recently used datasets down to this total ("500Gi"). */
  maxSize: string | undefined;
  dryRun: boolean;
  /** list: walk each dataset's tree to tell whether it changed since it was published. */
  check: boolean;
  verify: boolean;
  /** sidecar: address of the health/readiness/metrics endpoint ("0.0.0.0:8700"). */
  listen: string | undefined;
  /** sidecar: file written when every dataset is staged; wait: the file to wait for. */
  readyFile: string | undefined;
  /** sidecar: after a failed staging, keep serving the failure until stopped (not exit). */
  holdOnFailure: boolean;
  /** wait: readiness URL to poll ("http://127.0.0.1:8700/readyz"). */
  url: string | undefined;
  /** wait: how long to wait ("10m"). */
  timeout: string | undefined;
  /** `mount` as given: undefined when neither --mount nor --no-mount was. */
  mountFlag: boolean | undefined;
  /** --fallback / --no-fallback as given: undefined when neither was (settings.ts decides). */
  fallback: boolean | undefined;
  /** run: the command after `--`. */
  exec: string[];
  /** k8s: the rendering flags. */
  k8s: K8sFlags;
  rest: string[];
}

export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  // Everything after the first "--" is the command `run` executes, untouched.
  const dash = argv.indexOf("--");
  const own = dash === -1 ? [...argv] : argv.slice(0, dash);
  const exec = dash === -1 ? [] : argv.slice(dash + 1);
  let parsed: ReturnType<
    typeof parseArgs<{
      options: typeof OPTIONS;
      allowPositionals: true;
      allowNegative: true;
      strict: true;
    }>
  >;
  try {
    parsed = parseArgs({
      args: own,
      options: OPTIONS,
      allowPositionals: true,
      allowNegative: true,
      strict: true,
    });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const unknown = /^Unknown option '(--?[^' ]+)'/.exec(message)?.[1];
    const suggestion =
      unknown === undefined
        ? undefined
        : closest(unknown.replace(/^-+/, "").split("=")[0] ?? "", Object.keys(OPTIONS));
    throw new DsfetchError("USAGE", message.replace(/\. To specify.*$/s, ""), {
      hint:
        suggestion === undefined
          ? "see `dsfetch help`"
          : `did you mean --${suggestion}? (see \`dsfetch help\`)`,
    });
  }
  const { values, positionals } = parsed;
  const [first, ...rest] = positionals;
  let command: CommandName;
  if (values.version === true) command = "version";
  else if (values.help === true || first === undefined) command = "help";
  else if ((COMMANDS as readonly string[]).includes(first)) command = first as CommandName;
  else {
    const suggestion = closest(first, COMMANDS);
    throw new DsfetchError("USAGE", `unknown command "${first}"`, {
      hint:
        suggestion === undefined ? "see `dsfetch help`" : `did you mean "dsfetch ${suggestion}"?`,
    });
  }
  if (command !== "help" && command !== "version") refuseInapplicableFlags(command, values);
  if (command !== "help" && command !== "version" && rest.length > 0) {
    throw new DsfetchError("USAGE", `unexpected argument "${rest[0]}"`, {
      hint:
        command === "run"
          ? "put the command to run after --: dsfetch run [flags] -- python train.py"
          : "see `dsfetch help`",
    });
  }
  if (command === "run" && exec.length === 0) {
    throw new DsfetchError("USAGE", "run needs a command after --", {
      hint: "dsfetch run --datasets datasets.json -- python train.py",
    });
  }
  if (command !== "run" && exec.length > 0) {
    throw new DsfetchError("USAGE", `"--" and a command are only for dsfetch run`, {
      hint: "see `dsfetch help`",
    });
  }
  return {
    command,
    datasets: values.datasets,
    storageRoot: values["storage-root"],
    team: values.team,
    mountRoot: values["mount-root"],
    ephemeralRoot: values["ephemeral-root"],
    json: values.json === true,
    mount: values.mount === true,
    mountFlag: values.mount,
    fallback: values.fallback,
    listen: values.listen,
    readyFile: values["ready-file"],
    holdOnFailure: values["hold-on-failure"] === true,
    url: values.url,
    timeout: values.timeout,
    exec,
    k8s: k8sFlagsFrom(values),
    olderThan: values["older-than"],
    maxSize: values["max-size"],
    dryRun: values["dry-run"] === true,
    check: values.check === true,
    verify: values.verify === true,
    rest,
  };
}

const STAGING: readonly CommandName[] = ["run", "sidecar", "fetch", "plan", "k8s"];
const K8S_ONLY: readonly CommandName[] = ["k8s"];
/**
 * The commands each flag does something for; flags not named here (`--json`, `--help`)
 * apply to all. A flag that does nothing was accepted without a word (`fetch --ready-file`
 * wrote no ready file, `run --older-than` pruned nothing: review, 2026-12-05).
 */
const APPLIES_TO: Readonly<Record<string, readonly CommandName[]>> = {
  datasets: STAGING,
  "storage-root": [...STAGING, "list", "prune"],
  team: [...STAGING, "list", "prune"],
  "mount-root": STAGING,
  "ephemeral-root": STAGING,
  mount: ["run", "sidecar", "fetch"],
  fallback: ["run", "sidecar", "fetch", "plan"],
  "older-than": ["prune"],
  "max-size": ["prune"],
  "dry-run": ["prune"],
  check: ["list"],
  verify: ["list", "fetch", "run", "sidecar"],
  listen: ["sidecar"],
  "ready-file": ["sidecar", "wait"],
  "hold-on-failure": ["sidecar"],
  url: ["wait"],
  timeout: ["wait", "k8s"],
  ...Object.fromEntries(Object.keys(K8S_ARG_OPTIONS).map((flag) => [flag, K8S_ONLY])),
};

function refuseInapplicableFlags(command: CommandName, values: Record<string, unknown>): void {
  for (const [flag, value] of Object.entries(values)) {
    const commands = APPLIES_TO[flag];
    if (value === undefined || commands === undefined || commands.includes(command)) continue;
    const spelt = value === false ? `--no-${flag}` : `--${flag}`;
    throw new DsfetchError("USAGE", `${spelt} does nothing for dsfetch ${command}`, {
      hint: `it is a flag of dsfetch ${commands.join(", dsfetch ")}; see \`dsfetch help\``,
    });
  }
}

export const HELP = `dsfetch — stage verified datasets from S3 for machine-learning jobs

Usage:
  dsfetch fetch --datasets <file|-> [flags]  stage every dataset into shared storage, then exit
  dsfetch run --datasets <file|-> [flags] -- <command…>
                                             stage, link at <mount-root>/<name>, then run the
                                             command (signals forwarded, its exit code returned)
  dsfetch sidecar --datasets <file|-> [--listen addr] [--ready-file path] [--hold-on-failure] [flags]
                                             stage, then report readiness (/healthz, /readyz,
                                             /metrics) and keep the datasets in use until SIGTERM
  dsfetch wait (--ready-file <path> and/or --url <url>) [--timeout 10m]
                                             block until a sidecar says ready
  dsfetch plan --datasets <file|-> [flags]   dry run: resolve every dataset, write nothing
  dsfetch list [--check] [--verify] [flags]  datasets in shared storage: size, source, last use
  dsfetch prune --older-than <d> | --max-size <size> [--dry-run] [flags]
                                             remove least recently used datasets not in use
  dsfetch help                               this text
  dsfetch version                            the version

Flags:
  --datasets <file|->      the datasets array: a JSON/JSON5 file, or - for standard input
                           (default: the DSFETCH_DATASETS environment variable)
  --storage-root <path>    shared storage root            (env DSFETCH_STORAGE_ROOT)
  --team <handle>          team handle under the root     (env DSFETCH_TEAM)
  --mount-root <path>      where datasets appear          (env DSFETCH_MOUNT_ROOT, default /data)
  --ephemeral-root <path>  where ephemeral volumes live   (env DSFETCH_EPHEMERAL_ROOT,
                           default <tmpdir>/dsfetch-ephemeral-<uid>)
  --mount, --no-mount      link each dataset at <mount-root>/<name> (default: on for run and
                           sidecar, off for fetch)
  --no-fallback            fail a shared dataset that shared storage cannot take, instead of
                           staging it into an ephemeral volume (env DSFETCH_FALLBACK=0)
  --listen <host:port>     sidecar: health/readiness/metrics endpoint (default 127.0.0.1:8700;
                           :8700 = every address, IPv6 too)
  --ready-file <path>      sidecar: written when ready; wait: the file to wait for
  --hold-on-failure        sidecar: after a failed staging, stay up saying why until SIGTERM
  --url <url>              wait: a readiness URL, e.g. http://127.0.0.1:8700/readyz
  --timeout <duration>     wait: give up after this long (default 10m)
  --older-than <duration>  prune: unused for longer than this: 90m, 12h, 7d, 2w
  --max-size <size>        prune: keep at most this much in total: 500Gi, 2T
  --dry-run                prune: say what would be removed, remove nothing
  --check                  list: walk each dataset's files to tell whether a job changed them
                           since they were published (a stat per file)
  --verify                 list: --check, and read every file again and compare it with the
                           digest recorded when it was verified (exit 5 if any differs);
                           fetch, run, sidecar: so before reusing a staged copy, and stage a
                           copy that differs again
  --json                   machine-readable output on standard output
  -h, --help               this text

S3 access: per-dataset keys, else the standard AWS credential chain, else anonymous.
AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and AWS_REGION are honoured.
Exit codes: see README.md ("Exit codes").

Kubernetes:
${K8S_HELP}`;
