// Run by read-only-walk-memory.test.ts under a small heap limit: makes a tree read-only and
// prints the heap's size afterwards, in MiB.
//
//   node --max-old-space-size=24 test/volumes/read-only-walk-memory-child.ts <root>
import { getHeapStatistics } from "node:v8";
import { makeReadOnly } from "../../src/volumes/permissions.ts";

const [root] = process.argv.slice(2);
if (root === undefined) throw new Error("usage: read-only-walk-memory-child.ts <root>");
await makeReadOnly(root, { keepRoot: true });
process.stdout.write(`${Math.round(getHeapStatistics().total_heap_size / 2 ** 20)}\n`);
