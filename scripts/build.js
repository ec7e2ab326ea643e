#!/usr/bin/env node
/**
 * `npm run build` (and `npm install`, through the `prepare` script): compile the runtime folders
 * with tsconfig.build.json into dist/, then write the manifest that lets bin/kmemvisor.js use
 * dist/ while it matches the sources (scripts/dist-manifest.js). Running JavaScript saves the
 * ~0.6 s tsx needs to load the TypeScript tree, in the main thread and again in each worker.
 *
 * The TypeScript compiler API is used instead of the tsc command so that each source file is
 * stat'ed just before the compiler reads it: an edit made while the build runs leaves dist/ stale.
 * A build with type errors writes no dist/ (the CLI then runs the sources); without typescript (a
 * production install) there is nothing to build, and that is not an error.
 */
import { rmSync } from "node:fs";
import { dirname, isAbsolute, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { DIST, MANIFEST, snapshot, writeManifest } from "./dist-manifest.js";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const started = performance.now();

let ts;
try {
  ts = (await import("typescript")).default;
} catch (e) {
  if (e?.code !== "ERR_MODULE_NOT_FOUND") throw e;
  console.log("kmemvisor build: typescript is not installed; no dist/, the CLI runs the sources through tsx");
  process.exit(0);
}

/** A path relative to the root with `/`, or undefined for files outside it or in node_modules. */
function ownFile(fileName) {
  const rel = relative(root, fileName);
  if (rel.startsWith("..") || isAbsolute(rel)) return undefined;
  const parts = rel.split(sep);
  return parts.includes("node_modules") ? undefined : parts.join("/");
}

rmSync(join(root, DIST), { recursive: true, force: true });

const configFiles = ["tsconfig.json", "tsconfig.build.json"];
const sources = snapshot(root, configFiles);
const formatHost = {
  getCanonicalFileName: (f) => f,
  getCurrentDirectory: () => root,
  getNewLine: () => "\n",
};
function fail(diagnostics) {
  console.error(ts.formatDiagnosticsWithColorAndContext(diagnostics, formatHost));
  console.error(`kmemvisor build: failed, no ${DIST}/ written (the CLI runs the sources through tsx)`);
  rmSync(join(root, DIST), { recursive: true, force: true });
  process.exit(1);
}

const config = ts.getParsedCommandLineOfConfigFile(join(root, "tsconfig.build.json"), undefined, {
  ...ts.sys,
  onUnRecoverableConfigFileDiagnostic: (d) => fail([d]),
});
if (config.errors.length > 0) fail(config.errors);

// Stat each file as the compiler asks for it, before it is read.
const host = ts.createCompilerHost(config.options);
const getSourceFile = host.getSourceFile;
const seen = new Map();
host.getSourceFile = (fileName, ...rest) => {
  const own = ownFile(fileName);
  if (own !== undefined && !seen.has(own)) seen.set(own, snapshot(root, [own])[own]);
  return getSourceFile.call(host, fileName, ...rest);
};

const program = ts.createProgram({ rootNames: config.fileNames, options: config.options, host });
const diagnostics = ts.getPreEmitDiagnostics(program);
if (diagnostics.length > 0) fail(diagnostics);
const emitted = program.emit();
if (emitted.emitSkipped || emitted.diagnostics.length > 0) fail(emitted.diagnostics);

let modules = 0;
for (const file of program.getSourceFiles()) {
  const own = ownFile(file.fileName);
  if (own === undefined) continue;
  sources[own] = seen.get(own) ?? [-1, -1];
  modules++;
}
writeManifest(root, sources);
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`kmemvisor build: ${modules} modules compiled to ${DIST}/ in ${seconds} s (${MANIFEST})`);
