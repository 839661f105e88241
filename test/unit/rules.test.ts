import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PairTraffic } from '../../src/analysis/graph.js';
import type { VmEntry } from '../../src/collector/registry.js';
import { configSchema } from '../../src/config/schema.js';
import { policyOf } from '../../src/libvirt/client.js';
import { readDomainXml } from '../../src/libvirt/domxml.js';
import { parseEnvironment, placeCluster, planMoves, type VmInfo } from '../../src/placement/index.js';
import { checkRules, configRules, metadataRules, rulesInForce, type Rule } from '../../src/placement/rules.js';

const GiB = 1048576;
const t = (src: string, dst: string, messages: number): PairTraffic => ({ src, dst, messages, bytes: messages * 1000 });
const vm = (name: string, host: string, memGiB = 1): VmInfo => ({ name, host, site: host[0]!, memoryKiB: memGiB * GiB, vcpus: 1 });
const env = (hosts = ['a1', 'a2', 'b1', 'b2'], memGiB = 4) =>
  parseEnvironment({
    sites: { a: {}, b: {} },
    hosts: Object.fromEntries(hosts.map((h) => [h, { site: h[0], vcpus: 4, memoryGiB: memGiB }])),
    links: [{ sites: ['a', 'b'], latencyMs: 20, bandwidthMbit: 100 }],
  });
const entry = (name: string, rules: unknown[] | string, over: Partial<VmEntry> = {}): VmEntry => ({
  name,
  uuid: '',
  host: 'a1',
  site: 'a',
  state: 'running',
  mac: '',
  addresses: [],
  memoryKiB: GiB,
  vcpus: 1,
  since: 0,
  pinned: false,
  optOut: false,
  rules: typeof rules === 'string' ? rules : rules.length ? JSON.stringify(rules) : '',
  ...over,
});
const fromYaml = (rules: unknown[]) => configRules(configSchema.parse({ agent: {}, manager: {}, redis: {}, log: {}, rules }).rules, 'config.yaml');

test('the configuration rules keep their source; an entry that says two things or nothing is an error naming it', () => {
  const { rules, issues } = fromYaml([
    { name: 'db-apart', apart: ['db1', 'db2'], scope: 'host' },
    { together: ['web-*'], scope: 'site' },
    { vms: ['db1'], must: { site: 'a' } },
    { vms: ['web-*'], prefer: { host: ['b1', 'b2'] } },
    { together: ['x'], apart: ['y'] },
    { vms: ['x'], must: { host: 'a1', site: 'a' } },
    { must: { host: 'a1' } },
  ]);
  assert.deepEqual(
    rules.map((r) => [r.name, r.kind, r.scope ?? r.hosts ?? r.sites, r.source]),
    [
      ['db-apart', 'apart', 'host', 'config.yaml rules[0]'],
      ['rules-1', 'together', 'site', 'config.yaml rules[1]'],
      ['rules-2', 'must', ['a'], 'config.yaml rules[2]'],
      ['rules-3', 'prefer', ['b1', 'b2'], 'config.yaml rules[3]'],
    ],
  );
  assert.deepEqual(
    issues.map((i) => i.message),
    [
      'config.yaml rules[4]: has together and apart: write one rule per entry',
      'config.yaml rules[5]: must takes either host or site (one name or a list), not both',
      'config.yaml rules[6]: must needs vms: the VMs (names or patterns) it applies to',
    ],
  );
  assert.throws(() => fromYaml([{ apart: ['a', 'b'], scope: 'rack' }]), /scope/, 'an unknown scope is refused by the schema');
});

test('domain metadata: a named group and its scope, must and prefer; malformed metadata and an unknown scope are errors naming the VM', () => {
  const xml = `<domain><metadata><vc:policy xmlns:vc="http://virt-cohort.org/xmlns/libvirt/1"><vc:apart group="db" scope="host"/><vc:must site="a"/></vc:policy></metadata></domain>`;
  const meta = policyOf(readDomainXml(xml));
  assert.deepEqual(JSON.parse(meta.rules!), [
    { element: 'apart', group: 'db', scope: 'host' },
    { element: 'must', site: 'a' },
  ]);
  // As `virsh metadata --key vc --set '<policy><apart .../></policy>'` leaves it: only the policy element prefixed.
  const set = policyOf(readDomainXml(`<domain><metadata><vc:policy xmlns:vc="http://virt-cohort.org/xmlns/libvirt/1"><apart group="db"/><prefer host="b1,b2"/></vc:policy></metadata></domain>`));
  assert.deepEqual(JSON.parse(set.rules!), [
    { element: 'apart', group: 'db' },
    { element: 'prefer', host: 'b1,b2' },
  ]);
  assert.equal(
    policyOf(readDomainXml('<domain><metadata><x:policy xmlns:x="http://other.example/"><apart group="db"/></x:policy></metadata></domain>')).rules,
    undefined,
    "another namespace's policy is not ours",
  );
  const { rules, issues } = metadataRules([
    entry('db1', meta.rules!),
    entry('db2', [{ element: 'apart', group: 'db' }]),
    entry('db3', [{ element: 'apart', group: 'db', scope: 'site' }]),
    entry('web1', [{ element: 'together', group: 'web', scope: 'rack' }]),
    entry('web2', [{ element: 'near', host: 'a1' }]),
    entry('web3', '{not json'),
    entry('p1', [], { pinned: true }),
  ]);
  assert.deepEqual(
    rules.map((r) => [r.name, r.kind, r.vms, r.source]),
    [
      ['must-db1', 'must', ['db1'], 'domain metadata of db1'],
      ['pin-p1', 'pin', ['p1'], 'domain metadata of p1 (move="never")'],
      ['db', 'apart', ['db1', 'db2'], 'domain metadata of db1, db2'],
    ],
  );
  const text = issues.map((i) => i.message).join('\n');
  assert.match(text, /apart group db: scope host in the domain metadata of db1 but site in that of db3: give every member the same scope/);
  assert.match(text, /domain metadata of web1: <vc:together group="web" scope="rack"\/>: unknown scope 'rack': use host or site/);
  assert.match(text, /domain metadata of web2: <vc:near host="a1"\/>: unknown element/);
  assert.match(text, /domain metadata of web3: its rules cannot be read/);
});

test('checks: an unknown VM is a warning, a contradiction an error naming both rules and sources, an impossible anti-affinity an error', () => {
  const { rules } = fromYaml([
    { name: 'keep', together: ['db1', 'db2'], scope: 'host' },
    { name: 'spread', apart: ['db*'], scope: 'host' },
    { name: 'replicas', together: ['r1', 'r2'], scope: 'site' },
    { name: 'replicas-apart', apart: ['r1', 'r2'], scope: 'host' },
    { name: 'ghost', vms: ['db9'], must: { host: 'a1' } },
    { name: 'onA', vms: ['r1'], must: { site: 'a' } },
    { name: 'onB', vms: ['r1'], must: { site: 'b' } },
  ]);
  const issues = checkRules(
    rules,
    ['db1', 'db2', 'db3', 'r1', 'r2'],
    [
      { name: 'a1', site: 'a' },
      { name: 'b1', site: 'b' },
    ],
  );
  const errors = issues.filter((i) => i.level === 'error').map((i) => i.message);
  const warnings = issues.filter((i) => i.level === 'warning').map((i) => i.message);
  assert.deepEqual(warnings, ['rule ghost (config.yaml rules[4]) names db9, which matches no known VM: it applies once such a VM runs; check the name']);
  assert.equal(errors.length, 3, errors.join('\n'));
  assert.match(errors.join('\n'), /rule spread \(config.yaml rules\[1\]\) keeps 3 VMs \(db1, db2, db3\) apart by host, but there are only 2 hosts: no placement can satisfy it/);
  assert.match(errors.join('\n'), /rule keep \(config.yaml rules\[0\]\) keeps db1, db2 together by host, and rule spread \(config.yaml rules\[1\]\) keeps them apart by host: remove one/);
  assert.match(errors.join('\n'), /rule onA \(config.yaml rules\[5\]\) and rule onB \(config.yaml rules\[6\]\) send r1 to a and to b/);
  assert.ok(!errors.join('\n').includes('replicas'), 'together by site and apart by host go together');
});

test('rulesInForce joins the configuration, manager.exclude and the metadata', () => {
  const set = rulesInForce({ rules: [{ apart: ['db1', 'db2'] }], exclude: ['db2'], file: 'c.yaml' }, [entry('db1', []), entry('db2', [{ element: 'prefer', host: 'b1' }])]);
  assert.deepEqual(
    set.rules.map((r) => `${r.kind} ${r.vms.join(',')} ${r.source}`),
    ['apart db1,db2 c.yaml rules[0]', 'pin db2 manager.exclude', 'prefer db2 domain metadata of db2'],
  );
});

const apart = (vms: string[], scope: 'host' | 'site' = 'host', name = 'db'): Rule => ({ name, kind: 'apart', vms, scope, source: 'test' });

test('two replicas kept apart by host stay apart while their group is gathered into one site', () => {
  const vms = [vm('app', 'a1'), vm('db1', 'a1'), vm('db2', 'b1')];
  const traffic = [t('app', 'db1', 300), t('app', 'db2', 300), t('db1', 'db2', 300)];
  const free = planMoves(traffic, vms, env(), { objective: 'time' });
  assert.deepEqual(
    free.moves.map((m) => [m.vm, m.to]),
    [['db2', 'a1']],
    'without the rule the planner puts the replicas on one host',
  );
  const plan = planMoves(traffic, vms, env(), { objective: 'time', rules: [apart(['db1', 'db2'])] });
  const where = new Map(vms.map((v) => [v.name, v.host]));
  for (const m of plan.moves) where.set(m.vm, m.to);
  assert.equal(plan.after.interSiteBytes, 0, 'the group is in one site');
  assert.notEqual(where.get('db1'), where.get('db2'), 'the replicas are on two hosts');
  assert.deepEqual(plan.broken, []);
  // One host a site: the rule keeps vm3 away from its peers, and the plan says so.
  const held = planMoves([t('app', 'vm3', 300), t('app', 'vm4', 300)], [vm('app', 'a1'), vm('vm4', 'a1'), vm('vm3', 'b1')], env(['a1', 'b1']), {
    objective: 'time',
    rules: [apart(['vm3', 'vm4'])],
  });
  assert.deepEqual(held.moves, []);
  assert.deepEqual(held.held, ['vm3 stays on b1 rather than a1: apart from vm4 by host (rule db, test)']);
});

test('must is never broken by a move and a VM breaking it is moved; prefer yields only to room', () => {
  const vms = [vm('x', 'a1'), vm('y', 'a1'), vm('z', 'b1')];
  const traffic = [t('x', 'y', 500), t('y', 'z', 500)];
  const must: Rule = { name: 'x-on-b', kind: 'must', vms: ['x'], sites: ['b'], source: 'test' };
  const plan = planMoves(traffic, vms, env(), { objective: 'time', rules: [must] });
  const moveX = plan.moves.find((m) => m.vm === 'x');
  assert.equal(moveX?.toSite, 'b', JSON.stringify(plan.moves));
  assert.match(moveX!.reason, /where it is it breaks a rule: must run on site b \(rule x-on-b, test\)/);
  const prefer: Rule = { name: 'z-on-b2', kind: 'prefer', vms: ['z'], hosts: ['b2'], source: 'test' };
  const full = planMoves([], [vm('z', 'b1'), vm('big', 'b2', 4)], env(), { objective: 'time', rules: [prefer] });
  assert.deepEqual(full.moves, [], 'b2 is full');
  assert.deepEqual(full.broken, ['z on b1 breaks: should run on host b2 (rule z-on-b2, test)']);
  const room = planMoves([], [vm('z', 'b1'), vm('big', 'b2', 2)], env(), { objective: 'time', rules: [prefer] });
  assert.deepEqual(
    room.moves.map((m) => [m.vm, m.to]),
    [['z', 'b2']],
  );
});

test('three VMs apart by host on two hosts: the plan says it cannot satisfy the rule, never silently', () => {
  const vms = [vm('r1', 'a1'), vm('r2', 'a1'), vm('r3', 'b1')];
  const plan = planMoves([t('r1', 'r2', 10)], vms, env(['a1', 'b1']), { objective: 'time', rules: [apart(['r1', 'r2', 'r3'], 'host', 'spread')] });
  assert.ok(plan.broken.length >= 1, JSON.stringify(plan));
  assert.match(plan.broken.join('\n'), /breaks: apart from r\d by host \(rule spread, test\)/);
  const where = new Map(vms.map((v) => [v.name, v.host]));
  for (const m of plan.moves) where.set(m.vm, m.to);
  assert.equal(new Set(where.values()).size, 2, 'as apart as two hosts allow');
});

test('together by site brings two silent VMs into one site; place obeys the rules for new VMs', () => {
  const rule: Rule = { name: 'pair', kind: 'together', vms: ['p', 'q'], scope: 'site', source: 'test' };
  const plan = planMoves([], [vm('p', 'a1'), vm('q', 'b1')], env(), { objective: 'time', rules: [rule] });
  assert.equal(plan.moves.length, 1);
  assert.match(plan.moves[0]!.reason, /together with [pq] by site \(rule pair, test\)/);
  const placed = placeCluster(
    {
      vms: [
        { name: 'n1', memoryKiB: GiB, vcpus: 1 },
        { name: 'n2', memoryKiB: GiB, vcpus: 1 },
      ],
      pattern: 'all',
    },
    env(),
    { objective: 'time', rules: [apart(['n1', 'n2']), { name: 'n-on-b', kind: 'must', vms: ['n*'], sites: ['b'], source: 'test' }] },
  );
  const hosts = placed.assignment.map((a) => a.host).sort();
  assert.deepEqual(hosts, ['b1', 'b2']);
});
