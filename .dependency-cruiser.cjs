/**
 * The layers of kmemvisor, lowest first. A module may import its own layer and the layers below
 * it, never one above or beside: each layer can be read (and tested) knowing only those beneath
 * it. `npm test` checks this (`npm run lint:layers`).
 *
 *   shared-mem  the shared-memory layout and vocabulary: what lives where, access widths, DMA
 *   sync        locks, mailboxes, pause gates, hart signals: how threads coordinate
 *   vcpu        one hart: decoder, semantics, interpreter, translator, MMU, TLB, CSRs
 *   mirror      the copies: policies, recovery, scrubbing, injection, DMA into every copy
 *   hypervisor  the machine: devices, boot, ELF, device tree, the run loop, hart workers
 *   host        the command line, the stress tester, the differential tester
 *
 * vcpu and mirror sit side by side on sync: neither imports the other (the engine's mirror store
 * is emitted from the layout's offsets, and the mirror never needs a hart).
 */
const BELOW = {
  "shared-mem": [],
  sync: ["shared-mem"],
  vcpu: ["shared-mem", "sync"],
  mirror: ["shared-mem", "sync"],
  hypervisor: ["shared-mem", "sync", "vcpu", "mirror"],
  host: ["shared-mem", "sync", "vcpu", "mirror", "hypervisor"],
};
const LAYERS = Object.keys(BELOW);

/**
 * Known crossings, each to be removed (issue 18); a new one fails the check. The differential
 * tester assembles its programs with the tests' assembler, which is to become a module of its own.
 */
const KNOWN_TEST_CODE_USERS = ["^host/difftest\\.ts$", "^host/difftest-loops\\.ts$"];

const forbidden = LAYERS.filter((layer) => LAYERS.length - 1 > BELOW[layer].length).map((layer) => ({
  name: `${layer}-imports-above`,
  comment: `${layer}/ may import only ${[layer, ...BELOW[layer]].join(", ")}`,
  severity: "error",
  from: { path: `^${layer}/` },
  to: { path: `^(${LAYERS.filter((l) => l !== layer && !BELOW[layer].includes(l)).join("|")})/` },
}));

module.exports = {
  forbidden: [
    ...forbidden,
    {
      name: "no-test-code-in-product",
      comment: "the machine and its tools must not import test helpers",
      severity: "error",
      from: { path: `^(${LAYERS.join("|")})/`, pathNot: KNOWN_TEST_CODE_USERS },
      to: { path: "^test/" },
    },
    {
      name: "no-circular",
      severity: "error",
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: [".ts", ".mjs", ".js"] },
  },
};
