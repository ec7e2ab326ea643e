/**
 * The repository's root directory, for files the CLI loads by path at run time (guests/bin/...).
 * It is the nearest ancestor of this module's folder that holds package.json, so the answer is the
 * same from the sources (host/repo-root.ts) and from the build (dist/host/repo-root.js).
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; dirname(dir) !== dir; dir = dirname(dir)) {
    if (existsSync(join(dir, "package.json"))) return dir;
  }
  return dirname(here);
}

export const REPO_ROOT = findRoot();
/** The built guest ELFs (guests/bin/). */
export const GUEST_BIN = join(REPO_ROOT, "guests", "bin");
