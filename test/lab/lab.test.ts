import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, stat } from 'node:fs/promises';
import { run, sleep, succeeds, waitFor } from '../../src/util/exec.js';
import { labDown, labUp, requireLab } from '../../src/lab/lab.js';
import { labNetns, rootLinks } from '../../src/lab/network.js';
import { addVm, listVms, migrateVm } from '../../src/lab/vm.js';
import { guestReports, type GuestReport, kernelTrouble } from '../../src/lab/console.js';
import { consoleLog, labDir, type LabState } from '../../src/lab/state.js';
import { hosts } from '../../src/lab/topology.js';
import { portFree } from '../../src/lab/redis.js';
import { uniqueName } from '../helpers/names.js';
import { alive } from '../../src/util/process.js';
import { EbpfSensor } from '../../src/sensor/ebpf.js';
import { domainInterfaces } from '../../src/libvirt/virsh.js';
import { bpfObject } from '../../src/paths.js';

// The real thing: four libvirt hosts in two sites, TCG guests on a VXLAN
// overlay, a live migration across the shaped inter-site link.
const name = uniqueName();
const DELAY_MS = 20;
const RATE = 50;
const WINDOW_S = 20;
let lab: LabState;
const pids: number[] = [];

const last = (r: GuestReport[]) => r[r.length - 1];

describe(`lab ${name}`, { concurrency: 1 }, () => {
  before(async () => {
    // No agents: this test reads the lab hosts' sensors itself.
    lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: DELAY_MS, rateMbit: 1000, agents: false });
  });
  after(async () => {
    await labDown(name);
  });

  it('comes up with 2 sites x 2 hosts, each its own libvirtd reachable over TCP', async () => {
    const h = hosts(lab);
    assert.equal(h.length, 4);
    const uuids = new Set<string>();
    for (const host of h) {
      const caps = await run('virsh', ['-c', host.uri, 'capabilities']);
      uuids.add(/<uuid>([^<]+)<\/uuid>/.exec(caps)![1]!);
      const hostname = (await run('virsh', ['-c', host.uri, 'hostname'])).trim();
      assert.equal(hostname, host.netns);
    }
    assert.equal(uuids.size, 4, 'every host has its own host UUID');
    // A host reaches another host's libvirt too (peer-to-peer migration needs it).
    assert.ok(await succeeds('virsh', ['-c', h[3]!.uri, 'version'], { netns: h[0]!.netns }));
  });

  it('delays inter-site traffic and not intra-site traffic', async () => {
    const [a1, a2, b1] = hosts(lab);
    const rtt = async (to: string) => {
      const out = await run('ping', ['-c', '5', '-i', '0.2', '-q', to], { netns: a1!.netns });
      return Number(/= [\d.]+\/([\d.]+)\//.exec(out)![1]);
    };
    const inter = await rtt(b1!.dataIp);
    const intra = await rtt(a2!.dataIp);
    assert.ok(inter >= 2 * DELAY_MS, `inter-site RTT ${inter} ms should be at least ${2 * DELAY_MS} ms`);
    assert.ok(intra < DELAY_MS, `intra-site RTT ${intra} ms should be well under ${DELAY_MS} ms`);
  });

  it('boots 4 guests that exchange traffic across hosts and across sites', async () => {
    const placement = ['a1', 'b1', 'a2', 'b2'];
    for (let i = 1; i <= 4; i++) {
      const vm = await addVm(name, {
        name: `vm${i}`,
        host: placement[i - 1]!,
        index: i,
        pattern: 'all',
        cluster: 4,
        rate: RATE,
        size: 200,
        memoryMiB: 128,
        wait: true,
      });
      assert.ok(vm.bootSeconds! < 60, `vm${i} booted in ${vm.bootSeconds} s`);
    }
    lab = await requireLab(name);
    const vms = await listVms(lab);
    assert.deepEqual(
      vms.map((v) => `${v.name}@${v.host}:${v.state}`),
      ['vm1@a1:running', 'vm2@b1:running', 'vm3@a2:running', 'vm4@b2:running'],
    );
    // Every guest hears from every other: vm1 (a1) from vm3 (same site) and vm2, vm4 (other site).
    for (let i = 1; i <= 4; i++) {
      await waitFor(
        `vm${i} to receive from its 3 peers`,
        async () => {
          const r = last(await guestReports(name, `vm${i}`));
          const heard = Object.values(r?.rx ?? {}).filter((x) => x.n >= RATE);
          return heard.length === 3 ? true : undefined;
        },
        60_000,
        500,
      );
    }
  });

  it('the eBPF sensor on each lab host counts what every guest sent and received, per peer', async () => {
    const sensors = new Map<string, EbpfSensor>();
    for (const h of hosts(lab)) {
      sensors.set(h.name, await EbpfSensor.open({ pinRoot: `/sys/fs/bpf/vc-${name}-${h.name}`, netns: h.netns, object: bpfObject }));
    }
    const vms = await listVms(lab);
    for (const v of vms) {
      const [nic] = await domainInterfaces(hosts(lab).find((h) => h.name === v.host)!.uri, v.domain);
      assert.match(nic!.tap, /^vnet\d+$/);
      await sensors.get(v.host)!.attach(nic!.tap, v.spec!.index);
    }
    const generators = async () => new Map(await Promise.all(vms.map(async (v) => [v.spec!.index, last(await guestReports(name, v.name))!] as const)));
    for (const s of sensors.values()) await s.read();
    const g0 = await generators();
    await sleep(WINDOW_S * 1000);
    const flows = (await Promise.all([...sensors.values()].map((s) => s.read()))).flatMap((r) => r.flows);
    const g1 = await generators();
    // The generators report once a second on the guest's clock, so each end of
    // the window may be off by up to one report: +-2 x RATE per flow.
    let worst = 0;
    for (const v of vms) {
      const i = v.spec!.index;
      for (const p of v.spec!.peers) {
        const ip = `10.${lab.index}.200.${p}`;
        const sent = g1.get(i)!.tx[ip]!.n - g0.get(i)!.tx[ip]!.n;
        const got = g1.get(i)!.rx[ip]!.n - g0.get(i)!.rx[ip]!.n;
        const tx = flows.find((f) => f.vm === i && f.dir === 'tx' && f.peer === ip);
        const rx = flows.find((f) => f.vm === i && f.dir === 'rx' && f.peer === ip);
        assert.ok(Math.abs(tx!.packets - sent) <= 2 * RATE, `vm${i} -> ${ip}: sensor ${tx?.packets}, generator ${sent}`);
        assert.ok(Math.abs(rx!.packets - got) <= 2 * RATE, `vm${i} <- ${ip}: sensor ${rx?.packets}, generator ${got}`);
        assert.equal(tx!.bytes, tx!.packets * (200 + 42), 'wire bytes of 200-byte datagrams');
        worst = Math.max(worst, Math.abs(tx!.packets - sent), Math.abs(rx!.packets - got));
      }
    }
    process.stdout.write(`# sensor vs generators over ${WINDOW_S} s at ${RATE}/s per peer: worst difference ${worst} datagrams of ${WINDOW_S * RATE}\n`);
  });

  it('live-migrates a 128 MiB guest from site a to site b; it keeps its IP and its traffic flows on', async () => {
    const vm1Ip = lab.vms.vm1?.ip ?? `10.${lab.index}.200.1`;
    const offset = (await stat(consoleLog(name, 'vm2'))).size;
    const before = last(await guestReports(name, 'vm2'))!.rx[vm1Ip]!.n;
    const m = await migrateVm(name, 'vm1', 'b2');
    assert.equal(m.from, 'a1');
    assert.equal(m.to, 'b2');
    const places = (await listVms(lab)).filter((v) => v.name === 'vm1');
    assert.deepEqual(
      places.map((p) => `${p.host}:${p.state}`),
      ['b2:running'],
      'vm1 is defined and running on b2 only',
    );
    // vm2 keeps receiving from vm1's unchanged address, now over the overlay from b2.
    await sleep(5000);
    const after = await guestReports(name, 'vm2', offset);
    const rx = last(after)!.rx[vm1Ip]!;
    assert.ok(rx.n > before + RATE * 3, `vm2 received ${rx.n - before} datagrams from vm1 across the migration`);
    const gap = Math.max(...after.map((r) => r.rx[vm1Ip]?.gap_ms ?? 0));
    assert.ok(gap < 5000, `traffic gap during the migration was ${gap} ms`);
    // The guest's kernel survived the move intact (QEMU 7.2 TCG has corrupted guests on slow links).
    const { readFile } = await import('node:fs/promises');
    const kernel = kernelTrouble(await readFile(consoleLog(name, 'vm1'), 'utf8'));
    assert.deepEqual(kernel, [], 'no kernel error in the migrated guest');
    process.stdout.write(`# migration a1 -> b2: ${m.seconds.toFixed(2)} s, downtime ${m.downtimeMs} ms, ${m.dataMiB} MiB, traffic gap ${gap} ms\n`);
  });

  it('lab down leaves nothing behind', async () => {
    for (const h of hosts(lab)) {
      const out = await run('ip', ['netns', 'pids', h.netns]);
      pids.push(...out.split('\n').filter(Boolean).map(Number));
    }
    assert.ok(pids.length >= 12, 'libvirtd, virtlogd and qemu processes were running');
    await labDown(name);
    assert.deepEqual(await labNetns(name), []);
    assert.deepEqual(await rootLinks(name), []);
    for (const p of pids) assert.equal(alive(p), false, `process ${p} is gone`);
    assert.ok(await portFree(lab.redisPort), 'Redis port is free');
    const pins = (await readdir('/sys/fs/bpf').catch(() => [] as string[])).filter((p) => p.startsWith(`vc-${name}`));
    assert.deepEqual(pins, []);
    await assert.rejects(stat(labDir(name)), /ENOENT/);
  });
});
