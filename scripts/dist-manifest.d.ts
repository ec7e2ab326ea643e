// Types of scripts/dist-manifest.js (plain JavaScript so that bin/kmemvisor.js can load it without tsx).

/** Path (relative to the repository root, `/`-separated) → [mtime in ms, size in bytes]. */
export type Sources = Record<string, [number, number]>;

export declare const DIST: string;
export declare const MANIFEST: string;
export declare const DIST_CLI: string;
export declare function snapshot(root: string, files: readonly string[]): Sources;
export declare function writeManifest(root: string, sources: Sources): void;
export declare function readManifest(root: string): Sources | undefined;
export declare function staleReason(root: string): string | null;
