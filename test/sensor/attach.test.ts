import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EbpfSensor } from '../../src/sensor/ebpf.js';
import { ourHooks, showTaps } from '../../src/sensor/tc.js';
import type { FlowCounts } from '../../src/sensor/layout.js';
import { bpfObject } from '../../src/paths.js';
import { run } from '../../src/util/exec.js';
import { TapPair } from '../helpers/netns.js';
import { uniqueName } from '../helpers/names.js';

// Real eBPF on real taps: many taps attached in one batch, one of them
// vanishing meanwhile; the per-CPU flow maps (the bench's comparison) count
// exactly as the shared ones; a program the kernel refuses is a clear error.
const id = uniqueName('a', 6);
const pair = new TapPair(id);
const pinRoot = `/sys/fs/bpf/vc-${id}`;
const TAPS = 24;
const tap = (i: number) => `vct${i}`;
const VANISHING = tap(11);

const flow = (flows: FlowCounts[], vm: number, peer: string) => flows.filter((f) => f.vm === vm && f.dir === 'tx' && f.peer === peer).reduce((n, f) => n + f.packets, 0);

describe(`attaching taps in one batch on ${pair.host}`, { concurrency: 1 }, () => {
  before(async () => {
    await pair.create();
    await pair.sink(pair.host);
    const cmds = Array.from({ length: TAPS }, (_, i) => `tuntap add dev ${tap(i)} mode tap\nlink set ${tap(i)} up`).join('\n');
    await run('ip', ['-n', pair.host, '-batch', '-'], { input: `${cmds}\n` });
  });
  after(async () => {
    await pair.destroy();
    for (const root of [pinRoot, `${pinRoot}-p`, `${pinRoot}-f`]) await rm(root, { recursive: true, force: true });
  });

  it('attaches the others when a tap vanishes in the middle of the batch, and names the missing one', async () => {
    const sensor = await EbpfSensor.open({ pinRoot, netns: pair.host, object: bpfObject });
    // The tap goes away after the sensor listed the links and before tc reaches it: QEMU quitting at that moment.
    const sensorLinks = sensor as unknown as { linkNames(): Promise<Map<number, string>> };
    const list = sensorLinks.linkNames.bind(sensor);
    sensorLinks.linkNames = async () => {
      const names = await list();
      if ([...names.values()].includes(VANISHING)) await run('ip', ['-n', pair.host, 'link', 'del', VANISHING]);
      return names;
    };
    const want = [{ tap: 'tap0', vm: 5 }, ...Array.from({ length: TAPS }, (_, i) => ({ tap: tap(i), vm: 100 + i }))];
    const r = await sensor.reconcile(want);
    assert.deepEqual(
      r.failed.map((f) => f.tap),
      [VANISHING],
    );
    assert.match(r.failed[0]!.error, new RegExp(`no interface '${VANISHING}' in network namespace ${pair.host}: is the VM running\\? \\(it may have vanished while being attached\\)`));
    assert.equal(r.attached.length, TAPS);
    // Every other tap carries both our filters.
    const states = await showTaps(r.attached, pair.host);
    for (const t of r.attached) assert.deepEqual(ourHooks(states.get(t)!), ['ingress', 'egress'], `${t}: our two filters`);
    assert.deepEqual(
      (await sensor.attached()).map((a) => a.tap).sort(),
      want
        .map((w) => w.tap)
        .filter((t) => t !== VANISHING)
        .sort(),
    );
    // Counting goes on through the batch-attached filters, to the right VM.
    await sensor.read();
    await pair.send(pair.vm, [pair.peers[0]!], 300, 64);
    assert.equal(flow((await sensor.read()).flows, 5, pair.peers[0]!), 300);
    // A reconcile with everything in place touches nothing; removing all leaves no filter of ours.
    assert.deepEqual(await sensor.reconcile(want.filter((w) => w.tap !== VANISHING)), { attached: [], removed: [], failed: [] });
    const gone = await sensor.reconcile([]);
    assert.equal(gone.removed.length, TAPS);
    const after = await showTaps(r.attached, pair.host);
    for (const t of r.attached) assert.deepEqual(ourHooks(after.get(t)!), [], `${t}: none of our filters left`);
  });

  it('counts exactly with per-CPU flow maps, and says which maps are in use', async () => {
    const sensor = await EbpfSensor.open({ pinRoot: `${pinRoot}-p`, netns: pair.host, object: bpfObject, maps: 'per-CPU' });
    assert.equal(sensor.maps, 'per-CPU');
    assert.match(sensor.describe(), /^per-CPU flow maps behind a per-CPU last-flow cache, filters attached with tc -batch$/);
    await sensor.attach('tap0', 9);
    await sensor.read();
    await pair.send(pair.vm, pair.peers, 400, 100);
    const r = await sensor.read();
    for (const p of pair.peers) assert.equal(flow(r.flows, 9, p), 400, `to ${p}`);
    assert.equal(r.flows.find((f) => f.vm === 9 && f.peer === pair.peers[0])?.bytes, 400 * (100 + 42));
    await sensor.detach('tap0');
  });

  it('says what to do when the kernel refuses the program, and leaves nothing pinned', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vc-refused-'));
    try {
      // An object the kernel cannot take stands in for a kernel without what the program needs.
      const object = join(dir, 'counter.bpf.o');
      await writeFile(object, 'not an ELF object');
      await assert.rejects(EbpfSensor.open({ pinRoot: `${pinRoot}-f`, netns: pair.host, object }), /the kernel refused the BPF program .*agent\.sensor: pcap/);
      assert.deepEqual(await readdir(`${pinRoot}-f`), [], 'no half-loaded pins');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
