// Directories dsfetch makes in a team's storage appear with their mode and group at once
// (shared-dirs.ts makes each under a hidden name, then renames it into place). Made where
// they go and then chmod'ed, a teammate starting at the same moment met `.dsfetch` or `locks`
// 2700 under the first user's umask 077 and failed STORAGE or fell back (6 users at once:
// 13 of 120 runs; review, 2026-12-07). A heavy file (vitest.config.ts): the watcher spins on a
// core for a few seconds, beside which tests of 1-second stall bounds fail. Needs root: the
// two users are uids 64001 and 64002 of group 64000 (setpriv).
import { spawn, spawnSync } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { CLI_ENTRY, REPO_ROOT } from "../harness/cli.ts";
import { requireRoot } from "../harness/mount-namespace.ts";

const GROUP = 64000;
const ALICE = 64001;
const BOB = 64002;
let scratch: string;

beforeAll(async () => {
  requireRoot("two users of one group (setpriv) sharing a team's storage");
  scratch = await mkdtemp(join(tmpdir(), "dsfetch-team-race-"));
  await chmod(scratch, 0o755);
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

const octal = (mode: number) => (mode & 0o7777).toString(8);

/** Both users can read this checkout (a clone under /root could not). */
function usersCanRun(): boolean {
  const code = `require("fs").accessSync(${JSON.stringify(CLI_ENTRY)})`;
  const ids = ["--reuid", String(BOB), "--regid", String(GROUP), "--groups", String(GROUP)];
  return spawnSync("setpriv", [...ids, process.execPath, "-e", code]).status === 0;
}

it("directories appear with their mode: a teammate never meets one the umask made (6 users at once under 077 met .dsfetch 2700)", async (ctx) => {
  if (!usersCanRun()) {
    ctx.skip(`SKIPPED, not passed: uid ${BOB} cannot read ${CLI_ENTRY}`);
    return;
  }
  const roots = join(scratch, "appear");
  await mkdir(roots);
  const count = 150;
  for (let i = 0; i < count; i++) {
    await mkdir(join(roots, `r${i}`));
    await chown(join(roots, `r${i}`), 0, GROUP);
    await chmod(join(roots, `r${i}`), 0o2775);
  }
  const creator = join(roots, "creator.mjs");
  const sharedDirs = join(REPO_ROOT, "src", "volumes", "shared-dirs.ts");
  await writeFile(
    creator,
    `import { makeSharedDir } from ${JSON.stringify(sharedDirs)};
for (let i = 0; i < ${count}; i++) await makeSharedDir(${JSON.stringify(roots)} + "/r" + i + "/.dsfetch/locks");
`,
  );
  const watcher = join(roots, "watcher.mjs");
  // Bob makes a lock in each as soon as it is there: the umask's 2700 refused him (EACCES).
  await writeFile(
    watcher,
    `import { mkdirSync } from "node:fs";
let refused = 0;
const deadline = Date.now() + 30000;
for (let i = 0; i < ${count} && Date.now() < deadline; ) {
try { mkdirSync(${JSON.stringify(roots)} + "/r" + i + "/.dsfetch/locks/bob.lock"); i++; }
catch (error) { if (error.code === "EACCES") { refused++; i++; } else if (error.code !== "ENOENT") throw error; }
}
console.log(JSON.stringify({ refused }));
`,
  );
  const ids = (uid: number) => [
    "--reuid",
    String(uid),
    "--regid",
    String(GROUP),
    "--groups",
    String(GROUP),
  ];
  const bob = spawn("setpriv", [...ids(BOB), process.execPath, watcher], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  bob.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  const bobDone = new Promise<number | null>((resolve) => bob.on("exit", resolve));
  const alice = spawnSync(
    "setpriv",
    [...ids(ALICE), "sh", "-c", 'umask 077 && exec "$0" "$@"', process.execPath, creator],
    { encoding: "utf8", timeout: 60_000 },
  );
  expect(alice.status, alice.stderr).toBe(0);
  expect(await bobDone).toBe(0);
  expect(JSON.parse(out)).toEqual({ refused: 0 });
  expect(octal((await stat(join(roots, "r0", ".dsfetch", "locks"))).mode)).toBe("2775");
});
