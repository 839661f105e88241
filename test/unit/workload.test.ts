import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MpiWatch } from '../../src/lab/workload.js';

// The demo's account of an MPI job comes from the launcher's console as the guest writes it:
// lines arrive in pieces, and the job ends verified, failed, or with mpirun's exit status.
describe('MpiWatch reads the stencil from its console', () => {
  let dir: string;
  const file = async (text: string) => {
    dir ??= await mkdtemp(join(tmpdir(), 'vc-mpi-'));
    const f = join(dir, `${Math.random()}.log`);
    await writeFile(f, text);
    return f;
  };
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('reads reports once each, also when a line is still being written', async () => {
    const f = await file('[    0.02] ACPI\nVCGUEST up name=vm1\nVCMPI start ranks=4 cells=65536\nVCMPI iter=20 ranks=4 ms_per_iter=101.5 residual=1e-3\nVCMPI iter=40 ranks=4 ms_');
    const w = new MpiWatch(f);
    await w.poll();
    assert.deepEqual(
      w.reports.map((r) => [r.iter, r.msPerIter]),
      [[20, 101.5]],
    );
    await appendFile(f, 'per_iter=99.5 residual=1e-3\n');
    await Promise.all([w.poll(), w.poll()]);
    assert.deepEqual(
      w.reports.map((r) => [r.iter, r.msPerIter]),
      [
        [20, 101.5],
        [40, 99.5],
      ],
    );
    assert.equal(w.end, undefined);
    assert.equal(w.latest()?.iter, 40);
  });

  it('ends verified, or failed on a wrong result, an mpirun error or a guest error', async () => {
    const cases: [string, boolean | undefined][] = [
      ['VCMPI iter=20 ranks=2 ms_per_iter=5 residual=1\nVCMPI verified iters=20 checksum=1 seconds=0.1\nVCMPI exit status=0\n', true],
      ['VCMPI FAILED cell=7 distributed=0.5 serial=0.25\nVCMPI exit status=1\n', false],
      ['VCMPI error: rank 10.1.200.2 never answered ssh\n', false],
      ['VCMPI exit status=137\n', false],
      ['VCGUEST error: cannot mount the config disk /dev/vdb\n', false],
      ['VCMPI exit status=0\n', undefined],
    ];
    for (const [text, ok] of cases) {
      const w = new MpiWatch(await file(text));
      await w.poll();
      assert.equal(w.end?.ok, ok, text);
    }
  });

  it('gives up waiting at its deadline', async () => {
    const w = new MpiWatch(await file('VCMPI start ranks=2\n'), 20);
    assert.equal(await w.finished(100), false);
  });

  it('takes the median of the reports read within a window', async () => {
    const w = new MpiWatch(await file(''));
    w.reports.push(
      { iter: 20, msPerIter: 100, at: 1 },
      { iter: 40, msPerIter: 120, at: 2 },
      { iter: 60, msPerIter: 20, at: 5 },
      { iter: 80, msPerIter: 22, at: 6 },
      { iter: 100, msPerIter: 30, at: 7 },
    );
    assert.equal(w.medianMs(0, 3), 110);
    assert.equal(w.medianMs(5, Number.POSITIVE_INFINITY), 22);
    assert.equal(w.medianMs(8, 9), undefined);
  });
});
