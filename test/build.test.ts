/**
 * The build (scripts/build.js → dist/) and bin/kmemvisor.js's choice between dist/ and the sources:
 * the freshness check on a fake tree, then the CLI end to end in a copy of the repository whose
 * node_modules lacks tsx, so that a run can only succeed from dist/ (hart and translator worker
 * threads included); a changed source file must send the CLI back to the sources.
 *
 * The copy gets the repository's dist/ when that is fresh (as after `npm install` or `npm ci`,
 * whose `prepare` script builds it) with a manifest re-recorded for the copied files, which are
 * identical; otherwise the copy is built with scripts/build.js (some seconds of tsc).
 */
import test from "ava";
import {
  appendFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DIST_CLI, MANIFEST, readManifest, snapshot, staleReason, writeManifest } from "../scripts/dist-manifest.js";
import { REPO_ROOT } from "../host/repo-root.ts";
import { EXPECTED, GUESTS, ROOT, run, type Completed } from "./helpers/cli.ts";

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `kmemvisor-${name}-`));
  dirs.push(dir);
  return dir;
}

/** Moves a file's mtime by `ms` (its content stays). */
function shiftMtime(path: string, ms: number): void {
  const s = statSync(path);
  utimesSync(path, s.atime, new Date(s.mtimeMs + ms));
}

// --- the freshness check -------------------------------------------------------------------------

function fakeBuild(): { root: string; files: string[] } {
  const root = tempDir("fake-build");
  const files = ["tsconfig.json", "host/cli.ts", "vcpu/a.ts", "vcpu/entry.mjs", "test/helpers/asm.ts"];
  for (const file of [...files, DIST_CLI]) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), `// ${file}\n`);
  }
  writeManifest(root, snapshot(root, files));
  return { root, files };
}

test("a build is fresh until a recorded source changes, moves back in time, grows or is deleted", (t) => {
  const { root } = fakeBuild();
  t.is(staleReason(root), null);

  shiftMtime(join(root, "vcpu/a.ts"), 1000);
  t.regex(staleReason(root) ?? "", /vcpu\/a\.ts changed/);
  writeManifest(root, snapshot(root, Object.keys(readManifest(root)!)));
  t.is(staleReason(root), null, "rebuilt");

  shiftMtime(join(root, "vcpu/entry.mjs"), -60_000);
  t.regex(staleReason(root) ?? "", /vcpu\/entry\.mjs changed/, "older than the build counts too (a restored copy)");
  writeManifest(root, snapshot(root, Object.keys(readManifest(root)!)));
  t.is(staleReason(root), null);

  // Same mtime, other size: an edit within the mtime's resolution.
  const asm = join(root, "test/helpers/asm.ts");
  const before = statSync(asm);
  writeFileSync(asm, "// edited outside the runtime folders, but imported by them\n");
  utimesSync(asm, before.atime, before.mtime);
  const after = statSync(asm);
  if (after.mtimeMs === before.mtimeMs) t.regex(staleReason(root) ?? "", /asm\.ts changed/);
  else t.not(staleReason(root), null);

  writeManifest(root, snapshot(root, Object.keys(readManifest(root)!)));
  unlinkSync(join(root, "host/cli.ts"));
  t.regex(staleReason(root) ?? "", /host\/cli\.ts was deleted/);
});

test("no manifest, a corrupt manifest or no dist/host/cli.js: not fresh", (t) => {
  const { root } = fakeBuild();
  unlinkSync(join(root, DIST_CLI));
  t.regex(staleReason(root) ?? "", /cli\.js missing/);
  writeFileSync(join(root, DIST_CLI), "");
  writeFileSync(join(root, MANIFEST), "{ not json");
  t.regex(staleReason(root) ?? "", /no build/);
  unlinkSync(join(root, MANIFEST));
  t.regex(staleReason(root) ?? "", /no build/);
  writeManifest(root, {});
  t.regex(staleReason(root) ?? "", /no sources/);
});

test("the repository root is found from the sources", (t) => {
  t.is(REPO_ROOT, ROOT);
});

// --- the CLI from dist/ and back to the sources --------------------------------------------------

const MARKER = "[build.test: running dist]";

/** A copy of the repository with a built dist/ (marked) and a node_modules without tsx. */
async function builtCopy(t: { log: (...values: unknown[]) => void }): Promise<string> {
  const copy = tempDir("build-copy");
  const config = JSON.parse(readFileSync(join(ROOT, "tsconfig.build.json"), "utf8")) as { include: string[] };
  for (const entry of [...config.include, "test/helpers", "bin", "scripts", "package.json", "tsconfig.json", "tsconfig.build.json"]) {
    cpSync(join(ROOT, entry), join(copy, entry), { recursive: true });
  }
  symlinkSync(join(ROOT, "guests"), join(copy, "guests"));
  mkdirSync(join(copy, "node_modules"));
  for (const name of readdirSync(join(ROOT, "node_modules"))) {
    if (name !== "tsx") symlinkSync(join(ROOT, "node_modules", name), join(copy, "node_modules", name));
  }
  const recorded = readManifest(ROOT);
  if (staleReason(ROOT) === null && recorded) {
    for (const file of Object.keys(recorded)) cpSync(join(ROOT, file), join(copy, file));
    cpSync(join(ROOT, "dist"), join(copy, "dist"), { recursive: true });
    writeManifest(copy, snapshot(copy, Object.keys(recorded)));
  } else {
    t.log(`the repository's dist/ is not fresh (${staleReason(ROOT)}): building the copy`);
    const build = await run(process.execPath, [join(copy, "scripts", "build.js")], { cwd: copy, killAfterMs: 240_000 });
    if (build.status !== 0) throw new Error(`build failed: ${build.stdout}${build.stderr}`);
  }
  if (staleReason(copy) !== null) throw new Error(`the copy's build is not fresh: ${staleReason(copy)}`);
  appendFileSync(join(copy, DIST_CLI), `\nprocess.stderr.write(${JSON.stringify(MARKER + "\n")});\n`);
  return copy;
}

test("the built CLI runs guests (hart and translator threads too) without tsx; a changed source is never run stale", async (t) => {
  const copy = await builtCopy(t);
  const cli = (args: string[], env: Record<string, string> = {}): Promise<Completed> =>
    run(process.execPath, [join(copy, "bin", "kmemvisor.js"), ...args], {
      cwd: copy,
      env: { KMEMVISOR_NO_DIST: "", ...env },
      killAfterMs: 90_000,
    });
  const expected = (name: string) => readFileSync(join(EXPECTED, `${name}.out`), "latin1");
  const hello = join(GUESTS, "hello.elf");

  const fromDist = async (args: string[], output: string): Promise<Completed> => {
    const r = await cli(args);
    t.is(r.status, 0, `${args.join(" ")}: ${r.stderr}`);
    t.is(r.stdout, output, args.join(" "));
    t.true(r.stderr.includes(MARKER), `${args.join(" ")} ran dist/`);
    return r;
  };
  await fromDist(["run", hello], expected("hello"));
  await fromDist(["run", "--smp", "2", hello], expected("hello"));
  // A translator thread that fails goes unnoticed but for its statistics (harts interpret on), and
  // one that starts late on a loaded machine may miss a short guest: cpubound (0.3 G instructions,
  // not isa-test's 0.6 M), up to three tries.
  let pagesCompiled = 0;
  for (let attempt = 0; attempt < 3 && pagesCompiled === 0; attempt++) {
    const jit = await fromDist(["run", "--engine", "jit", "--json", join(GUESTS, "cpubound.elf")], expected("cpubound"));
    const stats = JSON.parse(jit.stderr.trim().split("\n").pop()!) as { harts: { jit: { pagesCompiled: number } }[] };
    pagesCompiled = stats.harts[0]!.jit.pagesCompiled;
  }
  t.true(pagesCompiled > 0, "the translator thread (dist/vcpu/translator-worker-entry.mjs) translated");
  // The default guest is found from dist/sync/ as from sync/ (guests/bin/race.elf of the repository).
  const stress = await cli(["stress", "--sync", "striped", "--iterations", "50", "--seed", "3", "--duration", "60"]);
  t.is(stress.status, 0, stress.stderr);
  t.true(stress.stderr.includes(MARKER));
  t.regex(stress.stdout, /counters agree/);

  // An edited source: the sources run (through tsx, which the copy gets now), not dist/.
  symlinkSync(join(ROOT, "node_modules", "tsx"), join(copy, "node_modules", "tsx"));
  shiftMtime(join(copy, "vcpu", "isa.ts"), 2000);
  t.regex(staleReason(copy) ?? "", /vcpu\/isa\.ts changed/);
  const stale = await cli(["run", hello]);
  t.is(stale.status, 0, stale.stderr);
  t.is(stale.stdout, expected("hello"));
  t.false(stale.stderr.includes(MARKER), "a stale dist/ is not run");

  // Fresh again; KMEMVISOR_NO_DIST=1 still runs the sources.
  writeManifest(copy, snapshot(copy, Object.keys(readManifest(copy)!)));
  t.true((await cli(["run", hello])).stderr.includes(MARKER));
  const forced = await cli(["run", hello], { KMEMVISOR_NO_DIST: "1" });
  t.is(forced.status, 0, forced.stderr);
  t.is(forced.stdout, expected("hello"));
  t.false(forced.stderr.includes(MARKER), "KMEMVISOR_NO_DIST=1 runs the sources");
});
