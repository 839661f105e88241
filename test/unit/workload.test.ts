import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { countError, gaps, guestWire, lastCounters } from '../../src/lab/counts.js';
import { JobWatch } from '../../src/lab/workload.js';
import { guestClock, kernelTrouble, parseReports } from '../../src/lab/console.js';

// The demo's account of an MPI job comes from the launcher's console as the guest writes it:
// lines arrive in pieces, and the job ends verified, failed, or with mpirun's exit status.
describe('JobWatch reads the stencil from its console', () => {
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
    const w = new JobWatch(f);
    await w.poll();
    assert.deepEqual(
      w.reports.map((r) => [r.count, r.ms]),
      [[20, 101.5]],
    );
    await appendFile(f, 'per_iter=99.5 residual=1e-3\n');
    await Promise.all([w.poll(), w.poll()]);
    assert.deepEqual(
      w.reports.map((r) => [r.count, r.ms]),
      [
        [20, 101.5],
        [40, 99.5],
      ],
    );
    assert.equal(w.end, undefined);
    assert.equal(w.latest()?.count, 40);
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
      const w = new JobWatch(await file(text));
      await w.poll();
      assert.equal(w.end?.ok, ok, text);
    }
  });

  it('gives up waiting at its deadline', async () => {
    const w = new JobWatch(await file('VCMPI start ranks=2\n'), [], 'mpi', 20);
    assert.equal(await w.finished(100), false);
    assert.equal(w.gaveUp, 'did not finish in 0 s');
  });

  it('gives up on a job that stops reporting, long before its deadline', async () => {
    const f = await file('VCMPI iter=20 ranks=2 ms_per_iter=100.0\n');
    const w = new JobWatch(f, [], 'mpi', 20);
    const writer = setInterval(() => void appendFile(f, 'VCMPI iter=40 ranks=2 ms_per_iter=100.0\n'), 30);
    const t0 = Date.now();
    // Reports every 30 ms for 300 ms keep it waiting; then 200 ms of silence end the wait.
    setTimeout(() => clearInterval(writer), 300);
    assert.equal(await w.finished(60_000, 200), false);
    assert.ok(Date.now() - t0 >= 480, `waited ${Date.now() - t0} ms: the reports kept it waiting`);
    assert.ok(Date.now() - t0 < 5000, `waited ${Date.now() - t0} ms`);
    assert.match(w.gaveUp ?? '', /^printed no report for \d+ s$/);
  });

  it("names a guest whose console went silent while the others' did not", async () => {
    const d = await mkdtemp(join(tmpdir(), 'vc-quiet-'));
    try {
      const old = new Date(Date.now() - 300_000);
      for (const vm of ['vm1', 'vm2', 'vm3']) await writeFile(join(d, `${vm}.console.log`), 'VCGUEST up name=x\nVCNET rx_bytes=1\n');
      await utimes(join(d, 'vm2.console.log'), old, old);
      const w = new JobWatch(join(d, 'vm1.console.log'), ['vm1', 'vm2', 'vm3'], 'mpi');
      assert.deepEqual(await w.guestTrouble(), []);
      const [one, ...rest] = await w.guestTrouble(120_000);
      assert.match(one ?? '', /^vm2: its console silent for 30\d s while the job stalled$/);
      assert.deepEqual(rest, []);
      // Every console silent: nothing tells a hung guest from a job that waits, so no guest is blamed.
      for (const vm of ['vm1', 'vm3']) await utimes(join(d, `${vm}.console.log`), old, old);
      assert.deepEqual(await w.guestTrouble(120_000), []);
    } finally {
      await rm(d, { recursive: true, force: true });
    }
  });

  it('takes the median of the reports read within a window', async () => {
    const w = new JobWatch(await file(''));
    w.reports.push({ count: 20, ms: 100, at: 1 }, { count: 40, ms: 120, at: 2 }, { count: 60, ms: 20, at: 5 }, { count: 80, ms: 22, at: 6 }, { count: 100, ms: 30, at: 7 });
    assert.equal(w.medianMs(0, 3), 110);
    assert.equal(w.medianMs(5, Number.POSITIVE_INFINITY), 22);
    assert.equal(w.medianMs(8, 9), undefined);
  });
});

// The guest's interface counters, as vc-init prints them, and the gap the lab reports.
describe('lastCounters and countError', () => {
  it('reads the newest VCNET line only', () => {
    const text = [
      'VCGUEST up name=vm1',
      'VCNET rx_bytes=10 rx_packets=1 tx_bytes=20 tx_packets=2 tcp_in_segs=1 tcp_out_segs=2 lo_packets=0 offload=off',
      'VCMPI iter=100 ranks=2 ms_per_iter=3.0',
      'VCNET rx_bytes=1000 rx_packets=9 tx_bytes=2000 tx_packets=8 tcp_in_segs=20 tcp_out_segs=30 lo_packets=4 offload=on',
      'VCNET rx_bytes=5',
    ].join('\n');
    assert.deepEqual(lastCounters(text), { rxBytes: 1000, rxPackets: 9, txBytes: 2000, txPackets: 8, tcpInSegs: 20, tcpOutSegs: 30, loPackets: 4, offload: 'on' });
    assert.equal(lastCounters('VCGUEST up\n'), undefined);
  });

  it("puts back the segments an interface counted as one super-packet, less the loopback's", () => {
    const c = { rxBytes: 1000, rxPackets: 9, txBytes: 2000, txPackets: 8, tcpInSegs: 20, tcpOutSegs: 30, loPackets: 4, offload: 'on' };
    // 30 - 4 = 26 segments on the interface, 8 frames: 18 more, 66 header bytes each.
    assert.deepEqual(guestWire(c), { txBytes: 2000 + 18 * 66, txPackets: 26 });
    // Without offload the frames are the segments (and ARP besides): the counters stand.
    assert.deepEqual(guestWire({ ...c, tcpOutSegs: 10 }), { txBytes: 2000, txPackets: 8 });
  });

  it('checks what a VM received against its interface, or with offload on against what its partner sent', () => {
    const guest = (txBytes: number, rxBytes: number, offload: string) => ({ rxBytes, rxPackets: 10, txBytes, txPackets: 10, tcpInSegs: 10, tcpOutSegs: 10, loPackets: 0, offload });
    const agent = (txBytes: number, rxBytes: number) => ({ txBytes, txPackets: 10, rxBytes, rxPackets: 10 });
    const off = gaps([
      { vm: 'vm1', guest: guest(1000, 2000, 'off'), agent: agent(1010, 2000) },
      { vm: 'vm2', guest: guest(2000, 1000, 'off'), agent: agent(2000, 990) },
    ]);
    assert.deepEqual(
      off.map((g) => [g.sentBytes, g.receivedBytes, g.receivedFrom]),
      [
        [1, 0, 'its interface'],
        [0, -1, 'its interface'],
      ],
    );
    const on = gaps([
      { vm: 'vm1', guest: guest(1000, 1, 'on'), agent: agent(1000, 2020) },
      { vm: 'vm2', guest: guest(2000, 1, 'on'), agent: agent(2000, 1000) },
    ]);
    assert.deepEqual(
      on.map((g) => [g.receivedBytes, g.receivedFrom]),
      [
        [1, "vm2's wire account of what it sent"],
        [0, "vm1's wire account of what it sent"],
      ],
    );
    assert.throws(() => gaps(on.slice(0, 1) as never), /two VMs of one job/);
  });

  it("gives the agents' gap in percent of the guest, signed", () => {
    assert.equal(countError(1010, 1000), 1);
    assert.equal(countError(990, 1000), -1);
    assert.equal(countError(0, 0), 0);
    assert.equal(countError(5, 0), Number.POSITIVE_INFINITY);
  });
});

describe('JobWatch reads the web service from its console', () => {
  it("reads its reports and its end, the serial console's carriage returns dropped", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vc-web-'));
    try {
      const f = join(dir, 'vm1.console.log');
      await writeFile(f, 'VCWEB load requests=40 clients=2\r\nVCWEB req=20 ms_per_req=230.5 p99_ms=300.1\r\nVCWEB req=40 ms_per_req=40.0 p99_ms=45.0\r\nVCWEB verified requests=40 errors=0\r\n');
      const w = new JobWatch(f, ['vm1', 'vm2', 'vm3'], 'web');
      await w.poll();
      assert.deepEqual(
        w.reports.map((r) => [r.count, r.ms]),
        [
          [20, 230.5],
          [40, 40],
        ],
      );
      assert.deepEqual(w.end, { ok: true, line: 'VCWEB verified requests=40 errors=0' });
      assert.equal(`${w.title} per ${w.unit}`, 'web service per request');
      await writeFile(f, 'VCWEB FAILED requests=40 errors=1 first=item 3: status 502\n');
      const bad = new JobWatch(f, ['vm1'], 'web');
      await bad.poll();
      assert.equal(bad.end?.ok, false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('kernelTrouble', () => {
  it("finds a guest kernel's errors, printed by the kernel or passed on as VCKMSG, and nothing else", () => {
    const text = [
      '[    0.02] ACPI: Early table checksum verification disabled',
      '[   12.31] BUG: unable to handle page fault for address: ffff8880',
      '[   12.40] list_add corruption. prev->next should be next',
      '[   13.00] Kernel panic - not syncing: Fatal exception',
      'VCKMSG [   20.10] general protection fault, probably for non-canonical address',
      'VCKMSG [   21.00] virtio_net virtio0 ens3: renamed from eth0',
      'VCGEN {"name":"vm1","t_ms":1000,"tx":{},"rx":{}}',
      'VCMPI iter=20 ranks=4 ms_per_iter=101.5 residual=1e-3',
    ].join('\n');
    assert.deepEqual(kernelTrouble(text), [
      '[   12.31] BUG: unable to handle page fault for address: ffff8880',
      '[   12.40] list_add corruption. prev->next should be next',
      '[   13.00] Kernel panic - not syncing: Fatal exception',
      'VCKMSG [   20.10] general protection fault, probably for non-canonical address',
    ]);
  });
});

describe('guestClock and parseReports', () => {
  it("read a guest's clock source from its VCGUEST up line, and its whole VCGEN lines only", () => {
    const text =
      'VCGUEST up name=vm1 ip=10.1.200.1/24 uptime_ms=3970 clock=hpet\nVCGEN {"name":"vm1","t_ms":1000,"tx":{},"rx":{}}\nVCGEN {"name":"vm1","t_ms":2000,"tx":{},"rx":{}}\nVCGEN {"name":"vm1","t_ms":30';
    assert.equal(guestClock(text), 'hpet');
    assert.equal(guestClock('VCGUEST up name=vm1 ip=10.1.200.1/24 uptime_ms=3970 clock=\n'), undefined);
    assert.equal(guestClock('VCGUEST up name=vm1 ip=10.1.200.1/24 uptime_ms=3970\n'), undefined);
    assert.deepEqual(
      parseReports(text).map((r) => r.t_ms),
      [1000, 2000],
    );
  });
});
