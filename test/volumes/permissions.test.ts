import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeReadOnly } from "../../src/volumes/permissions.ts";

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) {
    chmodRecursively(root);
    rmSync(root, { recursive: true, force: true });
  }
});

function chmodRecursively(dir: string): void {
  try {
    chmodSync(dir, 0o755);
    chmodSync(join(dir, "sub"), 0o755);
  } catch {
    // Not there.
  }
}

/** A tree as our writers make it: files created 0444 / 0555 under `umask`, directories 0755. */
function tree(umask: number): string {
  const root = mkdtempSync(join(tmpdir(), "dsfetch-perm-"));
  roots.push(root);
  const old = process.umask(umask);
  try {
    mkdirSync(join(root, "sub"), 0o755);
    writeFileSync(join(root, "a.txt"), "a", { mode: 0o444 });
    writeFileSync(join(root, "sub", "run.sh"), "#!/bin/sh\n", { mode: 0o555 });
  } finally {
    process.umask(old);
  }
  return root;
}

const mode = (path: string): number => statSync(path).mode & 0o7777;

describe("makeReadOnly", () => {
  it("files created read-only under umask 022: directories become 0555, files stay 0444/0555", async () => {
    const root = tree(0o022);
    await makeReadOnly(root, { keepRoot: true, filesCreatedReadOnly: true });
    expect(mode(join(root, "sub"))).toBe(0o555);
    expect(mode(join(root, "a.txt"))).toBe(0o444);
    expect(mode(join(root, "sub", "run.sh"))).toBe(0o555);
    expect(mode(root)).toBe(0o700); // mkdtemp's, kept
  });

  it("files said to be created read-only are not even looked at (no stat per file)", async () => {
    const root = tree(0o022);
    chmodSync(join(root, "a.txt"), 0o664);
    await makeReadOnly(root, { keepRoot: true, filesCreatedReadOnly: true });
    expect(mode(join(root, "a.txt"))).toBe(0o664);
    expect(mode(join(root, "sub"))).toBe(0o555);
  });

  it("umask 077 took the team's read bits at creation: the walk gives them back (0400 -> 0444)", async () => {
    const root = tree(0o077);
    expect(mode(join(root, "a.txt"))).toBe(0o400);
    const old = process.umask(0o077);
    try {
      await makeReadOnly(root, { filesCreatedReadOnly: true });
    } finally {
      process.umask(old);
    }
    expect(mode(join(root, "a.txt"))).toBe(0o444);
    expect(mode(join(root, "sub", "run.sh"))).toBe(0o555);
    expect(mode(join(root, "sub"))).toBe(0o555);
    expect(mode(root)).toBe(0o555);
  });

  it("files from elsewhere (not created read-only) are made read-only by the walk", async () => {
    const root = tree(0o022);
    chmodSync(join(root, "a.txt"), 0o664);
    chmodSync(join(root, "sub", "run.sh"), 0o4775);
    await makeReadOnly(root);
    expect(mode(join(root, "a.txt"))).toBe(0o444);
    expect(mode(join(root, "sub", "run.sh"))).toBe(0o555);
    expect(mode(join(root, "sub"))).toBe(0o555);
  });

  it("gives the event loop a turn while it walks (the lock's refreshes), not only at its end", async () => {
    // A walk of a large tree on network storage held back the lock's refreshes past its stale
    // bound, and waiters took the lock over and downloaded again (review, 2026-12-06).
    const root = tree(0o022);
    for (let i = 0; i < 5; i++) mkdirSync(join(root, `d${i}`));
    const modesAtTimer: number[] = [];
    const timer = setTimeout(() => modesAtTimer.push(mode(join(root, "sub"))), 0);
    try {
      // Turns at every directory (the default: every 20 ms of walking).
      await makeReadOnly(root, { keepRoot: true, filesCreatedReadOnly: true }, 0);
    } finally {
      clearTimeout(timer);
    }
    // The timer ran during the walk, before the directories were made read-only.
    expect(modesAtTimer).toEqual([0o755]);
    expect(mode(join(root, "sub"))).toBe(0o555);
  });
});
