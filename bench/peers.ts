// Setup of the peer tools the benchmarks compare dsfetch with (bench/session.ts). Every machine
// is fresh, so each function finds or installs its tool and returns its path, or the reason it
// is unavailable (the benchmark then prints "unavailable" in that row, never drops it).
//
//   s5cmd   `go install github.com/peak/s5cmd/v2@S5CMD_VERSION`, cached outside the repo in
//           ${DSFETCH_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/dsfetch}/s5cmd-<version>/s5cmd
//   rclone  Debian package `rclone` (apt-get install; apt-get update first when needed)
//   aws     the AWS CLI on PATH (a pyenv shim is resolved to the real script), else Debian `awscli`
//   time    GNU time (/usr/bin/time, Debian package `time`) for peak RSS

import { spawn, spawnSync } from "node:child_process";
import { accessSync, constants as fsConstants, statSync } from "node:fs";
import { mkdir, mkdtemp, rename, rm, writeFile } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { cacheRoot, findGo } from "../test/harness/minio-binary.ts";

/**
 * The pinned s5cmd release. `go list -m -versions github.com/peak/s5cmd/v2` is refused by the
 * module proxy reachable here (403 on the version list), so "latest" cannot be asked for;
 * v2.3.0 (2024-12-16) is the newest upstream release and resolves through the proxy.
 */
export const S5CMD_MODULE = "github.com/peak/s5cmd/v2";
export const S5CMD_VERSION = "v2.3.0";

export type Log = (line: string) => void;

export type PeerResult =
  | { ok: true; path: string; version: string; note?: string }
  | { ok: false; reason: string };

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first executable `name` on PATH. */
export function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

/** First line of `<bin> <args>` (stdout, else stderr), or undefined when it does not run. */
function versionLine(bin: string, args: string[]): string | undefined {
  const r = spawnSync(bin, args, { encoding: "utf8", timeout: 60_000 });
  if (r.error || r.status !== 0) return undefined;
  const text = `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
  return text
    .split("\n")
    .map((l) => l.trim())
    .find(Boolean);
}

/** Runs a command to completion, collecting the tail of its output. */
function run(
  bin: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; log?: Log; what?: string } = {},
): Promise<{ code: number | null; tail: string }> {
  return new Promise((resolve) => {
    const lines: string[] = [];
    const child = spawn(bin, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const onData = (chunk: Buffer): void => {
      for (const line of chunk.toString("utf8").split("\n")) if (line.trim()) lines.push(line);
      if (lines.length > 400) lines.splice(0, lines.length - 100);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const started = Date.now();
    const heartbeat = setInterval(() => {
      opts.log?.(
        `bench: still running ${opts.what ?? bin} (${Math.round((Date.now() - started) / 1000)}s)`,
      );
    }, 30_000);
    child.on("error", (e) => {
      clearInterval(heartbeat);
      resolve({ code: null, tail: String(e) });
    });
    child.on("close", (code) => {
      clearInterval(heartbeat);
      resolve({ code, tail: lines.slice(-20).join("\n") });
    });
  });
}

function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/**
 * `apt-get install -y <pkg>`, with `apt-get update` first when the package is unknown or the
 * first install fails (fresh machines have no package lists).
 */
async function aptInstall(
  pkg: string,
  log: Log,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const aptGet = which("apt-get");
  if (!aptGet)
    return { ok: false, reason: `not installed and there is no apt-get to install ${pkg}` };
  if (!isRoot())
    return { ok: false, reason: `not installed; \`apt-get install ${pkg}\` needs root` };
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  log(`bench: apt-get install -y ${pkg}…`);
  let r = await run(aptGet, ["install", "-y", "--no-install-recommends", pkg], { env, log });
  if (r.code === 0) return { ok: true };
  log(`bench: apt-get install ${pkg} failed; running apt-get update and trying again…`);
  const u = await run(aptGet, ["update"], { env, log, what: "apt-get update" });
  if (u.code !== 0) return { ok: false, reason: `apt-get update failed: ${lastLine(u.tail)}` };
  r = await run(aptGet, ["install", "-y", "--no-install-recommends", pkg], { env, log });
  return r.code === 0
    ? { ok: true }
    : { ok: false, reason: `apt-get install ${pkg} failed: ${lastLine(r.tail)}` };
}

function lastLine(text: string): string {
  return text.trim().split("\n").at(-1) ?? "";
}

export function s5cmdBinaryPath(): string {
  return join(cacheRoot(), `s5cmd-${S5CMD_VERSION}`, "s5cmd");
}

/** s5cmd built from source once per machine (about a minute), then reused. */
export async function ensureS5cmd(log: Log): Promise<PeerResult> {
  const target = s5cmdBinaryPath();
  const existing = isExecutableFile(target) ? versionLine(target, ["version"]) : undefined;
  if (existing) return { ok: true, path: target, version: existing };

  const go = findGo();
  if (!go) return { ok: false, reason: `not cached at ${target} and no Go toolchain found` };
  const root = cacheRoot();
  await mkdir(root, { recursive: true });
  const tmpBin = await mkdtemp(join(root, `s5cmd-${S5CMD_VERSION}.tmp-`));
  const spec = `${S5CMD_MODULE}@${S5CMD_VERSION}`;
  log(`bench: building s5cmd once per machine: ${go} install ${spec} → ${target}…`);
  try {
    const env = { ...process.env, GOBIN: tmpBin, CGO_ENABLED: "0", GO111MODULE: "on" };
    const built = join(tmpBin, "s5cmd");
    const r = await run(go, ["install", spec], {
      cwd: tmpBin, // outside any module
      env,
      log,
      what: `go install ${spec}`,
    });
    let how = "go install";
    if (r.code !== 0 || !isExecutableFile(built)) {
      // `go install m@v` also asks the proxy for the module's version list (to report a
      // deprecation); a proxy that refuses that list (403 here) fails the install. Building the
      // same pinned version from a throwaway module needs no list and selects the same
      // dependency versions (s5cmd's own go.mod is the only requirement).
      log(
        `bench: go install failed (${lastLine(r.tail)}); building ${spec} from a temporary module`,
      );
      const fallback = await buildS5cmdInModule(go, tmpBin, built, env, log);
      if (!fallback.ok) {
        return {
          ok: false,
          reason: `go install ${spec} failed (${lastLine(r.tail)}) and so did the module build (${fallback.reason})`,
        };
      }
      how = "go build in a temporary module (go install was refused)";
    }
    await mkdir(join(root, `s5cmd-${S5CMD_VERSION}`), { recursive: true });
    await rename(built, target); // atomic: a reader sees no binary or a whole one
    log(`bench: built s5cmd ${S5CMD_VERSION} with ${how}: ${target}`);
  } finally {
    await rm(tmpBin, { recursive: true, force: true });
  }
  const version = versionLine(target, ["version"]);
  return version
    ? { ok: true, path: target, version }
    : { ok: false, reason: `built ${target} but \`s5cmd version\` fails` };
}

async function buildS5cmdInModule(
  go: string,
  dir: string,
  output: string,
  env: NodeJS.ProcessEnv,
  log: Log,
): Promise<{ ok: true } | { ok: false; reason: string }> {
  const mod = join(dir, "mod");
  await mkdir(mod);
  await writeFile(
    join(mod, "go.mod"),
    `module dsfetchbench/s5cmd\n\ngo 1.21\n\nrequire ${S5CMD_MODULE} ${S5CMD_VERSION}\n`,
  );
  await writeFile(
    join(mod, "tools.go"),
    `//go:build tools\n\npackage tools\n\nimport _ "${S5CMD_MODULE}"\n`,
  );
  const tidy = await run(go, ["mod", "tidy"], { cwd: mod, env, log, what: "go mod tidy" });
  if (tidy.code !== 0) return { ok: false, reason: `go mod tidy: ${lastLine(tidy.tail)}` };
  // The release's own ldflags (.goreleaser.yml), so `s5cmd version` names the version.
  const ldflags = `-s -w -X ${S5CMD_MODULE}/version.Version=${S5CMD_VERSION} -X ${S5CMD_MODULE}/version.GitCommit=module`;
  const build = await run(go, ["build", "-ldflags", ldflags, "-o", output, S5CMD_MODULE], {
    cwd: mod,
    env,
    log,
    what: `go build ${S5CMD_MODULE}`,
  });
  if (build.code !== 0 || !isExecutableFile(output)) {
    return { ok: false, reason: `go build: ${lastLine(build.tail)}` };
  }
  return { ok: true };
}

/** rclone from PATH, else the Debian package. */
export async function ensureRclone(log: Log): Promise<PeerResult> {
  let path = which("rclone");
  if (!path) {
    const installed = await aptInstall("rclone", log);
    if (!installed.ok) return { ok: false, reason: installed.reason };
    path = which("rclone");
    if (!path) return { ok: false, reason: "apt-get installed rclone but it is not on PATH" };
  }
  const version = versionLine(path, ["version"]);
  return version
    ? { ok: true, path, version }
    : { ok: false, reason: `${path} does not run (\`rclone version\` failed)` };
}

/**
 * The AWS CLI on PATH, else Debian's `awscli`. A pyenv shim is resolved with `pyenv which aws`
 * so that pyenv's own start-up (a bash script and a second exec) is not timed.
 */
export async function ensureAwsCli(log: Log): Promise<PeerResult> {
  let path = which("aws");
  let note: string | undefined;
  if (!path) {
    const installed = await aptInstall("awscli", log);
    if (!installed.ok) return { ok: false, reason: installed.reason };
    path = which("aws");
    if (!path) return { ok: false, reason: "apt-get installed awscli but `aws` is not on PATH" };
  }
  if (path.includes("/.pyenv/shims/")) {
    const pyenv = which("pyenv");
    const real = pyenv ? spawnSync(pyenv, ["which", "aws"], { encoding: "utf8" }) : undefined;
    const resolved = real?.status === 0 ? real.stdout.trim() : "";
    if (resolved && isExecutableFile(resolved)) {
      note = `pyenv shim ${path} resolved to ${resolved}`;
      path = resolved;
    }
  }
  const version = versionLine(path, ["--version"]);
  if (!version) return { ok: false, reason: `${path} does not run (\`aws --version\` failed)` };
  return note ? { ok: true, path, version, note } : { ok: true, path, version };
}

/** GNU time, for peak RSS (`-f %M`, KiB); installs Debian's `time` when missing. */
export async function ensureGnuTime(log: Log): Promise<PeerResult> {
  const fixed = "/usr/bin/time";
  let path = isExecutableFile(fixed) ? fixed : undefined;
  if (!path) {
    const installed = await aptInstall("time", log);
    if (!installed.ok) return { ok: false, reason: installed.reason };
    path = isExecutableFile(fixed) ? fixed : undefined;
    if (!path) return { ok: false, reason: "apt-get installed time but /usr/bin/time is missing" };
  }
  const probe = spawnSync(path, ["-f", "%M", "true"], { encoding: "utf8" });
  if (probe.status !== 0 || !/^\d+\s*$/m.test(probe.stderr ?? "")) {
    return { ok: false, reason: `${path} -f %M does not print a peak RSS` };
  }
  return { ok: true, path, version: versionLine(path, ["--version"]) ?? "GNU time" };
}
