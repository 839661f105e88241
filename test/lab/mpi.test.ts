import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DemoRuns } from '../helpers/demo.js';

// `virt-cohort demo --workload mpi --vms 2` as a user runs it, on a real lab: 2 disk-backed Debian guests
// (built from Debian's packages on first use), one per site (20 ms apart), run an MPI stencil; the
// manager gathers them while it runs. What is checked is the application's own account: it verifies its
// result and reports its time per iteration. Two ranks, so that one cross-site migration gathers them
// (see DemoRuns for the one retry, when a guest rather than the job failed).
const demos = new DemoRuns();

describe('an MPI job split across sites is gathered', { concurrency: 1 }, () => {
  after(() => demos.cleanup());

  // The demo's target (issue 14): at most 60 % of the split time once gathered. Two ranks ran at 5 % of it in CI
  // (94.9 -> 4.4 ms); the worst seen, four ranks gathered into site b after moves between sites, 53 - 56 %
  // (docs/measurements.md#real-applications).
  it('completes, verifies, and runs in at most 60 % of its split time once gathered', async (t) => {
    const out = await demos.run(t, ['--workload', 'mpi', '--vms', '2', '--period', '5', '--iters', '1500']);
    const said = `\n${out}`;
    assert.match(out, /vm2 \(\S+\) on b1: Debian, rank 1 of the MPI job vm1 launches/, `rank 1 starts on the other site${said}`);
    assert.match(out, /MPI job: verified iters=1500 /, said);
    const made = /migrations: (\d+) made, 0 failed/.exec(out);
    assert.ok(made && Number(made[1]) >= 1, `the manager migrated ranks${said}`);
    const tm = /MPI job time per iteration: ([\d.]+) ms before the gathering, ([\d.]+) ms after/.exec(out);
    assert.ok(tm, `the demo compares the job's time before and after${said}`);
    const [before, afterMs] = [Number(tm[1]), Number(tm[2])];
    assert.ok(afterMs <= 0.6 * before, `${afterMs} ms per iteration after against ${before} before${said}`);
    const inter = /inter-site traffic: ([\d.]+) % of VM-to-VM bytes before, ([\d.]+) % after/.exec(out);
    assert.ok(inter && Number(inter[1]) > 50 && Number(inter[2]) < 2, `inter-site share falls${said}`);
  });
});
