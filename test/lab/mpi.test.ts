import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown } from '../../src/lab/lab.js';
import { run } from '../../src/util/exec.js';
import type { CommandError } from '../../src/util/errors.js';
import { uniqueName } from '../helpers/names.js';

// `virt-cohort demo --workload mpi` as a user runs it, on a real lab: 4 disk-backed Debian guests
// (built from Debian's packages on first use) run an MPI stencil whose every rank starts with its
// neighbours on the other site (20 ms away); the manager gathers them while it runs. What is checked
// is the application's own account: it verifies its result and reports its time per iteration.
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
const name = uniqueName();
const log = join(tmpdir(), `${name}.log`);
const svg = join(tmpdir(), `${name}.svg`);

// Opt-in, not in `npm test`: Debian 12's QEMU 7.2 sometimes corrupts a TCG guest whose network is busy
// during a long pre-copy (docs/measurements.md), and MPI keeps the network busy. In the CI run of
// 2026-12-01 a rank died after its move between sites and the job failed, as the demo then says;
// in 3 of about 45 such moves that session a guest died (an oops, a reboot, a lost rank). A KVM host
// does not run that code.
// Run it with VIRT_COHORT_TEST_MPI=1 node --test dist/test/lab/mpi.test.js.
const optIn = process.env.VIRT_COHORT_TEST_MPI === '1';

describe(`an MPI job split across sites is gathered (lab ${name})`, {
  concurrency: 1,
  skip: !optIn && 'opt-in: VIRT_COHORT_TEST_MPI=1 (TCG guests can die in cross-site migrations, see the comment)',
}, () => {
  after(async () => {
    await labDown(name).catch(() => undefined);
    await rm(log, { force: true });
    await rm(svg, { force: true });
  });

  // The demo's target is at most 60 % (issue 14); gathered into site b after cross-site moves the job has
  // run at 53 - 55 % here, against 20 % when gathered elsewhere (docs/measurements.md#real-applications),
  // so this test asks for a clear gain (at most 75 %) rather than flaking on that margin.
  it('completes, verifies, and runs clearly faster once gathered', async () => {
    let out: string;
    try {
      out = await run(process.execPath, [CLI, 'demo', '--workload', 'mpi', '--name', name, '--period', '5', '--iters', '1500', '--log', log, '--svg', svg], {
        timeoutMs: 12 * 60_000,
      });
    } catch (err) {
      const e = err as CommandError;
      assert.fail(`the demo failed (${e.code}):\n${e.stdout}\n${e.stderr}\nlog: ${await readFile(log, 'utf8').catch(() => '')}`);
    }
    const said = `\n${out}`;
    assert.match(out, /vm2 \(\S+\) on b1/, `rank 1 starts on the other site${said}`);
    assert.match(out, /MPI job: verified iters=1500 /, said);
    const made = /migrations: (\d+) made, 0 failed/.exec(out);
    assert.ok(made && Number(made[1]) >= 1, `the manager migrated ranks${said}`);
    const t = /MPI job time per iteration: ([\d.]+) ms before the gathering, ([\d.]+) ms after/.exec(out);
    assert.ok(t, `the demo compares the job's time before and after${said}`);
    const [before, afterMs] = [Number(t[1]), Number(t[2])];
    assert.ok(afterMs <= 0.75 * before, `${afterMs} ms per iteration after against ${before} before${said}`);
    const inter = /inter-site traffic: ([\d.]+) % of VM-to-VM bytes before, ([\d.]+) % after/.exec(out);
    assert.ok(inter && Number(inter[1]) > 50 && Number(inter[2]) < 2, `inter-site share falls${said}`);
  });
});
