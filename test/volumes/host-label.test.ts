// Processes in other PID namespaces on the same host (two containers of one pod, pods with
// hostNetwork): a pid is checked for life only within its own namespace.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cleanAbandonedAttempts, isProcessAlive } from "../../src/volumes/cleanup.ts";
import { hostLabel } from "../../src/volumes/host-label.ts";
import { locationIn } from "../../src/volumes/layout.ts";
import { BIRTH_PROBE_NAME } from "../../src/volumes/occupant.ts";
import { activeLeases } from "../../src/volumes/usage.ts";

const root = mkdtempSync(join(tmpdir(), "dsfetch-host-label-"));
const children: ChildProcess[] = [];

afterAll(() => {
  for (const child of children) child.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
});

describe("host label", () => {
  it("names the PID namespace and the boot beside the host name", () => {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").replaceAll("-", "");
    expect(hostLabel()).toMatch(/^[A-Za-z0-9_-]{1,40}-ns\d+-b[0-9a-f]{12}$/);
    expect(hostLabel().endsWith(`-b${boot.slice(0, 12)}`)).toBe(true);
  });

  it("a live job's lease taken in another PID namespace of this host is in use here (not judged by a pid of ours)", async () => {
    const location = locationIn(join(root, "data"), "shared-set");
    const usage = new URL("../../src/volumes/usage.ts", import.meta.url).href;
    const layout = new URL("../../src/volumes/layout.ts", import.meta.url).href;
    const script = [
      `const { takeLease } = await import(${JSON.stringify(usage)});`,
      `const { locationIn } = await import(${JSON.stringify(layout)});`,
      `await takeLease(locationIn(${JSON.stringify(join(root, "data"))}, "shared-set"));`,
      "console.log('leased ' + process.pid);",
      "setInterval(() => {}, 1000);",
    ].join(" ");
    // A container's own PID namespace (root: unshare), where the job gets a pid that is no
    // process of ours (below pid_max, which bounds the namespace's pids on older kernels).
    const pidMax = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8"));
    let target = Math.floor(pidMax / 2);
    while (isProcessAlive(target) || isProcessAlive(target - 1)) target += 1;
    const job = spawn(
      "unshare",
      [
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        "sh",
        "-c",
        'echo "$2" > /proc/sys/kernel/ns_last_pid && "$0" --input-type=module -e "$1"; true',
        process.execPath,
        script,
        String(target - 1),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    children.push(job);
    let out = "";
    job.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
    });
    await expect
      .poll(() => out, { timeout: 20_000, message: "unshare --pid (root) started no job" })
      .toContain("leased");
    expect(out).toContain(`leased ${target}`);
    const users = await activeLeases(location);
    expect(users).toHaveLength(1);
    expect(users[0]).toMatch(new RegExp(` pid ${target}$`));
    expect(users[0]).not.toContain(hostLabel());
  });

  it("a lease of another boot (another machine) with this host name and PID namespace is judged by its age, not by a pid here", async () => {
    const location = locationIn(join(root, "boot"), "set");
    const dir = join(location.metaDir, "leases", "set");
    mkdirSync(dir, { recursive: true });
    const otherBoot = hostLabel().replace(/-b[0-9a-f]{12}$/, "-b000000000000");
    expect(otherBoot).not.toBe(hostLabel());
    let pid = 999_999_999;
    while (isProcessAlive(pid)) pid -= 1;
    writeFileSync(join(dir, `${otherBoot}.${pid}.aaaaaaaa`), "");
    expect(await activeLeases(location)).toEqual([`${otherBoot} pid ${pid}`]);
    expect(readdirSync(dir)).toHaveLength(1);
  });

  it("the clean-up removes a birth-time probe left by a dead process, not a live one's", async () => {
    const location = locationIn(join(root, "probes"), "set");
    const dead = join(location.tmpDir, `${BIRTH_PROBE_NAME}.${hostLabel()}.999999999.AbCdEf`);
    const live = join(location.tmpDir, `${BIRTH_PROBE_NAME}.${hostLabel()}.${process.pid}.GhIjKl`);
    for (const dir of [dead, live]) mkdirSync(dir, { recursive: true });
    await cleanAbandonedAttempts(location, Number.POSITIVE_INFINITY);
    expect(readdirSync(location.tmpDir)).toEqual([live.slice(location.tmpDir.length + 1)]);
  });
});
