import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Registry, type HostRecord } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { labEnvironment } from '../../src/lab/environment.js';
import { parseEnvironment } from '../../src/placement/index.js';
import { defaultEnvironment, inventoryOf, planFromCollector, readCollector } from '../../src/placement/fromCollector.js';
import { decide, quotaDeadlines, type DecisionInput } from '../../src/manager/decide.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { L, report } from './fixtures.js';

const MAIN = join(packageRoot, 'dist/src/cli/main.js');
const GiB = 1 << 20; // KiB
let server: TestRedis;
let dir: string;
const dbs: Redis[] = [];

const { VIRT_COHORT_REDIS: _ignored, ...childEnv } = process.env;

interface Run {
  code: number;
  out: string;
  err: string;
}

function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 30_000, env: childEnv }, (e, out, err) => {
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err });
    });
  });
}

const url = (db: number) => `${server.url}/${db}`;

function hostRecord(site: string, uri: string): HostRecord {
  return { site, uri, cpus: 8, memoryKiB: 8 * GiB, freeMemoryKiB: 6 * GiB, vms: 2, sensor: 'ebpf', periodSeconds: L };
}

/**
 * Two pairs, x1-x2 and y1-y2, each split between host a1 (site a) and host b1 (site b). Both hosts
 * are live and reported every period around now (each counts what its VMs receive), so every span
 * the CLI asks for is complete whenever it runs. `perPeriod`: messages each VM receives per period.
 */
async function fill(db: number, perPeriod: number, uri = 'qemu:///system'): Promise<void> {
  const redis = new Redis(url(db));
  dbs.push(redis);
  const store = new Store(redis);
  const registry = new Registry(redis);
  const now = Date.now();
  const current = Math.floor(now / 1000 / L) * L;
  await redis.hset(K.settings, 'periodSeconds', L);
  await registry.registerHost('a1', hostRecord('a', uri), now - 3_600_000);
  await registry.registerHost('b1', hostRecord('b', uri), now - 3_600_000);
  const vm = (host: string, site: string) => ({ uuid: '', host, site, state: 'running' as const, mac: '', addresses: [], memoryKiB: GiB, vcpus: 1 });
  await registry.putVm('x1', vm('a1', 'a'));
  await registry.putVm('y1', vm('a1', 'a'));
  await registry.putVm('x2', vm('b1', 'b'));
  await registry.putVm('y2', vm('b1', 'b'));
  await registry.putVm('gone', { ...vm('b1', 'b'), state: 'stopped' });
  const bytes = perPeriod * 1000;
  for (let p = current - 20 * L; p <= current + 5 * L; p += L) {
    await store.apply({
      ...report('a1', p, [
        ['x2>x1', perPeriod, bytes],
        ['y2>y1', perPeriod, bytes],
      ]),
      site: 'a',
    });
    await store.apply({
      ...report('b1', p, [
        ['x1>x2', perPeriod, bytes],
        ['y1>y2', perPeriod, bytes],
      ]),
      site: 'b',
    });
  }
  // Registered last, so the hosts are live (seen within 2 periods) for the whole test.
  await registry.registerHost('a1', hostRecord('a', uri), Date.now() + 600_000);
  await registry.registerHost('b1', hostRecord('b', uri), Date.now() + 600_000);
}

before(async () => {
  server = await TestRedis.start();
  dir = await mkdtemp(join(tmpdir(), 'vc-plan-'));
  await fill(0, 3000); // 100 messages/s of 1000 B each way, per pair
  await fill(1, 3, ''); // 0.1 message/s; hosts without a libvirt URI
});

after(async () => {
  for (const r of dbs) r.disconnect();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

interface MoveJson {
  vm: string;
  from: string;
  to: string;
  fromSite: string;
  toSite: string;
  gain: number;
  migrationSeconds: number;
  paybackSeconds: number;
  reason: string;
}

test('plan --json: moves bring each split pair into one site, each with its reason', async () => {
  const r = await cli('plan', '--redis', url(0), '--json');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /no --env given and none stored in Redis \(virt-cohort env apply\): using the registry's 2 site\(s\) and 2 host\(s\), links of 20 ms and 1000 Mbit\/s/);
  const plan = JSON.parse(r.out) as { moves: MoveJson[]; before: { interSiteBytes: number }; after: { interSiteBytes: number }; noMove?: string; answer: { type: string; periods: number[] } };
  assert.equal(plan.answer.type, 'weighted');
  assert.equal(plan.answer.periods.length, 10);
  assert.equal(plan.noMove, undefined);
  assert.equal(plan.moves.length, 2, JSON.stringify(plan.moves));
  const site = new Map([
    ['x1', 'a'],
    ['y1', 'a'],
    ['x2', 'b'],
    ['y2', 'b'],
  ]);
  for (const m of plan.moves) {
    assert.equal(site.get(m.vm), m.fromSite);
    site.set(m.vm, m.toSite);
    assert.ok(m.gain > 0 && m.migrationSeconds > 0 && m.paybackSeconds <= 3600, JSON.stringify(m));
    assert.match(m.reason, new RegExp(`^${m.vm} moves from ${m.from} to ${m.to} \\(from site ${m.fromSite} to site ${m.toSite}\\); it exchanges .* pays back after`));
  }
  assert.equal(site.get('x1'), site.get('x2'));
  assert.equal(site.get('y1'), site.get('y2'));
  // Per second: 2 pairs x 2 directions x 100 000 B/s cross sites before, nothing after.
  assert.equal(plan.before.interSiteBytes, 400_000);
  assert.equal(plan.after.interSiteBytes, 0);

  const human = await cli('plan', '--redis', url(0), '--max-moves', '1');
  assert.equal(human.code, 0, human.err);
  assert.match(human.out, /^plan for the time objective .* at most 1 move\(s\); 4 running VM\(s\) on 2 live host\(s\)/);
  assert.match(human.out, /\n# +VM +FROM +TO +GAIN +MIGRATION +PAYBACK\n1 +[xy][12] +/);
  assert.match(human.out, /\n1\. [xy][12] moves from/);
});

test('plan: excluded VMs never move', async () => {
  const r = await cli('plan', '--redis', url(0), '--json', '--exclude', 'x1,x2,nosuch');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /--exclude names no running VM: nosuch/);
  const moves = (JSON.parse(r.out) as { moves: MoveJson[] }).moves;
  assert.equal(moves.length, 1);
  assert.match(moves[0]!.vm, /^y[12]$/);
});

test('plan: stable small traffic and a short horizon give an explicit no move', async () => {
  const r = await cli('plan', '--redis', url(1), '--horizon', '1m', '--json');
  assert.equal(r.code, 0, r.err);
  const plan = JSON.parse(r.out) as { moves: MoveJson[]; noMove: string };
  assert.deepEqual(plan.moves, []);
  assert.match(plan.noMove, /pays back only after .* beyond the horizon of 60 s/);
  const human = await cli('plan', '--redis', url(1), '--horizon', '1m');
  assert.match(human.out, /\nno move: moving 2 VMs would save/);
});

test('groups --json finds the two pairs, each split across the sites', async () => {
  for (const method of ['cohesive', 'louvain', 'seed']) {
    const r = await cli('groups', '--redis', url(0), '--json', '--method', method);
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out) as { groups: { members: string[]; internal: number; external: number; sites: string[] }[] };
    assert.deepEqual(
      out.groups.map((g) => g.members).sort(),
      [
        ['x1', 'x2'],
        ['y1', 'y2'],
      ],
      method,
    );
    for (const g of out.groups) {
      assert.equal(g.internal, 200_000); // bytes/s, both directions
      assert.equal(g.external, 0);
      assert.deepEqual(g.sites, ['a', 'b']);
    }
  }
  const human = await cli('groups', '--redis', url(0));
  assert.match(human.out, /GROUP +VMS +INTERNAL +EXTERNAL +INSIDE +SPLIT COST +SITES +MEMBERS\n1 +2 +200 KB\/s +0 B\/s +100 % +100 % +a,b +x1,x2/);
  assert.match(human.out, /1: one pair: splitting it would cut all its 200 KB\/s; it exchanges nothing with the rest\./);
  const tree = JSON.parse((await cli('groups', '--redis', url(0), '--json')).out) as { groups: { split: { share: number; parts: { members: string[] }[] } }[] };
  assert.deepEqual(
    tree.groups.map((g) => [g.split.share, g.split.parts.map((p) => p.members.join())]),
    [
      [1, ['x1', 'x2']],
      [1, ['y1', 'y2']],
    ],
  );
});

test('lab env: the environment round-trips through parseEnvironment and drives plan --env', async () => {
  const lab = { name: 't', index: 101, sites: 3, hostsPerSite: 2, delayMs: 25, rateMbit: 500, redisPort: 16401 };
  const env = parseEnvironment(JSON.parse(JSON.stringify(labEnvironment(lab))), 'lab env');
  assert.deepEqual(
    env.sites.map((s) => s.name),
    ['a', 'b', 'c'],
  );
  assert.deepEqual(
    env.hosts.map((h) => `${h.name}@${h.site}`),
    ['a1@a', 'a2@a', 'b1@b', 'b2@b', 'c1@c', 'c2@c'],
  );
  assert.equal(env.links.length, 3);
  for (const l of env.links) assert.deepEqual([l.latencyMs, l.bandwidthMbit, l.transferPricePerGB], [25, 500, 0]);
  assert.equal(env.cpuOvercommit, 16);
  const file = join(dir, 'lab-env.json');
  await writeFile(file, JSON.stringify(labEnvironment(lab)));
  const r = await cli('plan', '--redis', url(0), '--env', file, '--json');
  assert.equal(r.code, 0, r.err);
  assert.doesNotMatch(r.err, /no --env given/);
  const moves = (JSON.parse(r.out) as { moves: MoveJson[] }).moves;
  assert.equal(moves.length, 2);
  // 1 GiB over 500 Mbit/s.
  for (const m of moves) assert.ok(Math.abs(m.migrationSeconds - (8 * 2 ** 30) / 500e6) < 0.01, String(m.migrationSeconds));
});

test('the exported planFromCollector gives the same plan and the inventory behind it', async () => {
  const redis = dbs[0]!;
  const r = await planFromCollector(redis, { objective: 'time', horizonSeconds: 3600, maxMoves: 5 });
  assert.equal(r.answer.status, 'ok');
  assert.equal(r.plan?.moves.length, 2);
  assert.deepEqual(
    r.vms.map((v) => v.name),
    ['x1', 'x2', 'y1', 'y2'],
  ); // the stopped VM is left out
  assert.deepEqual(
    r.hosts.map((h) => h.name),
    ['a1', 'b1'],
  );
  assert.equal(r.defaultEnvironment, true);
  assert.equal(r.traffic.find((t) => t.src === 'x1' && t.dst === 'x2')?.messages, 100); // per second
  assert.deepEqual(
    defaultEnvironment(r.registry).links.map((l) => l.sites),
    [['a', 'b']],
  );
});

test("decide, the manager's one decision: hysteresis, cooldown, closed hosts, draining, and the same answer for the same input", async () => {
  const view = await readCollector(dbs[0]!, { query: { type: 'weighted', span: 10, maxWaitMs: 5000, approx: true } });
  const now = Date.now();
  const base: DecisionInput = { view, settings: { ...DEFAULT_MANAGER, confirmRounds: 2 }, streak: new Map(), cooldowns: new Map(), closed: new Map(), now };
  const first = decide(base);
  assert.equal(first.plan?.moves.length, 2);
  assert.equal(first.orders.length, 0, 'proposed once: held for the second round');
  assert.deepEqual(
    first.skipped.map((s) => s.why),
    ['proposed 1 round(s) in a row; moves after 2', 'proposed 1 round(s) in a row; moves after 2'],
  );
  assert.ok(first.interSite > 0.99, `every byte crosses sites (${first.interSite})`);
  assert.deepEqual(first.groups.map((g) => [...g].sort()).sort(), [
    ['x1', 'x2'],
    ['y1', 'y2'],
  ]);

  const second = decide({ ...base, streak: first.streak });
  assert.deepEqual(
    second.orders.map((o) => o.vm),
    first.plan?.moves.map((m) => m.vm),
    'confirmed: the same moves go',
  );
  assert.deepEqual([...second.streak.values()], [2, 2]);
  assert.deepEqual(decide({ ...base, streak: first.streak }), second, 'the same input gives the same decision');

  const cooling = decide({ ...base, streak: first.streak, cooldowns: new Map([[second.orders[0]!.vm, now + 60_000]]) });
  assert.equal(cooling.orders.length, 1);
  assert.match(cooling.skipped[0]!.why, /^in cooldown until /);
  assert.equal(decide({ ...base, streak: first.streak, cooldowns: new Map([[second.orders[0]!.vm, now - 1]]) }).orders.length, 2, 'a cooldown that ended holds nothing');

  const shut = decide({ ...base, streak: first.streak, closed: new Map([['b1', 'its routes are not vouched for']]) });
  assert.equal(shut.orders.filter((o) => o.from === 'b1' || o.to === 'b1').length, 0, 'nothing moves from or to a closed host');

  const drained = { ...view, registry: view.registry.map((h) => (h.host === 'a1' ? { ...h, draining: true } : h)) };
  const drain = decide({ ...base, view: drained });
  assert.deepEqual(drain.orders.map((o) => `${o.vm} ${o.from}->${o.to}`).sort(), ['x1 a1->b1', 'y1 a1->b1'], 'a draining host is emptied at once, no confirmation');
  assert.deepEqual(decide({ ...base, view: { ...view, answer: { status: 'reformulate', reason: 'no periods' } as typeof view.answer } }).note, 'the collector handed the query back: no periods');
});

test('decide evacuates a host silent for evacuateSilent under the rules, and leaves moves already running alone', async () => {
  const view = await readCollector(dbs[0]!, { query: { type: 'weighted', span: 10, maxWaitMs: 5000, approx: true } });
  const now = Date.now();
  // a1's agent last reported 11 minutes ago: the view pins its VMs (no plan touches them), as readCollector would.
  const registry = view.registry.map((h) => (h.host === 'a1' ? { ...h, lastSeen: now - 660_000 } : h));
  const silent = { ...view, ...inventoryOf(registry, view.directory, { periodSeconds: view.periodSeconds, now }) };
  assert.ok(silent.vms.filter((v) => v.host === 'a1').every((v) => v.pinned));
  const base: DecisionInput = { view: silent, settings: { ...DEFAULT_MANAGER, confirmRounds: 2 }, streak: new Map(), cooldowns: new Map(), closed: new Map(), now };
  const off = decide({ ...base, settings: { ...base.settings, evacuateSilentMs: 0 } });
  assert.deepEqual(off.orders, [], 'evacuateSilent 0: a silent host is left as it is');
  const gone = decide(base);
  assert.deepEqual(gone.orders.map((o) => `${o.vm} ${o.from}->${o.to}`).sort(), ['x1 a1->b1', 'y1 a1->b1']);
  for (const o of gone.orders) assert.match(o.reason ?? '', /^a1 has been silent for 660 s; b1 /);
  assert.deepEqual(decide({ ...base, settings: { ...base.settings, evacuateSilentMs: 700_000 } }).orders, [], 'not silent long enough');
  // A pin in the directory still holds on a silent host, and the decision says so.
  const pinnedDir = silent.directory.map((v) => (v.name === 'x1' ? { ...v, pinned: true } : v));
  const pinned = decide({ ...base, view: { ...silent, directory: pinnedDir } });
  assert.deepEqual(
    pinned.orders.map((o) => o.vm),
    ['y1'],
  );
  assert.deepEqual(
    pinned.skipped.map((x) => `${x.vm}: ${x.why}`),
    ['x1: cannot leave its silent host now: it is pinned by its metadata, or arriving by a migration'],
  );
  // x1 is already on its way (another decision's migration): only y1 is decided, and b1 has room for both.
  const moving = decide({ ...base, moving: [{ vm: 'x1', from: 'a1', to: 'b1' }] });
  assert.deepEqual(
    moving.orders.map((o) => `${o.vm} ${o.from}->${o.to}`),
    ['y1 a1->b1'],
  );
  // The live manager's rounds: a move running is neither planned again nor confirmed twice.
  const first = decide({ ...base, view });
  const [m0] = first.plan!.moves;
  const second = decide({ ...base, view, streak: first.streak, moving: [{ vm: m0!.vm, from: m0!.from, to: m0!.to }] });
  assert.equal(second.orders.length, 1, JSON.stringify(second.orders));
  assert.notEqual(second.orders[0]!.vm, m0!.vm);
});

test('decide empties a host before its quota ends, with the time its migrations need counted, and not before', async () => {
  const view = await readCollector(dbs[0]!, { query: { type: 'weighted', span: 10, maxWaitMs: 5000, approx: true } });
  const now = Date.now();
  const until = now + 3_600_000;
  const ending = { ...view, environment: { ...view.environment, hosts: view.environment.hosts.map((h) => (h.name === 'a1' ? { ...h, availableUntil: until } : h)) } };
  const margin = 60_000;
  const q = quotaDeadlines(ending, { marginMs: margin }).get('a1')!;
  const onA1 = ending.vms.filter((v) => v.host === 'a1');
  assert.equal(onA1.length, 2);
  // Each VM's memory twice over the link out of site a, plus 8 s, one after the other; then the margin.
  const bps = ending.environment.links[0]!.bandwidthMbit * 1e6;
  const need = onA1.reduce((ms, v) => ms + 8000 + (2 * v.memoryKiB * 8192 * 1000) / bps, 0);
  assert.ok(Math.abs(until - margin - need - q.at) < 1, `starts ${until - q.at} ms before the end, expected ${margin + need}`);
  assert.match(q.why, /^a1's quota ends at .*Z; 2 VM\(s\) need about \d+ s to leave, and 60 s are kept to spare$/);
  // The decisions are an hour ahead, when every agent's last report would be old: silence is not judged here.
  const base: DecisionInput = {
    view: ending,
    settings: { ...DEFAULT_MANAGER, confirmRounds: 2, quotaMarginMs: margin, evacuateSilentMs: 0 },
    streak: new Map(),
    cooldowns: new Map(),
    closed: new Map(),
    now: q.at - 1,
  };
  const before = decide(base);
  assert.deepEqual(before.orders, [], 'a millisecond before its deadline: nothing leaves a1 (the plan waits for confirmation)');
  const at = decide({ ...base, now: q.at });
  assert.deepEqual(at.orders.map((o) => `${o.vm} ${o.from}->`).sort(), ['x1 a1->', 'y1 a1->']);
  for (const o of at.orders) assert.ok(o.reason?.startsWith(q.why), o.reason);
  assert.ok(at.orders.every((o) => o.to !== 'a1'));
  const pinnedDir = ending.directory.map((v) => (v.name === 'x1' ? { ...v, pinned: true } : v));
  const pinned = decide({ ...base, now: q.at, view: { ...ending, directory: pinnedDir } });
  assert.ok(
    pinned.skipped.some((x) => `${x.vm}: ${x.why}` === 'x1: cannot leave its host before its quota ends now: it is pinned by its metadata, or arriving by a migration'),
    JSON.stringify(pinned.skipped),
  );
  assert.deepEqual(
    pinned.orders.map((o) => o.vm),
    ['y1'],
  );
  assert.equal(quotaDeadlines(view, { marginMs: margin }).size, 0, 'no quota, no deadline');
  // Recent migrations took 40 s each: the evacuation counts that, not the link's estimate.
  const slow = quotaDeadlines(ending, { marginMs: margin, migrationMs: 40_000 }).get('a1')!;
  assert.equal(slow.at, until - margin - 2 * 40_000);
  assert.deepEqual(
    decide({ ...base, now: slow.at, migrationMs: 40_000 })
      .orders.map((o) => o.vm)
      .sort(),
    ['x1', 'y1'],
  );
  // b1's quota ends too, a minute later: its evacuation counts a1's VMs as well, since they leave first.
  const both = { ...ending, environment: { ...ending.environment, hosts: ending.environment.hosts.map((h) => (h.name === 'b1' ? { ...h, availableUntil: until + 60_000 } : h)) } };
  const qs = quotaDeadlines(both, { marginMs: margin });
  const onB1 = both.vms.filter((v) => v.host === 'b1');
  const needB1 = onB1.reduce((ms, v) => ms + 8000 + (2 * v.memoryKiB * 8192 * 1000) / bps, 0);
  assert.ok(Math.abs(until + 60_000 - margin - need - needB1 - qs.get('b1')!.at) < 1);
  assert.match(qs.get('b1')!.why, /with 1 other host\(s\) whose quota ends by then/);
  assert.equal(qs.get('a1')!.at, q.at, "a1's own deadline is unchanged by a later quota");
});

test('an environment file whose hosts do not match the registry: the differences are listed and the command goes on with what is known', async () => {
  const file = join(dir, 'mismatch.json');
  // a1 as registered, a9 unknown to the registry, b1 registered but not listed.
  await writeFile(file, JSON.stringify({ sites: { a: {}, b: {} }, hosts: { a1: { site: 'a' }, a9: { site: 'a' } }, links: [{ sites: ['a', 'b'], latencyMs: 10, bandwidthMbit: 1000 }] }));
  const r = await cli('groups', '--redis', url(0), '--env', file, '--json');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /the environment file does not list registered host\(s\) b1: each is taken as the registry has it \(speed 1, price 0\)/);
  assert.match(r.err, /the environment file lists host\(s\) a9 that no agent has registered: they receive no VM until their agent reports/);
  assert.equal((JSON.parse(r.out) as { groups: unknown[] }).groups.length, 2);
  // b1's site is not in the file: b1 and its VMs are left out, the rest is answered.
  const oneSite = join(dir, 'one-site.json');
  await writeFile(oneSite, JSON.stringify({ sites: { a: {} } }));
  const s = await cli('groups', '--redis', url(0), '--env', oneSite, '--json');
  assert.equal(s.code, 0, s.err);
  assert.match(s.err, /host b1 reports site 'b', which the environment file does not define: it is left out \(and its VMs\)/);
  assert.deepEqual((JSON.parse(s.out) as { groups: { members: string[] }[] }).groups.flatMap((g) => g.members).sort(), ['x1', 'y1'], 'the VMs of the hosts that are known');
});

test('bad input exits 2 with a message that says what to do', async () => {
  const unknownKey = join(dir, 'typo.json');
  await writeFile(unknownKey, JSON.stringify({ sites: { a: {}, b: {} }, links: [{ sites: ['a', 'b'], latencyMs: 1, bandwidthMbit: 10, latncy: 3 }] }));
  const notJson = join(dir, 'env.yaml');
  await writeFile(notJson, 'sites:\n  a: {}\n');
  const cases: [string[], RegExp][] = [
    [['plan', '--env', unknownKey], /links\[0\] has unknown key "latncy": remove it or use one of sites, latencyMs/],
    [['plan', '--env', join(dir, 'missing.json')], /cannot read environment file .*missing\.json/],
    [['plan', '--env', notJson], /is not valid JSON/],
    [['groups', '--env', unknownKey], /unknown key "latncy"/],
    [['plan', '--objective', 'speed'], /--objective 'speed' is not known: use one of time, cost, resources/],
    [['plan', '--horizon', 'soon'], /--horizon 'soon' is not a duration/],
    [['plan', '--type', 'detail'], /use mean or weighted/],
    [['groups', '--method', 'magic'], /--method 'magic' is not known: use one of cohesive, louvain, seed/],
    [['groups', '--max-cut', '1.2'], /the split criterion \(--max-cut\) is 1.2: give a share above 0 and below 1/],
    [['groups', '--noise', 'x'], /the noise level \(--noise\) is NaN: give a share from 0 up to below 1/],
    [['groups', '--depth', '-1'], /--depth '-1' is not a whole number/],
    [['groups', '--floor', '-5'], /--floor/],
    [['plan', '--default-bandwidth-mbit', '0'], /--default-bandwidth-mbit must be above 0/],
    [['plan', '--lab', 'zz9', '--redis', url(0)], /give either --redis or --lab, not both/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(...args, ...(args.includes('--redis') ? [] : ['--redis', url(0)]));
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re, args.join(' '));
  }
  const unreachable = await cli('plan', '--redis', 'redis://127.0.0.1:1');
  assert.equal(unreachable.code, 2);
  assert.match(unreachable.err, /nothing listens at redis:\/\/127\.0\.0\.1:1 .*: start Redis/);
});

async function clusterFile(name: string, body: unknown): Promise<string> {
  const file = join(dir, name);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, typeof body === 'string' ? body : JSON.stringify(body));
  return file;
}

test('place without --apply assigns every new VM within capacity, each group in one site', async () => {
  const vms = Array.from({ length: 6 }, (_, i) => ({ name: `n${i + 1}`, memoryMiB: 1024, vcpus: 1 }));
  const file = await clusterFile('cluster.json', { vms, pattern: 'groups:2' });
  const r = await cli('place', file, '--redis', url(0), '--json');
  assert.equal(r.code, 0, r.err);
  const placed = JSON.parse(r.out) as { assignment: { vm: string; host: string; site: string }[] };
  assert.deepEqual(
    placed.assignment.map((a) => a.vm),
    vms.map((v) => v.name),
  );
  // Each host: 8 GiB, 6 GiB free with 2 GiB of running VMs; 8 CPUs with 2 vCPUs used.
  const load = new Map([
    ['a1', 2],
    ['b1', 2],
  ]);
  for (const a of placed.assignment) load.set(a.host, load.get(a.host)! + 1);
  for (const [h, n] of load) assert.ok(n <= 8, `${h} holds ${n} GiB`);
  const siteOf = new Map(placed.assignment.map((a) => [a.vm, a.site] as const));
  assert.equal(new Set(['n1', 'n2', 'n3'].map((v) => siteOf.get(v))).size, 1);
  assert.equal(new Set(['n4', 'n5', 'n6'].map((v) => siteOf.get(v))).size, 1);
  const human = await cli('place', file, '--redis', url(0));
  assert.match(human.out, /^6 new VM\(s\) for the time objective .* 4 running VM\(s\) kept where they are/);
  assert.match(human.out, /\nVM +HOST +SITE +MEMORY MiB +VCPUS\nn1 +[ab]1 +[ab] +1024 +1\n/);
  assert.match(human.out, /not applied: add --apply/);
});

test('place: bad clusters exit 2 with the fix', async () => {
  const big = await clusterFile('big.json', { vms: Array.from({ length: 13 }, (_, i) => ({ name: `n${i}`, memoryMiB: 1024, vcpus: 1 })) });
  const typo = await clusterFile('typo.json', { vms: [{ name: 'n1', memoryMiB: 512, vcpus: 1, disk: 3 }] });
  const yaml = await clusterFile('c.yaml', 'vms:\n  - name: n1\n');
  const badPattern = await clusterFile('pattern.json', { vms: [{ name: 'n1', memoryMiB: 512, vcpus: 1 }], pattern: 'star' });
  const templated = await clusterFile('templated.json', { vms: [{ name: 'n1', memoryMiB: 512, vcpus: 1 }], template: 'domain.xml' });
  await writeFile(join(dir, 'domain.xml'), '<domain><name>{{name}}</name><uuid>{{uuid}}</uuid><memory unit="KiB">{{memoryKiB}}</memory></domain>');
  const badTemplate = await clusterFile('sub/bad-template.json', { vms: [{ name: 'n1', memoryMiB: 512, vcpus: 1 }], template: '../disk.xml' });
  await writeFile(join(dir, 'disk.xml'), '<domain><name>{{name}}</name><disk>{{disk}}</disk></domain>');
  const noTemplate = await clusterFile('plain.json', { vms: [{ name: 'n1', memoryMiB: 512, vcpus: 1 }] });
  const cases: [string[], RegExp][] = [
    [
      [big, '--redis', url(0)],
      /the cluster needs 13\.0 GiB and 13 vCPUs but the available hosts have 11\.0 GiB and 60 vCPUs free: remove VMs, shrink them, add hosts, or keep less memory free per host \(reserveMemoryMiB, --reserve-memory\)$/m,
    ],
    [[typo, '--redis', url(0)], /vms\[0\] has unknown key "disk"/],
    [[yaml, '--redis', url(0)], /is not valid JSON .*it is JSON, not YAML/],
    [[join(dir, 'nope.json'), '--redis', url(0)], /cannot read cluster file .*nope\.json/],
    [[badPattern, '--redis', url(0)], /unknown traffic pattern 'star'/],
    [[noTemplate, '--redis', url(0), '--apply'], /--apply needs a libvirt domain XML: add "template"/],
    [[templated, '--redis', url(1), '--apply'], /host [ab]1 has no libvirt URI in the registry/],
    // The registry's URI is not used unless the manager's configuration vouches for it (none here: qemu:///system is local anyway).
    [[templated, '--redis', url(0), '--apply'], /host [ab]1: libvirt URI refused: qemu:\/\/\/system reaches only the machine it runs on/],
    // Checked before anything is defined; the path is relative to the cluster file.
    [[badTemplate, '--redis', url(0), '--apply'], /the domain template has an unknown placeholder \{\{disk\}\}: use \{\{name\}\}/],
  ];
  for (const [args, re] of cases) {
    const r = await cli('place', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re, args.join(' '));
  }
});

test('plan and groups: a live host that has not reported hands the query back, exit 3 (as stats)', async () => {
  const redis = new Redis(url(2));
  dbs.push(redis);
  const registry = new Registry(redis);
  await registry.registerHost('late', hostRecord('a', 'qemu:///system'), Date.now() - 3_600_000);
  await registry.registerHost('late', hostRecord('a', 'qemu:///system'), Date.now() + 600_000);
  for (const cmd of ['plan', 'groups']) {
    const r = await cli(cmd, '--redis', url(2));
    assert.equal(r.code, 3, r.err);
    assert.match(r.out, /^cannot answer weighted over 10 period\(s\) of 30 s .* yet: /);
  }
  const direct = await planFromCollector(redis, { objective: 'time' });
  assert.equal(direct.plan, null);
  assert.equal(direct.answer.status, 'reformulate');
});
