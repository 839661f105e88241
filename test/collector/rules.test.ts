import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Registry } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { policyOf } from '../../src/libvirt/client.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { decide, type DecisionInput } from '../../src/manager/decide.js';
import { readCollector, rulesOf } from '../../src/placement/fromCollector.js';
import { readDomainXml } from '../../src/libvirt/domxml.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { L, registerHosts, report } from './fixtures.js';

/**
 * The rules end to end over a real Redis: metadata rules as an agent publishes them (the domain XML
 * read by the agent's own reader, written by the Registry), a configuration file's rules: section,
 * and the commands that obey them: rules, rules export, plan, migrate.
 */

const MAIN = join(packageRoot, 'dist/src/cli/main.js');
const GiB = 1 << 20; // KiB
let server: TestRedis;
let dir: string;
let redis: Redis;
const { VIRT_COHORT_REDIS: _ignored, VIRT_COHORT_CONFIG: _none, ...childEnv } = process.env;

function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 30_000, env: childEnv }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }));
  });
}

const APART = `<domain><metadata><vc:policy xmlns:vc="http://virt-cohort.org/xmlns/libvirt/1"><vc:apart group="db" scope="host"/></vc:policy></metadata></domain>`;

async function config(name: string, text: string): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, text);
  return f;
}

/** app and db1 on a1, db2 on b1 (sites a: a1, a2; b: b1), all three talking; db1 and db2 kept apart by host in their metadata. */
before(async () => {
  server = await TestRedis.start();
  dir = await mkdtemp(join(tmpdir(), 'vc-rules-'));
  redis = new Redis(server.url);
  const store = new Store(redis);
  const registry = new Registry(redis);
  const current = Math.floor(Date.now() / 1000 / L) * L;
  const live = await registerHosts(redis, [
    ['a1', 'a'],
    ['a2', 'a'],
    ['b1', 'b'],
  ]);
  const { rules } = policyOf(readDomainXml(APART));
  const vm = (host: string, site: string, meta?: string) => ({ uuid: '', host, site, state: 'running' as const, mac: '', addresses: [], memoryKiB: GiB, vcpus: 1, ...(meta && { rules: meta }) });
  await registry.putVm('app', vm('a1', 'a'));
  await registry.putVm('db1', vm('a1', 'a', rules));
  await registry.putVm('db2', vm('b1', 'b', rules));
  const n = 3000;
  for (let p = current - 20 * L; p <= current + 5 * L; p += L) {
    await store.apply({
      ...report('a1', p, [
        ['db2>app', n, n * 1000],
        ['db2>db1', n, n * 1000],
        ['db1>app', n, n * 1000],
        ['app>db1', n, n * 1000],
      ]),
      site: 'a',
    });
    await store.apply({
      ...report('b1', p, [
        ['app>db2', n, n * 1000],
        ['db1>db2', n, n * 1000],
      ]),
      site: 'b',
    });
    await store.apply({ ...report('a2', p, []), site: 'a' });
  }
  await live();
});

after(async () => {
  redis.disconnect();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

test('rules lists the metadata and configuration rules with their sources; an unknown VM is a warning', async () => {
  const file = await config('ok.yaml', 'rules:\n  - name: app-on-a\n    vms: [app]\n    must: { site: a }\n  - name: ghost\n    together: [web-*]\n    scope: site\n');
  const r = await cli('rules', '--redis', server.url, '--config', file, '--json');
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { rules: { name: string; kind: string; members: string[]; source: string }[] };
  assert.deepEqual(
    out.rules.map((x) => [x.name, x.kind, x.members.join(','), x.source]),
    [
      ['app-on-a', 'must', 'app', `${file} rules[0]`],
      ['ghost', 'together', '', `${file} rules[1]`],
      ['db', 'apart', 'db1,db2', 'domain metadata of db1, db2'],
    ],
  );
  assert.match(r.err, new RegExp(`warning: rule ghost \\(${file} rules\\[1\\]\\) names web-\\*, which matches no known VM`));
  const human = await cli('rules', '--redis', server.url, '--config', file);
  assert.match(human.out, /NAME +KIND +VMS +WHERE +APPLIES TO +SOURCE\napp-on-a +must +app +site a +app +/);
});

test('contradictory rules: an error naming both, with where each came from; exit 2', async () => {
  const file = await config('bad.yaml', 'rules:\n  - name: dbs-together\n    together: [db1, db2]\n    scope: host\n');
  const r = await cli('rules', '--redis', server.url, '--config', file);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, new RegExp(`error: rule dbs-together \\(${file} rules\\[0\\]\\) keeps db1, db2 together by host, and rule db \\(domain metadata of db1, db2\\) keeps them apart by host`));
  const scope = await config('scope.yaml', 'rules:\n  - apart: [db1, db2]\n    scope: rack\n');
  const s = await cli('rules', '--redis', server.url, '--config', scope);
  assert.equal(s.code, 2);
  assert.match(s.err, /scope.yaml:3:\d+: rules.0.scope must be one of host, site \(got "rack"\)/);
});

test('plan gathers the group into one site and keeps the replicas on two hosts; without the rule they share one', async () => {
  const r = await cli('plan', '--redis', server.url, '--no-config', '--json');
  assert.equal(r.code, 0, r.err);
  const plan = JSON.parse(r.out) as { moves: { vm: string; to: string; reason: string }[]; after: { interSiteBytes: number }; broken: string[] };
  assert.deepEqual(
    plan.moves.map((m) => [m.vm, m.to]),
    [['db2', 'a2']],
  );
  assert.equal(plan.after.interSiteBytes, 0);
  assert.deepEqual(plan.broken, []);
});

test('migrate refuses a move that breaks a rule, and names it', async () => {
  const r = await cli('migrate', 'db2', 'a1', '--redis', server.url);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /db2 to a1 would break apart from db1 by host \(rule db, domain metadata of db1, db2\): choose another host, or change the rule/);
  const file = await config('prefer.yaml', 'rules:\n  - name: db2-on-b\n    vms: [db2]\n    prefer: { site: b }\n');
  const soft = await cli('migrate', 'db2', 'a2', '--redis', server.url, '--config', file);
  assert.equal(soft.code, 2, soft.err);
  assert.match(soft.err, /would break should run on site b \(rule db2-on-b, .*prefer.yaml rules\[0\]\): choose another host, or pass --force/);
});

test('rules export: the learned group and the rules, as Proxmox rules with the VMIDs given', async () => {
  const r = await cli('rules', 'export', '--format', 'proxmox', '--redis', server.url, '--no-config', '--vmid', 'db1=101', '--vmid', 'db2=102', '--vmid', 'app=100');
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /\nnode-affinity: vc-group-1\n\tcomment app, db1, db2 together by site; learned from traffic \(virt-cohort groups\)\n\tresources vm:100,vm:101,vm:102\n\tnodes a1,a2\n\tstrict 0\n/,
  );
  assert.match(r.out, /\nresource-affinity: db\n\tcomment db1, db2 apart by host; domain metadata of db1, db2\n\tresources vm:101,vm:102\n\taffinity negative\n/);
  const bad = await cli('rules', 'export', '--format', 'vmware', '--redis', server.url, '--no-config');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--format 'vmware' is not known: use one of proxmox, openstack, kubevirt, json/);
});

test('the manager obeys the rules: its plan, every order, and a drain that says which rule blocks it', async () => {
  const view = await readCollector(redis, { query: { type: 'weighted', span: 10, maxWaitMs: 5000, approx: true } });
  const rules = rulesOf(view).rules;
  const base: DecisionInput = { view, settings: { ...DEFAULT_MANAGER, confirmRounds: 1 }, streak: new Map(), cooldowns: new Map(), closed: new Map(), now: Date.now(), rules };
  assert.deepEqual(
    decide(base).orders.map((o) => `${o.vm} ${o.from}->${o.to}`),
    ['db2 b1->a2'],
  );
  assert.deepEqual(
    decide({ ...base, rules: [] }).orders.map((o) => `${o.vm} ${o.from}->${o.to}`),
    ['db2 b1->a1'],
    'without the rules the replicas would share a host',
  );
  const drained = { ...view, registry: view.registry.map((h) => (h.host === 'a1' ? { ...h, draining: true } : h)) };
  const held = { ...base, view: drained, settings: { ...base.settings, confirmRounds: 2 } };
  const drain = decide(held);
  const db1 = drain.orders.find((o) => o.vm === 'db1');
  assert.equal(db1?.to, 'a2', 'db1 leaves a1, never for b1 where db2 is');
  assert.equal(drain.orders.find((o) => o.vm === 'app')?.from, 'a1');
  const blocked = decide({ ...held, closed: new Map([['a2', 'its routes are not vouched for']]) });
  assert.deepEqual(
    blocked.skipped.filter((x) => x.vm === 'db1' && x.to === '-').map((x) => x.why),
    ['cannot leave its draining host without breaking a rule: b1: apart from db2 by host (rule db, domain metadata of db1, db2)'],
  );
  assert.ok(!blocked.orders.some((o) => o.vm === 'db1'));
  const pinned = decide({ ...held, rules: [...rules, { name: 'pin-db1', kind: 'pin', vms: ['db1'], source: 'manager.exclude' }] });
  assert.deepEqual(
    pinned.skipped.filter((x) => x.vm === 'db1').map((x) => x.why),
    ['cannot leave its draining host: it is pinned (rule pin-db1, manager.exclude)'],
  );
  assert.ok(!pinned.orders.some((o) => o.vm === 'db1'), 'a drain never moves a pinned VM');
});

test('host drain says where each VM would go, and which rule keeps one there', async () => {
  const r = await cli('host', 'drain', 'a1', '--redis', server.url);
  try {
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /^a1 is draining: the manager \(with --apply\) evacuates it now, under the rules\n/);
    assert.match(r.out, /\n {2}db1 -> a2: a1 is draining; a2 /, 'db1 never goes to b1, where db2 is');
    const file = await config('pinned-b.yaml', 'rules:\n  - name: db1-not-b\n    vms: [db1]\n    must: { host: [a1, b1] }\n');
    const blocked = await cli('host', 'drain', 'a1', '--redis', server.url, '--config', file);
    assert.equal(blocked.code, 1, blocked.err);
    assert.match(
      blocked.out,
      /\n {2}db1 stays: cannot leave its draining host without breaking a rule: a2: must run on host a1 or b1 \(rule db1-not-b, .*pinned-b.yaml rules\[0\]\); b1: apart from db2 by host \(rule db, domain metadata of db1, db2\)\n/,
    );
  } finally {
    await cli('host', 'undrain', 'a1', '--redis', server.url);
  }
});
