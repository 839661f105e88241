import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { EbpfSensor } from '../../src/sensor/ebpf.js';
import { LAYOUT_VERSION, type FlowCounts } from '../../src/sensor/layout.js';
import { bpfObject, packageRoot } from '../../src/paths.js';
import { TapPair } from '../helpers/netns.js';
import { uniqueName } from '../helpers/names.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';

// Real eBPF on a veth "tap" in namespaces this test creates; the VM is the
// veth's other end. UDP on the wire: payload + 8 (UDP) + 20 (IPv4) or 40 (IPv6) + 14 (Ethernet).
const id = uniqueName('s', 6);
const pair = new TapPair(id);
const pinRoot = `/sys/fs/bpf/vc-${id}`;
const object = bpfObject;
const VM = 7;
let sensor: EbpfSensor;

const flow = (flows: FlowCounts[], dir: 'rx' | 'tx', peer: string) => flows.find((f) => f.vm === VM && f.dir === dir && f.peer === peer) ?? { packets: 0, bytes: 0 };

describe(`eBPF sensor on ${pair.host}/tap0`, { concurrency: 1 }, () => {
  before(async () => {
    await pair.create();
    await pair.sink(pair.host);
    await pair.sink(pair.vm);
    sensor = await EbpfSensor.open({ pinRoot, netns: pair.host, object });
    await sensor.attach('tap0', VM);
    await sensor.read();
  });
  after(async () => {
    await pair.destroy();
    await rm(pinRoot, { recursive: true, force: true });
  });

  it('counts exactly N datagrams and their wire bytes per peer and direction', async () => {
    // The VM's datagrams go to the peers in turn, each a miss of the CPU's
    // last-flow entry (moved into the flow map); the host's go to one peer, hits.
    await pair.send(pair.vm, pair.peers, 500, 100);
    for (let i = 0; i < 3; i++) await pair.send(pair.host, [pair.vmIp], 300, 200);
    const r = await sensor.read();
    for (const p of pair.peers) {
      assert.deepEqual(flow(r.flows, 'tx', p), { ...flow(r.flows, 'tx', p), packets: 500, bytes: 500 * (100 + 42) }, `tx to ${p}`);
    }
    // The host side answers from its first address.
    assert.equal(flow(r.flows, 'rx', pair.peers[0]!).packets, 900);
    assert.equal(flow(r.flows, 'rx', pair.peers[0]!).bytes, 900 * (200 + 42));
    assert.deepEqual(r.overflow, { packets: 0, bytes: 0 });
    assert.equal(r.unknownTap, 0);
  });

  it('counts a GSO super-packet as the wire segments the peer receives (TCP bulk)', async () => {
    await pair.tcpSink(pair.host);
    await sensor.read();
    // Segments each side's TCP stack put on the wire: OutSegs (which counts
    // tcp_skb_pcount, i.e. after segmentation) plus RetransSegs.
    const wire = async (ns: string) => (await pair.tcpStat(ns, 'OutSegs')) + (await pair.tcpStat(ns, 'RetransSegs'));
    const vm0 = await wire(pair.vm);
    const host0 = await wire(pair.host);
    const BYTES = 20 * 1024 * 1024;
    await pair.sendTcpAndWait(BYTES);
    const vmSegs = (await wire(pair.vm)) - vm0;
    const hostSegs = (await wire(pair.host)) - host0;
    const r = await sensor.read();
    const tx = flow(r.flows, 'tx', pair.peers[0]!);
    assert.ok(vmSegs > BYTES / 1500, `${vmSegs} segments for ${BYTES} bytes`);
    assert.equal(tx.packets, vmSegs, 'packets from the VM = segments its TCP stack put on the wire, not the ~320 GSO skbs');
    assert.equal(flow(r.flows, 'rx', pair.peers[0]!).packets, hostSegs, 'packets to the VM = segments the peer put on the wire');
    // Wire bytes: the payload plus, per segment, 14 + 20 + 20..60 bytes of headers.
    assert.ok(tx.bytes >= BYTES + tx.packets * 54 && tx.bytes <= BYTES + tx.packets * 94, `wire bytes ${tx.bytes}`);
  });

  it('counts IPv6 peers by address', async () => {
    await pair.send(pair.vm, [pair.peer6], 200, 64);
    const r = await sensor.read();
    assert.equal(flow(r.flows, 'tx', pair.peer6).packets, 200);
    assert.equal(flow(r.flows, 'tx', pair.peer6).bytes, 200 * (64 + 8 + 40 + 14));
  });

  it('counts frames that are not IP under their ethertype (ARP)', async () => {
    await pair.send(pair.vm, ['10.77.0.9'], 1, 10);
    // The kernel sends the ARP request for the unknown neighbour on its own schedule: read until it is counted.
    let arp = 0;
    await waitFor(
      'the ARP request from the VM to be counted',
      async () => {
        arp += flow((await sensor.read()).flows, 'tx', 'ether:0x0806').packets;
        return arp >= 1 ? true : undefined;
      },
      10_000,
      50,
    );
  });

  it('reads a period while traffic flows and neither loses nor doubles a packet, across a sensor restart', async () => {
    // ~2 s of traffic, one datagram a millisecond: reads land on both sides of the restart while it flows.
    const N = 2000;
    let sent = false;
    const sending = pair.send(pair.vm, [pair.peers[1]!], N, 50, 1).finally(() => {
      sent = true;
    });
    let total = 0;
    let afterRestart = 0;
    let restarted = false;
    while (!sent) {
      const n = flow((await sensor.read()).flows, 'tx', pair.peers[1]!).packets;
      total += n;
      if (restarted && !sent) afterRestart += n;
      // Once traffic is counted, the agent "restarts": a new sensor object opens the pinned maps.
      if (n > 0 && !restarted) {
        sensor = await EbpfSensor.open({ pinRoot, netns: pair.host, object });
        restarted = true;
      }
      await sleep(50); // paces the reads: each swaps the double buffer under traffic
    }
    await sending;
    total += flow((await sensor.read()).flows, 'tx', pair.peers[1]!).packets;
    assert.ok(restarted && afterRestart > 0, 'the restart fell while traffic flowed, and the new sensor read some of it');
    assert.equal(total, N);
  });

  it('follows a tap that is removed and recreated with another ifindex', async () => {
    await pair.deleteTap();
    await pair.createTap();
    const fixed = await sensor.reconcile([{ tap: 'tap0', vm: VM }]);
    assert.deepEqual(fixed.attached, ['tap0']);
    assert.deepEqual(await sensor.attached(), [{ tap: 'tap0', vm: VM }]);
    await sensor.read();
    await pair.send(pair.vm, [pair.peers[2]!], 100, 100);
    assert.equal(flow((await sensor.read()).flows, 'tx', pair.peers[2]!).packets, 100);
  });

  it('refuses a missing tap, a foreign filter at our priority and maps of another layout, saying what to do', async () => {
    await assert.rejects(sensor.attach('vnet404', VM), /no interface 'vnet404' in network namespace/);
    await assert.rejects(sensor.attach('bad name!', VM), /not a valid interface name/);
    // Someone else's filter at our priority: never replaced, the other taps still counted.
    await run('ip', ['-n', pair.host, 'link', 'add', 'tapx', 'type', 'veth', 'peer', 'name', 'tapy']);
    await run('tc', ['qdisc', 'add', 'dev', 'tapx', 'clsact'], { netns: pair.host });
    await run('tc', ['filter', 'add', 'dev', 'tapx', 'ingress', 'pref', '49344', 'protocol', 'all', 'u32', 'match', 'u32', '0', '0'], { netns: pair.host });
    const r = await sensor.reconcile([
      { tap: 'tap0', vm: VM },
      { tap: 'tapx', vm: 8 },
    ]);
    assert.equal(r.failed.length, 1);
    assert.match(r.failed[0]!.error, /not ours .* at priority 49344 on tapx ingress: virt-cohort will not replace it/);
    assert.deepEqual(
      (await sensor.attached()).map((a) => a.tap),
      ['tap0'],
    );
    await run('ip', ['-n', pair.host, 'link', 'del', 'tapx']);
    // Maps pinned by another layout (a smaller flow map, as an older build had).
    const other = `${pinRoot}-old`;
    await run('mkdir', ['-p', `${other}/v${LAYOUT_VERSION}/maps`, `${other}/v${LAYOUT_VERSION}/progs`]);
    try {
      await run('bpftool', ['map', 'create', `${other}/v${LAYOUT_VERSION}/maps/vc_slots`, 'type', 'array', 'key', '4', 'value', '8', 'entries', '1024', 'name', 'vc_slots']);
      await run('bpftool', ['prog', 'load', object, `${other}/v${LAYOUT_VERSION}/progs/vc_from_vm`, 'type', 'classifier']);
      await assert.rejects(EbpfSensor.open({ pinRoot: other, netns: pair.host, object }), /has another layout .* Stop its agent, then remove/);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('virt-cohort top --once --json shows the live rate without draining the period', async () => {
    await sensor.read();
    const sending = pair.send(pair.vm, [pair.peers[2]!], 3000, 100, 1); // ~3 s: top's window falls inside
    const out = await run(process.execPath, [join(packageRoot, 'dist', 'src', 'cli', 'main.js'), 'top', '--once', '--json', '--interval', '0.3', '--pin-root', pinRoot, '--netns', pair.host]);
    await sending;
    const view = JSON.parse(out) as { rates: { vm: number; peer: string; txPps: number }[] };
    assert.ok(
      view.rates.some((r) => r.vm === VM && r.peer === pair.peers[2] && r.txPps > 0),
      out,
    );
    assert.equal(flow((await sensor.read()).flows, 'tx', pair.peers[2]!).packets, 3000, 'top took nothing from the period');
  });

  it('reports what finds the flow map full instead of dropping it silently', async () => {
    // 132,000 distinct peers: more than the 131,072 flows a period can hold.
    const peers = Array.from({ length: 132_000 }, (_, i) => {
      const a = Math.floor(i / 254);
      return `10.${128 + (a >> 8)}.${a & 255}.${1 + (i % 254)}`;
    });
    for (let i = 0; i < peers.length; i += 6000) await pair.send(pair.vm, peers.slice(i, i + 6000), 1, 20);
    const r = await sensor.read();
    const counted = r.flows.filter((f) => f.dir === 'tx' && /^10\.(12[89]|13\d)\./.test(f.peer)).reduce((n, f) => n + f.packets, 0);
    assert.ok(r.overflow.packets > 0, 'overflow reported');
    assert.equal(counted + r.overflow.packets, 132_000);
  });
});
