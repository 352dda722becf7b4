/**
 * Root hooks for every mocha run: the run tracks every process it starts (harness/processes.ts) and fails at the
 * end if any is left, after killing them, so one suite's runaway process never skews or starves the next.
 */
import { describeProcesses, ProcessTracker } from "../harness/processes";

let tracker: ProcessTracker | undefined;

export const mochaHooks = {
  beforeAll(): void {
    tracker = ProcessTracker.start();
  },
  async afterAll(this: Mocha.Context): Promise<void> {
    this.timeout(30_000);
    if (tracker === undefined) return;
    const left = await tracker.reap();
    tracker.close();
    if (left.length > 0) {
      throw new Error(
        `${left.length} process(es) started by this test run were still running at its end (now killed):\n` +
          describeProcesses(left),
      );
    }
  },
};
