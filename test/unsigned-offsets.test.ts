/**
 * Host offsets reach 4 GiB (shared-mem/layout.ts MAX_HOST_BYTES), so a typed-array or Atomics
 * index made from one must use an unsigned shift: `>> 2` turns offsets past 2 GiB negative, which
 * was issue 16's `Invalid atomic access index`. test/big-layout.test.ts runs such layouts; this
 * check keeps new code (and merges) from bringing the signed shift back in places those runs do
 * not reach. It reads the sources as text: a line that shifts a host offset by 2 or 3 with `>>`.
 */
import test from "ava";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT } from "./helpers/cli.ts";

const FOLDERS = ["shared-mem", "sync", "vcpu", "mirror", "hypervisor", "host"];
/** What names a host offset in this code base: layout fields (…Offset), hart bases, lock addresses, shared device state. */
const HOST_OFFSET = /Offset\b|hartBase|this\.base\b|\bbase\b|lockAddress|state\.offset|\(offset >> [23]\) \+ Slot/;
const SIGNED_SHIFT = /[^>]>>\s*[23]\b/;

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

test("no host offset is turned into an index with a signed shift", (t) => {
  const offenders: string[] = [];
  for (const file of FOLDERS.flatMap(sources)) {
    readFileSync(join(ROOT, file), "utf8").split("\n").forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, "");
      if (SIGNED_SHIFT.test(code) && HOST_OFFSET.test(code)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  t.deepEqual(offenders, [], "use >>> 2 (>>> 3) for host offsets: they run to 4 GiB");
});
