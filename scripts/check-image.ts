// Checks the container image's recipe where no Docker engine runs:
//
//   1. the Dockerfile: Node 24 bookworm-slim bases, the runtime packages, a numeric non-root
//      user (the uid src/k8s/render.ts runs as), `tini -- node /app/bin/dsfetch.js` + `help`;
//   2. the build context: .dockerignore keeps node_modules, dist, .git, tests… out and lets
//      every file the build stage COPYs in;
//   3. the build: the context exactly as .dockerignore leaves it is copied to a temporary
//      directory (node_modules linked in, where the image runs `npm ci`) and `npm pack` runs
//      there — its "prepare" script is the image's `npm run build` — then every path the
//      runtime stage COPYs from the build stage must exist, the entrypoint file too, and
//      the files it imports;
//   4. a production install: `npm install --omit=dev <tarball>` into another temporary
//      directory (this reaches the npm registry), then `dsfetch version` and `dsfetch help`
//      from it must exit 0 (version = package.json's), every production dependency must
//      load (native ones included), and no dev dependency may be there.
//
// Usage: node scripts/check-image.ts [--keep]   (--keep leaves the temporary directories)
// Exit 0 when every check passes; 1 otherwise. test/image/image.test.ts runs it.
import { spawn } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DSFETCH_UID } from "../src/k8s/render.ts";

export interface CheckResult {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const RUNTIME_PACKAGES = ["xz-utils", "bzip2", "lbzip2", "ca-certificates", "tini"];
const MUST_STAY_OUT = [
  "node_modules/x",
  "dist/index.js",
  ".git/HEAD",
  ".demo/x",
  "test/x.test.ts",
  "bench/x.ts",
  ".ci/run",
];

// ---------------------------------------------------------------- Dockerfile parsing

export interface Instruction {
  readonly keyword: string;
  readonly args: string;
  readonly stage: number;
}

export interface Stage {
  readonly image: string;
  readonly name: string | undefined;
  workdir: string;
}

export interface CopyInstruction {
  readonly stage: number;
  readonly from: string | undefined;
  readonly sources: readonly string[];
  /** Absolute, resolved against the stage's WORKDIR. */
  readonly destination: string;
}

export interface Dockerfile {
  readonly stages: readonly Stage[];
  readonly instructions: readonly Instruction[];
  readonly copies: readonly CopyInstruction[];
}

/** Enough of the Dockerfile grammar for our own file: continuations, comments, ARG, FROM, WORKDIR, COPY. */
export function parseDockerfile(text: string): Dockerfile {
  const logical: string[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line)) continue; // comments, also between continued lines
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const whole = (pending + line).trim();
    pending = "";
    if (whole !== "") logical.push(whole);
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  const instructions: Instruction[] = [];
  const copies: CopyInstruction[] = [];
  const substitute = (value: string) =>
    value.replace(
      /\$\{(\w+)\}|\$(\w+)/g,
      (_match, a: string | undefined, b: string | undefined) => args.get(a ?? b ?? "") ?? "",
    );
  for (const line of logical) {
    const [, keywordText = "", rest = ""] = /^(\S+)\s*(.*)$/s.exec(line) ?? [];
    const keyword = keywordText.toUpperCase();
    if (keyword === "ARG" && stages.length === 0) {
      const [name = "", value = ""] = rest.split("=", 2);
      args.set(name.trim(), value.trim());
    }
    if (keyword === "FROM") {
      const words = rest.split(/\s+/).filter((word) => !word.startsWith("--"));
      const asIndex = words.findIndex((word) => word.toUpperCase() === "AS");
      stages.push({
        image: substitute(words[0] ?? ""),
        name: asIndex === -1 ? undefined : words[asIndex + 1],
        workdir: "/",
      });
    }
    const stage = stages.length - 1;
    const current = stages[stage];
    if (keyword === "WORKDIR" && current !== undefined)
      current.workdir = posix.resolve(current.workdir, rest.trim());
    if (keyword === "COPY" && current !== undefined) {
      const words = rest.trim().startsWith("[")
        ? (JSON.parse(rest) as string[])
        : rest.split(/\s+/);
      const from = words.find((word) => word.startsWith("--from="))?.slice("--from=".length);
      const paths = words.filter((word) => !word.startsWith("--"));
      const destination = paths.at(-1) ?? "";
      copies.push({
        stage,
        from,
        sources: paths.slice(0, -1),
        destination: posix.resolve(current.workdir, destination),
      });
    }
    instructions.push({ keyword, args: rest, stage });
  }
  return { stages, instructions, copies };
}

// ---------------------------------------------------------------- .dockerignore

/**
 * The .dockerignore rules (moby's patternmatcher): a path is excluded when the last pattern
 * matching it or one of its parent directories is not a `!` pattern. `*` and `?` stay within
 * one path segment, `**` spans any number.
 */
export function dockerIgnore(text: string): (path: string) => boolean {
  const rules = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const negated = line.startsWith("!");
      const pattern = posix
        .normalize((negated ? line.slice(1) : line).trim())
        .replace(/^\/+|\/+$/g, "")
        .replace(/^\.\//, "");
      return { negated, regex: globToRegex(pattern) };
    });
  return (path) => {
    const segments = path.split("/").filter((segment) => segment !== "");
    const candidates = segments.map((_segment, i) => segments.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const rule of rules) {
      if (candidates.some((candidate) => rule.regex.test(candidate))) excluded = !rule.negated;
    }
    return excluded;
  };
}

function globToRegex(pattern: string): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const character = pattern[i] ?? "";
    if (character === "*" && pattern[i + 1] === "*") {
      i += 1;
      if (pattern[i + 1] === "/") {
        i += 1;
        out += "(?:.*/)?";
      } else out += ".*";
    } else if (character === "*") out += "[^/]*";
    else if (character === "?") out += "[^/]";
    else out += character.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

// ---------------------------------------------------------------- the checks

export async function checkImage(
  options: { keep?: boolean; log?: (line: string) => void } = {},
): Promise<CheckResult[]> {
  const log = options.log ?? (() => {});
  const results: CheckResult[] = [];
  const check = (name: string, ok: boolean, detail: string) => {
    results.push({ name, ok, detail });
    log(`${ok ? "ok  " : "FAIL"} ${name}: ${detail}`);
  };
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
    version: string;
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  const dockerfile = parseDockerfile(readFileSync(join(ROOT, "Dockerfile"), "utf8"));
  const ignoreText = readFileSync(join(ROOT, ".dockerignore"), "utf8");
  const ignored = dockerIgnore(ignoreText);
  const final = dockerfile.stages.length - 1;
  const finalOnly = (keyword: string) =>
    dockerfile.instructions.filter((i) => i.keyword === keyword && i.stage === final);

  // 1. The Dockerfile itself.
  const images = dockerfile.stages.map((stage) => stage.image);
  check(
    "base images",
    images.length >= 2 && images.every((image) => image === "node:24-bookworm-slim"),
    `${images.join(", ")} (multi-stage on node:24-bookworm-slim)`,
  );
  const buildStage = dockerfile.stages.findIndex((stage) => stage.name === "build");
  const buildRuns = dockerfile.instructions
    .filter((i) => i.keyword === "RUN" && i.stage === buildStage)
    .map((i) => i.args)
    .join("\n");
  check(
    "build stage",
    /npm ci\b/.test(buildRuns) &&
      /npm run build\b/.test(buildRuns) &&
      /npm prune --omit=dev\b/.test(buildRuns),
    "npm ci, npm run build, npm prune --omit=dev",
  );
  const runtimeRuns = finalOnly("RUN")
    .map((i) => i.args)
    .join("\n");
  const missingPackages = RUNTIME_PACKAGES.filter(
    (name) =>
      !new RegExp(`apt-get install[^&]*\\s${name.replace(/[.+]/g, "\\$&")}(\\s|$)`).test(
        runtimeRuns,
      ),
  );
  check(
    "runtime packages",
    missingPackages.length === 0,
    missingPackages.length === 0
      ? RUNTIME_PACKAGES.join(" ")
      : `missing: ${missingPackages.join(" ")}`,
  );
  const user = finalOnly("USER").at(-1)?.args.trim() ?? "(none)";
  check(
    "non-root user",
    user === `${DSFETCH_UID}:${DSFETCH_UID}` &&
      new RegExp(`--uid ${DSFETCH_UID}\\b`).test(runtimeRuns),
    `USER ${user}; the Kubernetes renderer runs as ${DSFETCH_UID}`,
  );
  // The default mount root, owned by the user that links datasets there (README review,
  // 2026-12-06: without it, `run` in the image failed STORAGE unless a volume was at /data).
  check(
    "default mount root",
    new RegExp(
      `install -d (-m 0?755 )?-o ${DSFETCH_UID} -g ${DSFETCH_UID}( -m 0?755)? /data(\\s|$)`,
    ).test(runtimeRuns),
    `/data made for uid ${DSFETCH_UID}`,
  );
  const entrypoint = jsonArray(finalOnly("ENTRYPOINT").at(-1)?.args);
  const cmd = jsonArray(finalOnly("CMD").at(-1)?.args);
  const expectedEntrypoint = [
    "tini",
    "--",
    "node",
    "--max-semi-space-size=8",
    "/app/bin/dsfetch.js",
  ];
  check(
    "entrypoint",
    JSON.stringify(entrypoint) === JSON.stringify(expectedEntrypoint) &&
      JSON.stringify(cmd) === '["help"]',
    `ENTRYPOINT ${JSON.stringify(entrypoint)} CMD ${JSON.stringify(cmd)}`,
  );

  // 2. The build context.
  const leaks = MUST_STAY_OUT.filter((path) => !ignored(path));
  check(
    ".dockerignore keeps out",
    leaks.length === 0,
    leaks.length === 0
      ? MUST_STAY_OUT.map((path) => path.split("/")[0]).join(", ")
      : `not excluded: ${leaks.join(", ")}`,
  );
  const contextCopies = dockerfile.copies.filter((copy) => copy.from === undefined);
  const contextSources = contextCopies.flatMap((copy) => copy.sources);
  const badSources = contextSources.filter(
    (source) => !existsSync(join(ROOT, source)) || ignored(posix.normalize(source)),
  );
  check(
    "COPY from the context",
    contextSources.length > 0 && badSources.length === 0,
    badSources.length === 0
      ? contextSources.join(", ")
      : `missing or excluded by .dockerignore: ${badSources.join(", ")}`,
  );

  // 3. The build, from the context exactly as Docker would send it.
  const work = mkdtempSync(join(tmpdir(), "dsfetch-image-check-"));
  try {
    const context = join(work, "context");
    copyContext(ROOT, context, ignored, reincludedUnder(ignoreText));
    symlinkSync(join(ROOT, "node_modules"), join(context, "node_modules"), "dir");
    const packed = await run("npm", ["pack", "--json", "--pack-destination", work], {
      cwd: context,
    });
    let tarball: string | undefined;
    let packedFiles: string[] = [];
    if (packed.code === 0) {
      const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("["))) as Array<{
        filename: string;
        files: Array<{ path: string }>;
      }>;
      tarball = info === undefined ? undefined : join(work, info.filename);
      packedFiles = info?.files.map((file) => file.path) ?? [];
    }
    check(
      "build (npm pack runs prepare = tsc)",
      tarball !== undefined && existsSync(tarball),
      tarball === undefined ? tail(packed.stderr) : relative(work, tarball),
    );

    const buildStageInfo = dockerfile.stages[buildStage];
    const buildCopies = dockerfile.copies.filter(
      (copy) => copy.stage === final && copy.from === "build",
    );
    const inBuild = (path: string) =>
      join(context, posix.relative(buildStageInfo?.workdir ?? "/", path));
    const missingBuilt = buildCopies
      .flatMap((copy) => copy.sources)
      .filter((source) => !existsSync(inBuild(source)));
    check(
      "COPY --from=build",
      buildCopies.length > 0 && missingBuilt.length === 0,
      missingBuilt.length === 0
        ? buildCopies.map((copy) => `${copy.sources.join(" ")} → ${copy.destination}`).join(", ")
        : `missing after the build: ${missingBuilt.join(", ")}`,
    );

    // The entrypoint's script, traced back through the runtime stage's COPY to the build stage.
    // The first argument after `node` that is not one of node's own flags.
    const script = entrypoint?.slice(3).find((arg) => !arg.startsWith("-")) ?? "";
    const copy = buildCopies.find(
      (c) => script === c.destination || script.startsWith(`${c.destination}/`),
    );
    const built =
      copy?.sources[0] === undefined
        ? undefined
        : inBuild(posix.join(copy.sources[0], posix.relative(copy.destination, script)));
    const imports = built !== undefined && existsSync(built) ? relativeImports(built) : [];
    const missingImports = imports.filter((path) => !existsSync(path));
    check(
      "entrypoint file",
      built !== undefined && existsSync(built) && imports.length > 0 && missingImports.length === 0,
      built === undefined
        ? `${script} is not copied into the image`
        : `${script} ← ${relative(context, built)}, imports ${imports.map((path) => relative(context, path)).join(", ")}${missingImports.length > 0 ? ` (missing: ${missingImports.map((path) => relative(context, path)).join(", ")})` : ""}`,
    );
    const binFile = posix.relative("/app", script);
    check(
      "package contents",
      packedFiles.includes(binFile) &&
        packedFiles.includes("dist/cli/entry.js") &&
        !packedFiles.some((path) => path.startsWith("src/") || path.startsWith("test/")),
      `${packedFiles.length} files: ${binFile}, dist/…; no src/, test/`,
    );

    // 4. A production install of the packed package.
    if (tarball !== undefined) {
      const install = join(work, "install");
      mkdirp(install);
      writeFileSync(
        join(install, "package.json"),
        `${JSON.stringify({ name: "dsfetch-image-check", private: true })}\n`,
      );
      const installed = await run(
        "npm",
        ["install", "--omit=dev", "--no-audit", "--no-fund", "--no-package-lock", tarball],
        { cwd: install, timeoutMs: 10 * 60_000 },
      );
      const app = join(install, "node_modules", "dsfetch");
      check(
        "npm install --omit=dev <tarball>",
        installed.code === 0 && existsSync(app),
        installed.code === 0 ? relative(work, app) : tail(installed.stderr),
      );
      if (installed.code === 0) {
        const bin = join(app, "bin", "dsfetch.js");
        const version = await run(process.execPath, [bin, "version"], { cwd: install });
        check(
          "dsfetch version",
          version.code === 0 && version.stdout.trim() === pkg.version,
          `exit ${version.code}, printed ${JSON.stringify(version.stdout.trim())}, expected ${pkg.version}${tail(version.stderr, " ")}`,
        );
        const help = await run(process.execPath, [bin, "help"], { cwd: install });
        check(
          "dsfetch help",
          help.code === 0 && /Usage:/.test(help.stderr + help.stdout),
          help.code === 0 ? "exit 0, usage printed" : `exit ${help.code}${tail(help.stderr, " ")}`,
        );
        const dependencies = Object.keys(pkg.dependencies ?? {});
        const loader = `for (const name of ${JSON.stringify(dependencies)}) await import(name);`;
        const loaded = await run(process.execPath, ["--input-type=module", "-e", loader], {
          cwd: app,
        });
        check(
          "production dependencies load",
          loaded.code === 0,
          loaded.code === 0 ? dependencies.join(", ") : tail(loaded.stderr),
        );
        // A dev dependency may also be needed at run time by a production one (the AWS SDK
        // uses @smithy/signature-v4): only those outside the production closure are wrong here.
        const present = readdirRecursiveNames(join(install, "node_modules"));
        const needed = productionClosure(app);
        const devOnly = Object.keys(pkg.devDependencies ?? {}).filter(
          (name) => present.has(name) && !needed.has(name),
        );
        check(
          "no dev-only dependencies installed",
          devOnly.length === 0,
          devOnly.length === 0
            ? `none of ${Object.keys(pkg.devDependencies ?? {}).join(", ")} beyond what production needs`
            : devOnly.join(", "),
        );
      }
    }
  } finally {
    if (options.keep === true) log(`kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
  return results;
}

/** Copies what the build context holds: the repository minus .dockerignore's exclusions. */
/**
 * Whether a `!` rule of .dockerignore names something below the directory `path`
 * (`!scripts/bundle.ts` under `scripts`): Docker looks inside an excluded directory for those.
 */
function reincludedUnder(text: string): (path: string) => boolean {
  const reincluded = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line.startsWith("!"))
    .map((line) => posix.normalize(line.slice(1).trim()).replace(/^\/+/, ""));
  return (path) => reincluded.some((pattern) => pattern.startsWith(`${path}/`));
}

function copyContext(
  from: string,
  to: string,
  ignored: (path: string) => boolean,
  reincludedBelow: (path: string) => boolean,
): void {
  const walk = (relativeDir: string) => {
    for (const entry of readdirSync(join(from, relativeDir), { withFileTypes: true })) {
      const path = relativeDir === "" ? entry.name : `${relativeDir}/${entry.name}`;
      if (entry.isDirectory()) {
        // An excluded directory is skipped whole unless a `!` rule names a path below it.
        if (!ignored(path) || reincludedBelow(path)) walk(path);
      } else if (!ignored(path)) {
        mkdirp(dirname(join(to, path)));
        cpSync(join(from, path), join(to, path));
      }
    }
  };
  walk("");
}

function mkdirp(path: string): void {
  mkdirSync(path, { recursive: true });
}

function jsonArray(text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as unknown;
    return Array.isArray(value) && value.every((item) => typeof item === "string")
      ? value
      : undefined;
  } catch {
    return undefined; // shell form: not what we want
  }
}

/** The relative files a script imports (`import "../dist/x.js"`, `… from "./y.js"`). */
function relativeImports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const specifiers = [
    ...text.matchAll(/\bimport\s*(?:[^"';]*?\bfrom\s*)?["'](\.{1,2}\/[^"']+)["']/g),
  ];
  return specifiers.map((match) => resolve(dirname(file), match[1] ?? ""));
}

/** Every package name the installed package needs at run time, through its installed tree. */
function productionClosure(packageDir: string): Set<string> {
  const names = new Set<string>();
  const queue = [packageDir];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const dir = queue.pop() as string;
    if (seen.has(dir)) continue;
    seen.add(dir);
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as {
      dependencies?: Record<string, string>;
      optionalDependencies?: Record<string, string>;
    };
    for (const name of Object.keys({
      ...manifest.dependencies,
      ...manifest.optionalDependencies,
    })) {
      const found = locatePackage(name, dir);
      if (found === undefined) continue; // an optional dependency for another platform
      names.add(name);
      queue.push(found);
    }
  }
  return names;
}

/** Node's lookup: <dir>/node_modules/<name>, then each parent's. */
function locatePackage(name: string, from: string): string | undefined {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, "node_modules", name);
    if (existsSync(join(candidate, "package.json"))) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/** Package names present anywhere under a node_modules tree (scoped ones as @scope/name). */
function readdirRecursiveNames(nodeModules: string): Set<string> {
  const names = new Set<string>();
  const visit = (dir: string) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith(".")) continue;
      if (entry.name.startsWith("@")) {
        for (const scoped of readdirSync(join(dir, entry.name), { withFileTypes: true })) {
          if (!scoped.isDirectory()) continue;
          names.add(`${entry.name}/${scoped.name}`);
          visit(join(dir, entry.name, scoped.name, "node_modules"));
        }
      } else {
        names.add(entry.name);
        visit(join(dir, entry.name, "node_modules"));
      }
    }
  };
  visit(nodeModules);
  return names;
}

function tail(text: string, prefix = ""): string {
  const lines = text
    .trim()
    .split("\n")
    .filter((line) => line !== "" && !/^npm warn/.test(line));
  return lines.length === 0 ? "" : `${prefix}${lines.slice(-5).join(" | ")}`;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(
  command: string,
  args: readonly string[],
  options: { cwd: string; timeoutMs?: number },
): Promise<RunResult> {
  // The parent's npm lifecycle variables (npx vitest, npm run …) must not steer the child npm.
  const env: Record<string, string | undefined> = { ...process.env };
  for (const key of Object.keys(env)) {
    if (
      /^npm_(lifecycle_|package_|command$|execpath$|node_execpath$)/.test(key) ||
      key === "INIT_CWD"
    )
      delete env[key];
  }
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 5 * 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const results = await checkImage({
    keep: process.argv.includes("--keep"),
    log: (line) => console.log(line),
  });
  const failed = results.filter((result) => !result.ok);
  console.log(
    failed.length === 0
      ? `image check: all ${results.length} checks passed`
      : `image check: ${failed.length} of ${results.length} checks failed`,
  );
  process.exitCode = failed.length === 0 ? 0 : 1;
}
