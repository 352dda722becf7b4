/** Air-gap files that exist: the engine's config source refuses a path to a missing one (config/pulumi.ts). */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

/** Empty files under a new temporary directory, at the given relative paths; the map of each to its full path. */
export function existingFiles<T extends Record<string, string | string[]>>(relative: T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-airgap-"));
  const make = (rel: string) => {
    const full = path.join(dir, rel);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    fs.writeFileSync(full, "");
    return full;
  };
  return Object.fromEntries(
    Object.entries(relative).map(([k, v]) => [k, Array.isArray(v) ? v.map(make) : make(v)]),
  ) as T;
}
