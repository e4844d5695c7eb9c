import { describe, expect, it } from "vitest";
import { type ParsedArgs, parseCommandLine } from "../../src/cli/args.ts";
import { thrown } from "../harness/thrown.ts";

const NONE: ParsedArgs = {
  command: "help",
  datasets: undefined,
  storageRoot: undefined,
  team: undefined,
  mountRoot: undefined,
  ephemeralRoot: undefined,
  json: false,
  mount: false,
  olderThan: undefined,
  maxSize: undefined,
  dryRun: false,
  check: false,
  verify: false,
  listen: undefined,
  readyFile: undefined,
  holdOnFailure: false,
  url: undefined,
  timeout: undefined,
  mountFlag: undefined,
  fallback: undefined,
  exec: [],
  k8s: { pod: false },
  rest: [],
};

describe("parseCommandLine accepts", () => {
  it.each<[string[], Partial<ParsedArgs>]>([
    [[], { command: "help" }],
    [["help"], { command: "help" }],
    [["--help"], { command: "help" }],
    [["-h"], { command: "help" }],
    [["plan", "--help"], { command: "help" }],
    [["version"], { command: "version" }],
    [["--version"], { command: "version" }],
    [["plan"], { command: "plan" }],
    [["plan", "--datasets", "datasets.json"], { command: "plan", datasets: "datasets.json" }],
    [["plan", "--datasets=-"], { command: "plan", datasets: "-" }],
    [["--datasets", "d.json", "plan"], { command: "plan", datasets: "d.json" }],
    [["plan", "--json"], { command: "plan", json: true }],
    [
      [
        "plan",
        "--storage-root",
        "/mnt/shared",
        "--team",
        "vision",
        "--mount-root",
        "/inputs",
        "--ephemeral-root",
        "/scratch",
      ],
      {
        command: "plan",
        storageRoot: "/mnt/shared",
        team: "vision",
        mountRoot: "/inputs",
        ephemeralRoot: "/scratch",
      },
    ],
  ])("%j", (argv, expected) => {
    expect(parseCommandLine(argv)).toEqual({ ...NONE, ...expected });
  });
});

describe("parseCommandLine rejects", () => {
  it.each<[string[], string, string]>([
    [["plna"], 'unknown command "plna"', 'did you mean "dsfetch plan"?'],
    [["pln"], 'unknown command "pln"', 'did you mean "dsfetch plan"?'],
    [["Plan"], 'unknown command "Plan"', 'did you mean "dsfetch plan"?'],
    [["hlep"], 'unknown command "hlep"', 'did you mean "dsfetch help"?'],
    [["versoin"], 'unknown command "versoin"', 'did you mean "dsfetch version"?'],
    [["frobnicate"], 'unknown command "frobnicate"', "see `dsfetch help`"],
  ])("%j: unknown command", (argv, message, hint) => {
    const error = thrown(() => parseCommandLine(argv));
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(message);
    expect(error.hint).toBe(hint);
  });

  it.each<[string[], string, string]>([
    [["plan", "--datset", "d.json"], "'--datset'", "did you mean --datasets?"],
    [["plan", "--jsno"], "'--jsno'", "did you mean --json?"],
    [["plan", "--storage-rot", "/x"], "'--storage-rot'", "did you mean --storage-root?"],
    [["plan", "--mountroot", "/x"], "'--mountroot'", "did you mean --mount-root?"],
    [["plan", "--frobnicate"], "'--frobnicate'", "see `dsfetch help`"],
    [["plan", "-x"], "'-x'", "see `dsfetch help`"],
  ])("%j: unknown flag", (argv, flag, hint) => {
    const error = thrown(() => parseCommandLine(argv));
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(`Unknown option ${flag}`);
    expect(error.message).not.toContain("To specify a positional argument");
    expect(error.hint).toContain(hint);
  });

  it.each<[string[], string]>([
    [["plan", "--datasets"], "--datasets"],
    [["plan", "--json=yes"], "--json"],
    [["plan", "extra"], 'unexpected argument "extra"'],
  ])("%j", (argv, message) => {
    const error = thrown(() => parseCommandLine(argv));
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toContain(message);
  });

  it.each<[string[], string, string]>([
    [
      ["fetch", "--ready-file", "/tmp/ready"],
      "--ready-file does nothing for dsfetch fetch",
      "dsfetch sidecar, dsfetch wait",
    ],
    [
      ["run", "--older-than", "1d", "--", "true"],
      "--older-than does nothing for dsfetch run",
      "prune",
    ],
    [
      ["run", "--storage-claim", "pvc", "--", "true"],
      "--storage-claim does nothing for dsfetch run",
      "k8s",
    ],
    [["list", "--datasets", "d.json"], "--datasets does nothing for dsfetch list", "dsfetch fetch"],
    [["plan", "--no-mount"], "--no-mount does nothing for dsfetch plan", "dsfetch run"],
    [
      ["wait", "--url", "http://x/readyz", "--listen", ":1"],
      "--listen does nothing for dsfetch wait",
      "sidecar",
    ],
  ])("%j: a flag that does nothing for the command", (argv, message, hint) => {
    const error = thrown(() => parseCommandLine(argv));
    expect(error.code).toBe("USAGE");
    expect(error.exitCode).toBe(2);
    expect(error.message).toBe(message);
    expect(error.hint).toContain(hint);
  });
});
