/**
 * The e2e suites' site fixture: a temporary dir, a simulated site in it (site.ts) and a stack of the forge-edge
 * program pointed at that site (engine.ts), opened before a suite's tests and torn down after them.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { run } from "../program";
import { EngineStack, openStack } from "./engine";
import { ConfigEntry, Site, SiteOptions, startSite } from "./site";

export interface SiteFixture {
  /** The suite's temporary dir: the site's files and the stack's state. */
  dir: string;
  site: Site;
  es: EngineStack;
}

export interface SiteFixtureOptions extends Omit<SiteOptions, "dir"> {
  /** Names the temporary dir, `forge-e2e-<name>-XXXXXX`, and (unless stackName is given) the stack. */
  name: string;
  stackName?: string;
  /** The stack's configuration, from the site's. Default: `site.config`. */
  config?: (site: Site) => Record<string, ConfigEntry>;
  /** Runs once the site and the stack are up: take the fixture, adjust the stack's config, deploy. */
  ready?: (f: SiteFixture) => Promise<void> | void;
  /** Runs first after the suite's tests: report measurements, remove what the suite added. */
  beforeStop?: () => Promise<void> | void;
  /** `pulumi destroy` before the site stops (a failure is logged, not thrown). Default false. */
  destroy?: boolean;
  /** When this environment variable is set, the after hook does nothing: the site keeps running, its dir stays. */
  keepIfEnv?: string;
}

/**
 * Registers the suite's before hook (mkdtemp, startSite, openStack, then `ready`) and after hook (`beforeStop`,
 * destroy if asked, stop the site, remove the dir). Call it in the `describe` callback: `useSite(this, {...})`.
 */
export function useSite(suite: Mocha.Suite, opts: SiteFixtureOptions): void {
  const { name, stackName, config, ready, beforeStop, destroy, keepIfEnv, ...siteOpts } = opts;
  let dir: string | undefined;
  let site: Site | undefined;
  let es: EngineStack | undefined;

  suite.beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `forge-e2e-${name}-`));
    site = await startSite({ ...siteOpts, dir });
    es = await openStack({
      stackName: stackName ?? name,
      dir,
      config: config?.(site) ?? site.config,
      program: async () => run(),
    });
    await ready?.({ dir, site, es });
  });

  suite.afterAll(async () => {
    if (keepIfEnv !== undefined && process.env[keepIfEnv]) return;
    await beforeStop?.();
    if (destroy) await es?.stack.destroy().catch((e: Error) => console.error(e.message));
    await site?.stop();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });
}
