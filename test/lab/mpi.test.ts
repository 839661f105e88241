import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown } from '../../src/lab/lab.js';
import { run } from '../../src/util/exec.js';
import type { CommandError } from '../../src/util/errors.js';
import { uniqueName } from '../helpers/names.js';

// `virt-cohort demo --workload mpi --vms 2` as a user runs it, on a real lab: 2 disk-backed Debian guests
// (built from Debian's packages on first use) run an MPI stencil whose every rank starts with its
// neighbours on the other site (20 ms away); the manager gathers them while it runs. What is checked
// is the application's own account: it verifies its result and reports its time per iteration.
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
const names: string[] = [];
const log = (name: string) => join(tmpdir(), `${name}.log`);
const svg = (name: string) => join(tmpdir(), `${name}.svg`);

// Two ranks, one per site, so that one cross-site migration gathers them. Under TCG, Debian 12's QEMU 7.2
// sometimes corrupts a guest migrated while its network is busy (docs/measurements.md): in about 45 such
// moves a guest died 3 times (an oops, a reboot, a lost rank), and the demo then says "a guest failed, not
// the job" and names the signs. Only then does this test run the demo once more, on a fresh lab; any other
// failure, or a second one, fails it. A KVM host does not run that code.
const ATTEMPTS = 2;

async function demo(name: string): Promise<{ out: string; failed?: string }> {
  names.push(name);
  try {
    const out = await run(process.execPath, [CLI, 'demo', '--workload', 'mpi', '--vms', '2', '--name', name, '--period', '5', '--iters', '1500', '--log', log(name), '--svg', svg(name)], {
      timeoutMs: 10 * 60_000,
    });
    return { out };
  } catch (err) {
    const e = err as CommandError;
    return { out: `${e.stdout ?? ''}`, failed: `the demo failed (${e.code}):\n${e.stdout}\n${e.stderr}\nlog: ${await readFile(log(name), 'utf8').catch(() => '')}` };
  }
}

describe('an MPI job split across sites is gathered', { concurrency: 1 }, () => {
  after(async () => {
    for (const name of names) {
      await labDown(name).catch(() => undefined);
      await rm(log(name), { force: true });
      await rm(svg(name), { force: true });
    }
  });

  // The demo's target is at most 60 % (issue 14); gathered into site b after cross-site moves the job has
  // run at 53 - 55 % here, against 20 % when gathered elsewhere (docs/measurements.md#real-applications),
  // so this test asks for a clear gain (at most 75 %) rather than flaking on that margin.
  it('completes, verifies, and runs clearly faster once gathered', async (t) => {
    let r = await demo(uniqueName());
    for (let attempt = 2; attempt <= ATTEMPTS && r.failed && r.out.includes('a guest failed, not the job'); attempt++) {
      t.diagnostic(`attempt ${attempt - 1}: a guest failed, not the job; running the demo again on a fresh lab:\n${r.out}`);
      r = await demo(uniqueName());
    }
    if (r.failed) assert.fail(r.failed);
    const out = r.out;
    const said = `\n${out}`;
    assert.match(out, /vm2 \(\S+\) on b1/, `rank 1 starts on the other site${said}`);
    assert.match(out, /MPI job: verified iters=1500 /, said);
    const made = /migrations: (\d+) made, 0 failed/.exec(out);
    assert.ok(made && Number(made[1]) >= 1, `the manager migrated ranks${said}`);
    const tm = /MPI job time per iteration: ([\d.]+) ms before the gathering, ([\d.]+) ms after/.exec(out);
    assert.ok(tm, `the demo compares the job's time before and after${said}`);
    const [before, afterMs] = [Number(tm[1]), Number(tm[2])];
    assert.ok(afterMs <= 0.75 * before, `${afterMs} ms per iteration after against ${before} before${said}`);
    const inter = /inter-site traffic: ([\d.]+) % of VM-to-VM bytes before, ([\d.]+) % after/.exec(out);
    assert.ok(inter && Number(inter[1]) > 50 && Number(inter[2]) < 2, `inter-site share falls${said}`);
  });
});
