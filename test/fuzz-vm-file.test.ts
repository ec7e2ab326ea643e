/**
 * Fuzzing of --vm files (issue 16): random JSON documents, and objects with real and junk keys
 * whose values have random types. The property: a well-typed file parses (or fails on a value with
 * the same checks as the command line's), an ill-typed one is exit 65 with one line that names the
 * file, the key and the type it expects; never an exception, a hang or memory growth. In-process,
 * through host/cli.ts's main with `checkOnly` (parse and read inputs, boot nothing).
 *
 * The types below are this test's own statement of the file format (README), independent of the
 * schema host/cli.ts derives from run's options: if the two drift apart, this fails.
 */
import test from "ava";
import fc from "fast-check";
import { join } from "node:path";
import { GUESTS, kmemvisorInProcess, scratchDirectory } from "./helpers/cli.ts";
import { fuzzParameters } from "./helpers/fuzz.ts";

const scratch = scratchDirectory("kmemvisor-fuzz-vm-");
test.after.always(() => scratch.remove());

const HELLO = join(GUESTS, "hello.elf");

type Kind = "string" | "number-or-string" | "boolean" | "strings" | "engine" | "sync";
const KEYS: Record<string, Kind> = {
  name: "string", kernel: "string", bios: "string", drive: "string", append: "string", mirror: "string",
  smp: "number-or-string", memory: "number-or-string", nmr: "number-or-string", timeout: "number-or-string",
  scrub: "number-or-string", spares: "number-or-string", jitThreshold: "number-or-string",
  stats: "boolean", json: "boolean", jitSupervisor: "boolean",
  inject: "strings", engine: "engine", sync: "sync",
};

function wellTyped(kind: Kind, value: unknown): boolean {
  switch (kind) {
    case "string": return typeof value === "string";
    case "number-or-string": return typeof value === "string" || typeof value === "number";
    case "boolean": return typeof value === "boolean";
    case "strings": return typeof value === "string" || (Array.isArray(value) && value.every((v) => typeof v === "string"));
    case "engine": return value === "interp" || value === "jit";
    case "sync": return ["none", "atomic", "striped", "global"].includes(value as string);
  }
}

/** Values of the right type, often plausible, and of every JSON type. */
const plausible: Record<Kind, fc.Arbitrary<unknown>> = {
  string: fc.oneof(fc.constantFrom(HELLO, "vm", "off", "ranges:0x80000000-0x80002000", "console=ttyS0", "", "/nonexistent"), fc.string({ maxLength: 10 })),
  "number-or-string": fc.oneof(fc.integer({ min: -3, max: 300 }), fc.constantFrom("2", "8M", "1.5", "0", "x"), fc.double({ noNaN: true, noDefaultInfinity: true })),
  boolean: fc.boolean(),
  strings: fc.oneof(fc.constantFrom("due@0.5:0x80000000", "random@2:7", "bad"), fc.array(fc.constantFrom("due@0.5:0x80000000", "sdc@1:0x80000100:3"), { maxLength: 3 })),
  engine: fc.constantFrom("interp", "jit"),
  sync: fc.constantFrom("none", "atomic", "striped", "global"),
};
const key = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...Object.keys(KEYS)) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom("__proto__", "constructor", "toString", "vm", "dumpdtb", "Kernel", "jit-threshold") },
);
const entry = fc.tuple(key, fc.oneof({ weight: 3, arbitrary: fc.constant(undefined) }, { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) }));
/** An object: each key with a plausible value of its type, or (undefined above) any JSON value. */
const config = fc.array(entry, { maxLength: 8 }).chain((entries) =>
  fc.tuple(...entries.map(([k, v]) => (v === undefined && Object.hasOwn(KEYS, k) ? plausible[KEYS[k]!] : fc.constant(v ?? null))))
    .map((values) => Object.fromEntries(entries.map(([k], i) => [k, values[i]]))),
);
const document = fc.oneof({ weight: 6, arbitrary: config.map((c) => JSON.stringify({ kernel: HELLO, ...c })) }, { weight: 1, arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)) }, { weight: 1, arbitrary: fc.string({ maxLength: 20 }) });

let files = 0;

test.serial("random --vm files: parsed, or one line naming the file (and the key and its type) with status 65", async (t) => {
  const heapBefore = process.memoryUsage().heapUsed;
  await fc.assert(
    fc.asyncProperty(document, async (text) => {
      const path = scratch.file(`vm-${files++}.json`, text);
      const r = await kmemvisorInProcess(["run", "--vm", path], { checkOnly: true });
      if (/\n\s+at /.test(r.stderr)) throw new Error(`a stack trace:\n${r.stderr}`);
      if (r.status === 0) {
        if (r.stderr !== "") throw new Error(`status 0 but stderr: ${r.stderr}`);
      } else {
        if (r.status !== 65 && r.status !== 66) throw new Error(`status ${r.status}: ${r.stderr}`);
        if (!r.stderr.startsWith("kmemvisor: ") || r.stderr.trimEnd().includes("\n")) throw new Error(`not one line: ${r.stderr}`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        if (r.status !== 65 || !r.stderr.includes("not valid JSON")) throw new Error(`bad JSON not reported: ${r.stderr}`);
        return;
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        if (r.status !== 65 || !r.stderr.includes("must be a JSON object")) throw new Error(`a non-object not reported: ${r.stderr}`);
        return;
      }
      const entries = Object.entries(parsed);
      const unknown = entries.filter(([k]) => !Object.hasOwn(KEYS, k));
      const illTyped = entries.filter(([k, v]) => Object.hasOwn(KEYS, k) && !wellTyped(KEYS[k]!, v));
      if (unknown.length > 0 || illTyped.length > 0) {
        // The file's own fault: 65, naming the file and one of the offending keys.
        if (r.status !== 65 || !r.stderr.includes(`VM configuration "${path}": `)) throw new Error(`not reported as the file's fault: ${r.stderr}`);
        const named = [...unknown, ...illTyped].some(([k]) => r.stderr.includes(`"${k}"`));
        if (!named) throw new Error(`no offending key named (${[...unknown, ...illTyped].map(([k]) => k).join(", ")}): ${r.stderr}`);
        if (unknown.length === 0 && !/must be (a string|a number or a string|true or false|one of|a string or an array)/.test(r.stderr)) {
          throw new Error(`no expected type said: ${r.stderr}`);
        }
      }
    }),
    { ...fuzzParameters(), timeout: 10_000 },
  );
  const growth = process.memoryUsage().heapUsed - heapBefore;
  t.true(growth < 256 << 20, `heap grew by ${(growth / 2 ** 20).toFixed(0)} MiB`);
});
