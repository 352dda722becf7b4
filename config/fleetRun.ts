/**
 * What a fleet run shares with the program beyond the stack config. The sites a run leaves out are an input of the
 * run, not of the stack: tools/fleet.ts sets `FORGE_EDGE_SKIP_SITES` to the sites that did not answer its probe and
 * excludes their resources from the operation; the program (program.ts) plans the site waves without them. Kept out
 * of the program's modules so that the driver starts without loading the Pulumi SDK.
 */
export const SKIP_SITES_ENV = "FORGE_EDGE_SKIP_SITES";

/** The sites named in `FORGE_EDGE_SKIP_SITES` (comma-separated), each once. */
export function skippedSites(value: string | undefined): string[] {
  return [...new Set((value ?? "").split(",").map((s) => s.trim()))].filter((s) => s !== "");
}

/** The K3s API port on a server (components/k3sCluster.ts serves the provider from it). */
export const K3S_API_PORT = 6443;
