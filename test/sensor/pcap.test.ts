import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { EbpfSensor } from '../../src/sensor/ebpf.js';
import type { Reading } from '../../src/sensor/sensor.js';
import type { FlowCounts } from '../../src/sensor/layout.js';
import { PcapSensor } from '../../src/sensor/pcap.js';
import { bpfObject, packageRoot } from '../../src/paths.js';
import { TapPair } from '../helpers/netns.js';
import { uniqueName } from '../helpers/names.js';

// The libpcap backend runs inside the host namespace (a child process), the
// eBPF backend watches the same tap at the same time.
const id = uniqueName('p', 6);
const pair = new TapPair(id);
const pinRoot = `/sys/fs/bpf/vc-${id}`;
const object = bpfObject;
const READER = join(packageRoot, 'dist', 'test', 'helpers', 'pcap-read.js');

/** Starts the reader in the host namespace; resolves with its backend once counting, and its reading at the end. */
function reader(args: string[]): Promise<{ kind: string; reading: Promise<Reading>; log: () => string }> {
  const child = spawn('nsenter', [`--net=/run/netns/${pair.host}`, '--', process.execPath, READER, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    const reading = new Promise<Reading>((res, rej) =>
      child.on('exit', (code) => {
        const last = out.trim().split('\n').pop() ?? '';
        if (code === 0) res(JSON.parse(last) as Reading);
        else rej(new Error(`reader exited ${code}: ${err}`));
      }),
    );
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^ready (\w+)$/m.exec(out);
      if (m) resolve({ kind: m[1]!, reading, log: () => err });
    });
    child.on('exit', (code) => reject(new Error(`reader exited ${code} before it was ready: ${err}`)));
  });
}

const ipFlows = (r: { flows: FlowCounts[] }) =>
  r.flows
    .filter((f) => f.family === 4)
    .map((f) => `${f.vm} ${f.dir} ${f.peer} ${f.packets} ${f.bytes}`)
    .sort();

describe(`pcap sensor on ${pair.host}/tap0`, { concurrency: 1 }, () => {
  before(async () => {
    await pair.create();
    await pair.sink(pair.host);
    await pair.sink(pair.vm);
  });
  after(async () => {
    await pair.destroy();
    await rm(pinRoot, { recursive: true, force: true });
  });

  it('agrees with the eBPF backend packet for packet at a low rate', async () => {
    const ebpf = await EbpfSensor.open({ pinRoot, netns: pair.host, object });
    await ebpf.attach('tap0', 1);
    const pcap = await reader(['--tap', 'tap0', '--vm', '1', '--mac', await pair.vmMac(), '--seconds', '4']);
    assert.equal(pcap.kind, 'pcap');
    await ebpf.read();
    await pair.send(pair.vm, pair.peers, 150, 120, 5);
    await pair.send(pair.host, [pair.vmIp], 100, 300, 5);
    const fromPcap = await pcap.reading;
    const fromEbpf = await ebpf.read();
    assert.deepEqual(ipFlows(fromPcap), ipFlows(fromEbpf));
    assert.deepEqual(
      ipFlows(fromPcap),
      ['1 rx 10.77.0.1 100 342', ...pair.peers.map((p) => `1 tx ${p} 150 162`)]
        .map((l) => {
          const [vm, dir, peer, n, size] = l.split(' ');
          return `${vm} ${dir} ${peer} ${n} ${Number(n) * Number(size)}`;
        })
        .sort(),
    );
  });

  it('counts wire segments on TCP bulk as eBPF does (GSO super-packets split by the MSS), bytes alike', async () => {
    await pair.tcpSink(pair.host);
    const ebpf = await EbpfSensor.open({ pinRoot, netns: pair.host, object });
    await ebpf.attach('tap0', 1);
    const pcap = await reader(['--tap', 'tap0', '--vm', '1', '--mac', await pair.vmMac(), '--seconds', '6']);
    await ebpf.read();
    await pair.sendTcpAndWait(64 << 20);
    const fromPcap = await pcap.reading;
    const fromEbpf = await ebpf.read();
    const sum = (r: Reading, dir: 'tx' | 'rx') =>
      r.flows.filter((f) => f.family === 4 && f.dir === dir && f.peer === pair.peers[0]).reduce((a, f) => ({ packets: a.packets + f.packets, bytes: a.bytes + f.bytes }), { packets: 0, bytes: 0 });
    for (const dir of ['tx', 'rx'] as const) {
      const e = sum(fromEbpf, dir),
        p = sum(fromPcap, dir);
      // Both watch the same tap; libpcap may miss a frame under load, and its MSS is an estimate of gso_size.
      assert.ok(e.packets > (dir === 'tx' ? 10_000 : 50), `${dir}: eBPF counted ${e.packets} segments`);
      console.log(`TCP bulk ${dir}: eBPF ${e.packets} packets ${e.bytes} bytes, pcap ${p.packets} packets ${p.bytes} bytes`);
      assert.ok(Math.abs(p.packets - e.packets) <= 0.02 * e.packets, `${dir}: pcap ${p.packets} messages, eBPF ${e.packets}`);
      assert.ok(Math.abs(p.bytes - e.bytes) <= 0.02 * e.bytes, `${dir}: pcap ${p.bytes} bytes, eBPF ${e.bytes}`);
    }
  });

  it('a tap that vanishes while captured (the VM stopped or left) ends its capture; what it counted is kept', async () => {
    const pcap = await reader(['--tap', 'tap0', '--vm', '3', '--mac', await pair.vmMac(), '--seconds', '3']);
    await pair.send(pair.vm, [pair.peers[1]!], 50, 100, 2);
    await pair.deleteTap();
    try {
      const r = await pcap.reading;
      const sent = r.flows.filter((f) => f.dir === 'tx' && f.peer === pair.peers[1]).reduce((a, f) => a + f.packets, 0);
      assert.equal(sent, 50, 'the datagrams sent before the tap went');
      assert.match(pcap.log(), /capture ended/);
    } finally {
      await pair.createTap();
    }
  });

  it('auto picks libpcap, and says why, when the eBPF program cannot load', async () => {
    const bad = join(tmpdir(), `vc-${id}-not-bpf.o`);
    await writeFile(bad, 'this is not an ELF object');
    try {
      const r = await reader(['--tap', 'tap0', '--vm', '2', '--mac', await pair.vmMac(), '--seconds', '1', '--backend', 'auto', '--object', bad, '--pin-root', `${pinRoot}-auto`]);
      assert.equal(r.kind, 'pcap');
      await r.reading;
      assert.match(r.log(), /eBPF sensor unavailable, so this agent counts with libpcap: the kernel refused the BPF program/);
    } finally {
      await rm(bad, { force: true });
      await rm(`${pinRoot}-auto`, { recursive: true, force: true });
    }
  });

  it('refuses to attach without the MAC, or from outside the namespace, saying what to do', async () => {
    await assert.rejects(PcapSensor.open().attach('tap0', 1), /needs the VM's MAC/);
    assert.throws(() => PcapSensor.open({ netns: pair.host }), /run it inside/);
  });
});
