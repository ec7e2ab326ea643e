/**
 * The build manifest: which source files dist/ was compiled from, so that bin/kmemvisor.js runs
 * dist/ only while it matches the sources. Plain JavaScript (no tsx) and node:fs only, because
 * bin/kmemvisor.js loads it before it knows which of the two to run.
 *
 * scripts/build.js records every file of the compiled program (the runtime folders, whatever they
 * import from elsewhere, e.g. test/helpers/asm.ts, and the two tsconfig files) with its mtime and
 * size, each stat'ed just before the compiler read it. dist/ is fresh while every recorded file
 * still has exactly that mtime and size: an edit, a touch, a deletion or a restore from an older
 * copy all change one, and so does an edit made while the build ran. New files need no search: a
 * new module reaches the program only through an import, that is through an edit of a recorded
 * file. Checking is one small JSON read and one stat per file (~60): a few milliseconds.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The build's output folder, relative to the repository root. */
export const DIST = "dist";
/** The manifest, written last by a successful build. */
export const MANIFEST = join(DIST, ".build-manifest.json");
/** The CLI module bin/kmemvisor.js imports from dist/. */
export const DIST_CLI = join(DIST, "host", "cli.js");

/**
 * mtime (ms) and size of each file (paths relative to `root`, with `/`); a missing file gets
 * [-1, -1], which no file matches.
 */
export function snapshot(root, files) {
  const sources = {};
  for (const file of files) {
    const s = statSync(join(root, file), { throwIfNoEntry: false });
    sources[file] = s ? [s.mtimeMs, s.size] : [-1, -1];
  }
  return sources;
}

export function writeManifest(root, sources) {
  writeFileSync(join(root, MANIFEST), JSON.stringify({ version: 1, sources }, null, 1) + "\n");
}

/** The recorded sources of the build in `root`, or undefined without a (readable) manifest. */
export function readManifest(root) {
  try {
    const manifest = JSON.parse(readFileSync(join(root, MANIFEST), "utf8"));
    return manifest?.version === 1 && typeof manifest.sources === "object" ? manifest.sources : undefined;
  } catch {
    return undefined;
  }
}

/** Why dist/ in `root` must not be run (a message naming the first difference), or null when it is fresh. */
export function staleReason(root) {
  const sources = readManifest(root);
  if (!sources) return `no build (${MANIFEST} missing or unreadable)`;
  if (!existsSync(join(root, DIST_CLI))) return `${DIST_CLI} missing`;
  const files = Object.keys(sources);
  if (files.length === 0) return "the manifest lists no sources";
  for (const file of files) {
    const [mtime, size] = sources[file];
    const s = statSync(join(root, file), { throwIfNoEntry: false });
    if (!s) return `${file} was deleted since the build`;
    if (s.mtimeMs !== mtime || s.size !== size) return `${file} changed since the build`;
  }
  return null;
}
