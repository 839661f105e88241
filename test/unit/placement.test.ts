import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PairTraffic } from '../../src/analysis/graph.js';
import { mergeLive, parseEnvironment, placeCluster, planMoves, type VmInfo } from '../../src/placement/index.js';
import { UserError } from '../../src/util/errors.js';

const GiB = 1048576;
const t = (src: string, dst: string, messages: number, bytes = messages * 1000): PairTraffic => ({ src, dst, messages, bytes });

/** Two sites a and b, two hosts each of `mem` GiB and 4 vCPUs, a 20 ms / 100 Mbit/s WAN link. */
function envFile(mem = 4, extra: Record<string, unknown> = {}) {
  return {
    sites: { a: {}, b: {} },
    hosts: {
      a1: { site: 'a', vcpus: 4, memoryGiB: mem },
      a2: { site: 'a', vcpus: 4, memoryGiB: mem },
      b1: { site: 'b', vcpus: 4, memoryGiB: mem },
      b2: { site: 'b', vcpus: 4, memoryGiB: mem },
    },
    links: [{ sites: ['a', 'b'], latencyMs: 20, bandwidthMbit: 100, transferPricePerGB: 0.05 }],
    ...extra,
  };
}
const vm = (name: string, host: string, memGiB = 1, pinned = false): VmInfo => ({ name, host, site: host[0]!, memoryKiB: memGiB * GiB, vcpus: 1, pinned });
const rejects = (raw: unknown, re: RegExp) =>
  assert.throws(
    () => parseEnvironment(raw, 'env.json'),
    (e: unknown) => e instanceof UserError && re.test(e.message),
  );

test('bad environment files are rejected with what to fix', () => {
  rejects({ ...envFile(), colour: 'red' }, /env.json: the top level has unknown key "colour": remove it/);
  rejects({ ...envFile(), hosts: { a1: { site: 'a', vcpus: 4, memoryGiB: 4, sped: 2 } } }, /hosts.a1 has unknown key "sped"/);
  rejects({ ...envFile(), hosts: { a1: { site: 'a', price: { perVmHour: -1 } } } }, /hosts.a1.price.perVmHour is -1: it cannot be negative/);
  rejects({ ...envFile(), hosts: { a1: { vcpus: 4 } } }, /hosts.a1 is in no site: add "site"/);
  rejects({ ...envFile(), hosts: { a1: { site: 'z' } } }, /hosts.a1.site is 'z', which is not in "sites"/);
  rejects({ ...envFile(), links: [] }, /no link between sites a and b: add/);
  rejects({ ...envFile(), links: [{ sites: ['a', 'b'], latencyMs: 1, bandwidthMbit: 0 }] }, /bandwidthMbit must be above 0/);
  rejects({ ...envFile(), sites: {} }, /"sites" is empty/);
  rejects('nope', /must be a JSON object/);
});

test('live inventory overrides the file, a live host in an unknown site is an error', () => {
  const env = mergeLive(parseEnvironment(envFile()), [{ name: 'a1', site: 'a', cpus: 16, memoryKiB: 64 * GiB, freeMemoryKiB: 60 * GiB }]);
  const a1 = env.hosts.find((h) => h.name === 'a1')!;
  assert.equal(a1.vcpus, 16);
  assert.equal(a1.reporting, true);
  assert.equal(env.hosts.find((h) => h.name === 'b1')!.reporting, false);
  const notes: string[] = [];
  const skipped = mergeLive(parseEnvironment(envFile()), [{ name: 'c1', site: 'c', cpus: 1, memoryKiB: GiB, freeMemoryKiB: GiB }], notes);
  assert.equal(
    skipped.hosts.some((h) => h.name === 'c1'),
    false,
    'a host in a site the file does not define is left out',
  );
  assert.match(notes.join('\n'), /host c1 reports site 'c', which the environment file does not define: it is left out \(and its VMs\); add "sites"/);
});

test('a group split across sites is brought together, and the reason says why', () => {
  const env = parseEnvironment(envFile());
  const vms = [vm('vm1', 'a1'), vm('vm2', 'a1'), vm('vm3', 'b1'), vm('vm4', 'b1')];
  const traffic = [t('vm1', 'vm2', 100), t('vm2', 'vm3', 100), t('vm3', 'vm4', 100), t('vm1', 'vm3', 100)];
  const plan = planMoves(traffic, vms, env, { objective: 'time' });
  assert.ok(plan.moves.length >= 1 && plan.moves.length <= 2, JSON.stringify(plan.moves));
  assert.equal(plan.after.interSiteBytes, 0);
  assert.ok(plan.before.interSiteBytes > 0);
  assert.match(plan.moves[0]!.reason, /moves from .* to .*site .*exchanges .* pays back/);
  for (const m of plan.moves) assert.ok(m.paybackSeconds <= plan.horizonSeconds && m.migrationSeconds > 0);
});

test('pinned and excluded VMs never move; maxMoves caps the round', () => {
  const env = parseEnvironment(envFile(8));
  const vms = [vm('vm1', 'a1', 1, true), vm('vm2', 'b1'), vm('vm3', 'b1'), vm('vm4', 'b2'), vm('vm5', 'b2')];
  const traffic = ['vm2', 'vm3', 'vm4', 'vm5'].map((v) => t('vm1', v, 500));
  const plan = planMoves(traffic, vms, env, { objective: 'time', maxMoves: 2, exclude: ['vm5'] });
  assert.equal(plan.moves.length, 2);
  assert.ok(plan.moves.every((m) => m.vm !== 'vm1' && m.vm !== 'vm5' && m.toSite === 'a'));
});

test('capacity is never exceeded, after any prefix of the plan, on random instances', () => {
  let x = 42;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  const hosts = ['a1', 'a2', 'b1', 'b2'];
  for (let round = 0; round < 30; round++) {
    const env = parseEnvironment(envFile(4));
    const used = new Map(hosts.map((h) => [h, 0]));
    const vms: VmInfo[] = [];
    for (let i = 0; i < 14; i++) {
      const mem = 1 + Math.floor(rnd() * 2);
      const h = hosts.find((c) => used.get(c)! + mem <= 4 && rnd() < 0.7) ?? hosts.find((c) => used.get(c)! + mem <= 4);
      if (!h) break;
      used.set(h, used.get(h)! + mem);
      vms.push({ ...vm(`vm${i}`, h, mem), vcpus: 1 });
    }
    const traffic: PairTraffic[] = [];
    for (const a of vms) for (const b of vms) if (a.name < b.name && rnd() < 0.3) traffic.push(t(a.name, b.name, rnd() * 1000, rnd() * 1e7));
    const plan = planMoves(traffic, vms, env, { objective: 'time', maxMoves: 50, horizonSeconds: 1e6 });
    const mem = new Map(hosts.map((h) => [h, 0]));
    const cpu = new Map(hosts.map((h) => [h, 0]));
    const where = new Map(vms.map((v) => [v.name, v.host]));
    for (const v of vms) {
      mem.set(v.host, mem.get(v.host)! + v.memoryKiB);
      cpu.set(v.host, cpu.get(v.host)! + v.vcpus);
    }
    for (const m of plan.moves) {
      const v = vms.find((y) => y.name === m.vm)!;
      assert.equal(where.get(m.vm), m.from);
      where.set(m.vm, m.to);
      mem.set(m.from, mem.get(m.from)! - v.memoryKiB);
      mem.set(m.to, mem.get(m.to)! + v.memoryKiB);
      cpu.set(m.from, cpu.get(m.from)! - v.vcpus);
      cpu.set(m.to, cpu.get(m.to)! + v.vcpus);
      assert.ok(mem.get(m.to)! <= 4 * GiB && cpu.get(m.to)! <= 4, `round ${round}: ${m.to} over capacity after moving ${m.vm}`);
    }
    assert.ok(plan.after.rate <= plan.before.rate + 1e-12, `round ${round}: the plan made things worse`);
  }
});

test('the payback horizon suppresses moves whose gain is small against the migration', () => {
  const env = parseEnvironment(envFile(16));
  // 8 GiB VMs split across sites, 2 messages/s of 100 bytes: saves 2 x 20 ms per second,
  // the migration takes ~11 min over 100 Mbit/s: pays back after ~4.6 h.
  const vms = [vm('vm1', 'a1', 8), vm('vm2', 'b1', 8)];
  const traffic = [t('vm1', 'vm2', 2, 200)];
  const stable = planMoves(traffic, vms, env, { objective: 'time', horizonSeconds: 3600 });
  assert.equal(stable.moves.length, 0);
  assert.match(stable.noMove!, /moving 1 VM would save .* but pays back only after 4\.\d h, beyond the horizon of 60 min/);
  const patient = planMoves(traffic, vms, env, { objective: 'time', horizonSeconds: 86400 });
  assert.equal(patient.moves.length, 1);
  assert.ok(patient.moves[0]!.paybackSeconds > 3600 && patient.moves[0]!.paybackSeconds < 86400);
});

test('no traffic, or already together: an explicit no-move with the reason', () => {
  const env = parseEnvironment(envFile());
  const idle = planMoves([], [vm('vm1', 'a1'), vm('vm2', 'b1')], env, { objective: 'time' });
  assert.deepEqual(idle.moves, []);
  assert.match(idle.noMove!, /no traffic was recorded/);
  const together = planMoves([t('vm1', 'vm2', 100)], [vm('vm1', 'a1'), vm('vm2', 'a2')], env, { objective: 'time' });
  assert.match(together.noMove!, /already the best/);
  assert.match(planMoves([], [], env, { objective: 'cost' }).noMove!, /no VMs/);
});

test('time objective: a group is not moved onto a weaker site when the latency is negligible', () => {
  const raw = envFile(8);
  raw.hosts.b1 = { ...raw.hosts.b1, speed: 0.5 } as typeof raw.hosts.b1;
  raw.hosts.b2 = { ...raw.hosts.b2, speed: 0.5 } as typeof raw.hosts.b2;
  raw.links = [{ sites: ['a', 'b'], latencyMs: 0.01, bandwidthMbit: 10000, transferPricePerGB: 0 }];
  const plan = planMoves([t('vm1', 'vm2', 100)], [vm('vm1', 'a1'), vm('vm2', 'b1')], parseEnvironment(raw), { objective: 'time', horizonSeconds: 1e6 });
  assert.equal(plan.moves.length, 1);
  assert.equal(plan.moves[0]!.vm, 'vm2', 'the VM on the slow site joins the fast one, not the reverse');
});

test('cost objective: a cheaper host is used only if its availability lasts long enough to pay', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const mk = (until: string) => {
    const raw = envFile(8);
    raw.hosts.b1 = { ...raw.hosts.b1, price: { perVmHour: 0.01 }, availableUntil: until } as unknown as typeof raw.hosts.b1;
    for (const h of ['a1', 'a2', 'b2'] as const) raw.hosts[h] = { ...raw.hosts[h], price: { perVmHour: 0.5 } } as unknown as typeof raw.hosts.a1;
    return parseEnvironment(raw);
  };
  const vms = [vm('vm1', 'a1', 4)];
  const long = planMoves([], vms, mk('2026-02-01T00:00:00Z'), { objective: 'cost', now, horizonSeconds: 86400 });
  assert.equal(long.moves[0]?.to, 'b1');
  // Open for 2 minutes only: the move and the move back cost more than 2 minutes of saving.
  const short = planMoves([], vms, mk('2026-01-01T00:02:00Z'), { objective: 'cost', now, horizonSeconds: 86400 });
  assert.equal(short.moves.length, 0);
});

test('cost objective: a site is left, or drawn, exactly when the saving pays the move back within the horizon', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  const priced = (a: number, b: number) => {
    const raw = envFile(8);
    for (const h of ['a1', 'a2', 'b1', 'b2'] as const) raw.hosts[h] = { ...raw.hosts[h], price: { perVmHour: h[0] === 'a' ? a : b } } as unknown as typeof raw.hosts.a1;
    return parseEnvironment(raw);
  };
  // Moving a 4 GiB VM between sites costs its memory at the link's 0.05 per GB; over a 1 h horizon
  // the hourly saving must exceed that.
  const moveCost = (4 * 2 ** 30 * 0.05) / 1e9;
  const plan = (a: number, b: number, host: string) => planMoves([], [vm('vm1', host, 4)], priced(a, b), { objective: 'cost', now, horizonSeconds: 3600 });
  for (const [where, from, cheaper] of [
    ['drawn to b when b becomes cheaper', 'a1', (d: number) => [0.5, 0.5 - d] as const],
    ['leaves b when b becomes dearer', 'b1', (d: number) => [0.5, 0.5 + d] as const],
  ] as const) {
    const [a1, b1] = cheaper(moveCost * 0.98);
    assert.equal(plan(a1, b1, from).moves.length, 0, `${where}: a saving 2 % short of paying back moves nothing`);
    const [a2, b2] = cheaper(moveCost * 1.02);
    const moves = plan(a2, b2, from).moves;
    assert.equal(moves.length, 1, `${where}: 2 % beyond paying back, it moves`);
    assert.ok(moves[0]!.paybackSeconds > 3500 && moves[0]!.paybackSeconds < 3600, `pays back in ${moves[0]!.paybackSeconds} s`);
  }
});

test('initial placement: groups:2 of 8 VMs land one group per site; too big a cluster is refused', () => {
  const env = parseEnvironment(envFile(2));
  const vms = Array.from({ length: 8 }, (_, i) => ({ name: `n${i + 1}`, memoryKiB: GiB, vcpus: 1 }));
  const out = placeCluster({ vms, pattern: 'groups:2' }, env, { objective: 'time' });
  const site = new Map(out.assignment.map((a) => [a.vm, a.site]));
  assert.equal(new Set(['n1', 'n2', 'n3', 'n4'].map((v) => site.get(v))).size, 1);
  assert.equal(new Set(['n5', 'n6', 'n7', 'n8'].map((v) => site.get(v))).size, 1);
  assert.notEqual(site.get('n1'), site.get('n5'));
  assert.equal(out.score.interSiteBytes, 0);
  const big = Array.from({ length: 9 }, (_, i) => ({ name: `n${i}`, memoryKiB: GiB, vcpus: 1 }));
  assert.throws(() => placeCluster({ vms: big, pattern: 'all' }, env, { objective: 'time' }), /needs 9.0 GiB and 9 vCPUs but the available hosts have 8.0 GiB/);
});

test('resources objective consolidates onto fewer hosts', () => {
  const env = parseEnvironment(envFile(8));
  const vms = [vm('vm1', 'a1'), vm('vm2', 'a2'), vm('vm3', 'b1'), vm('vm4', 'b2')];
  const plan = planMoves([t('vm1', 'vm2', 1), t('vm3', 'vm4', 1)], vms, env, { objective: 'resources', horizonSeconds: 86400 });
  assert.equal(plan.before.hostsUsed, 4);
  assert.equal(plan.after.hostsUsed, 1, 'four 1 GiB VMs fit on one 8 GiB, 4 vCPU host');
});
