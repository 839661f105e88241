import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAllDocuments } from 'yaml';
import { exportRules, type ExportInput } from '../../src/placement/export.js';
import type { Rule } from '../../src/placement/rules.js';

const rule = (r: Omit<Rule, 'source'>): Rule => ({ ...r, source: 'config.yaml' });
const input: ExportInput = {
  rules: [
    rule({ name: 'db-apart', kind: 'apart', vms: ['db1', 'db2'], scope: 'host' }),
    rule({ name: 'web', kind: 'together', vms: ['web*'], scope: 'host' }),
    rule({ name: 'zones', kind: 'apart', vms: ['db1', 'web1'], scope: 'site' }),
    rule({ name: 'db-on-a', kind: 'must', vms: ['db1'], sites: ['a'] }),
    rule({ name: 'web-b1', kind: 'prefer', vms: ['web2'], hosts: ['b1'] }),
    rule({ name: 'pin-x', kind: 'pin', vms: ['db2'] }),
  ],
  groups: [['app1', 'app2']],
  vms: ['db1', 'db2', 'web1', 'web2', 'app1', 'app2'],
  hosts: [
    { name: 'a1', site: 'a' },
    { name: 'a2', site: 'a' },
    { name: 'b1', site: 'b' },
  ],
  vmids: new Map([
    ['db1', 101],
    ['db2', 102],
    ['web1', 103],
    ['web2', 104],
    ['app1', 105],
    ['app2', 106],
  ]),
  where: new Map([
    ['app1', 'b1'],
    ['app2', 'b1'],
  ]),
};

/**
 * Proxmox VE 9's section config (/etc/pve/ha/rules.cfg, `ha-manager rules config`): `TYPE: ID`, then
 * one tab-indented `key value` per property; types resource-affinity (resources, affinity
 * positive|negative) and node-affinity (resources, nodes NODE[:PRIORITY],..., strict 0|1); resources
 * are vm:VMID; an ID starts with a letter.
 */
function parseProxmox(text: string): { type: string; id: string; props: Map<string, string> }[] {
  const allowed: Record<string, string[]> = { 'resource-affinity': ['comment', 'resources', 'affinity', 'disable'], 'node-affinity': ['comment', 'resources', 'nodes', 'strict', 'disable'] };
  const out: { type: string; id: string; props: Map<string, string> }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const head = /^(resource-affinity|node-affinity): ([A-Za-z][A-Za-z0-9_-]*)$/.exec(line);
    if (head) {
      out.push({ type: head[1]!, id: head[2]!, props: new Map() });
      continue;
    }
    const prop = /^\t([a-z]+) (.+)$/.exec(line);
    assert.ok(prop && out.length, `not a rules.cfg line: ${JSON.stringify(line)}`);
    const cur = out[out.length - 1]!;
    assert.ok(allowed[cur.type]!.includes(prop[1]!), `${cur.type} has no property ${prop[1]}`);
    cur.props.set(prop[1]!, prop[2]!);
  }
  for (const r of out) {
    assert.match(r.props.get('resources') ?? '', /^vm:\d+(,vm:\d+)*$/, r.id);
    if (r.type === 'resource-affinity') assert.match(r.props.get('affinity') ?? '', /^(positive|negative)$/);
    else {
      assert.match(r.props.get('nodes') ?? '', /^[A-Za-z0-9.-]+(:\d+)?(,[A-Za-z0-9.-]+(:\d+)?)*$/);
      assert.match(r.props.get('strict') ?? '', /^[01]$/);
    }
  }
  return out;
}

test('proxmox: HA resource-affinity and node-affinity rules in rules.cfg form; what it cannot express is a comment', () => {
  const text = exportRules('proxmox', input);
  const rules = parseProxmox(text);
  const get = (id: string) => rules.find((r) => r.id === id);
  assert.deepEqual(Object.fromEntries(get('db-apart')!.props), { comment: 'db1, db2 apart by host; config.yaml', resources: 'vm:101,vm:102', affinity: 'negative' });
  assert.equal(get('web')!.props.get('affinity'), 'positive');
  assert.equal(get('web')!.props.get('resources'), 'vm:103,vm:104');
  assert.deepEqual([get('db-on-a')!.type, get('db-on-a')!.props.get('nodes'), get('db-on-a')!.props.get('strict')], ['node-affinity', 'a1,a2', '1']);
  assert.deepEqual([get('web-b1')!.props.get('nodes'), get('web-b1')!.props.get('strict')], ['b1', '0']);
  // The learned group: Proxmox has no sites, so the nodes of the site it runs in, not strictly.
  assert.deepEqual([get('vc-group-1')!.type, get('vc-group-1')!.props.get('nodes'), get('vc-group-1')!.props.get('strict')], ['node-affinity', 'b1', '0']);
  assert.equal(get('zones'), undefined);
  assert.match(text, /# not exported: zones .*Proxmox has no sites: apart by site cannot be written/);
  assert.match(text, /# not exported: pin-x /);
  const noIds = exportRules('proxmox', { ...input, vmids: new Map() });
  assert.match(noIds, /# db-apart: no Proxmox VMID for db1, db2 \(pass --vmid NAME=ID\)/);
  assert.deepEqual(parseProxmox(noIds), []);
});

test('openstack: one server group create per rule, with a Nova policy; the rest as comments', () => {
  const text = exportRules('openstack', input);
  const commands = text.split('\n').filter((l) => l && !l.startsWith('#'));
  for (const c of commands) assert.match(c, /^openstack --os-compute-api-version 2\.15 server group create --policy (affinity|anti-affinity|soft-affinity|soft-anti-affinity) [A-Za-z][A-Za-z0-9_-]*$/);
  assert.deepEqual(
    commands.map((c) => c.split(' ').slice(-3).join(' ')),
    ['--policy soft-affinity vc-group-1', '--policy anti-affinity db-apart', '--policy soft-affinity web', '--policy soft-anti-affinity zones'],
  );
  assert.match(text, /# db-on-a: db1 must run on site a \(config.yaml\); members: db1\n# not a server group: boot them with --availability-zone/);
  assert.match(text, /--hint group=/);
});

test('kubevirt: VirtualMachine affinity as the Kubernetes API has it, labels matching the selectors', () => {
  // biome-ignore lint/suspicious/noExplicitAny: parsed YAML, checked field by field below
  const docs = parseAllDocuments(exportRules('kubevirt', input)).map((d) => d.toJS() as Record<string, any>);
  const vm = (n: string) => docs.find((d) => d.metadata.name === n)!;
  for (const d of docs) {
    assert.equal(d.apiVersion, 'kubevirt.io/v1');
    assert.equal(d.kind, 'VirtualMachine');
    const labels = d.spec.template.metadata.labels as Record<string, string>;
    for (const k of Object.keys(labels)) assert.match(k, /^[a-z0-9.-]{1,253}\/[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/);
    const aff = d.spec.template.spec.affinity;
    assert.deepEqual(
      Object.keys(aff).filter((k) => !['podAffinity', 'podAntiAffinity', 'nodeAffinity'].includes(k)),
      [],
    );
    for (const kind of ['podAffinity', 'podAntiAffinity']) {
      for (const t of aff[kind]?.requiredDuringSchedulingIgnoredDuringExecution ?? [])
        assert.ok(t.labelSelector.matchLabels && ['kubernetes.io/hostname', 'topology.kubernetes.io/zone'].includes(t.topologyKey));
      for (const w of aff[kind]?.preferredDuringSchedulingIgnoredDuringExecution ?? []) {
        assert.ok(w.weight >= 1 && w.weight <= 100 && w.podAffinityTerm.labelSelector && w.podAffinityTerm.topologyKey);
      }
    }
  }
  const anti = vm('db1').spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution;
  assert.deepEqual(anti[0], { labelSelector: { matchLabels: { 'virt-cohort.org/db-apart': 'member' } }, topologyKey: 'kubernetes.io/hostname' });
  assert.equal(vm('db2').spec.template.metadata.labels['virt-cohort.org/db-apart'], 'member');
  assert.equal(anti[1].topologyKey, 'topology.kubernetes.io/zone', 'apart by site: by zone');
  assert.deepEqual(vm('db1').spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms, [
    { matchExpressions: [{ key: 'topology.kubernetes.io/zone', operator: 'In', values: ['a'] }] },
  ]);
  assert.deepEqual(vm('web2').spec.template.spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution, [
    { weight: 100, preference: { matchExpressions: [{ key: 'kubernetes.io/hostname', operator: 'In', values: ['b1'] }] } },
  ]);
  assert.equal(vm('app1').spec.template.spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey, 'topology.kubernetes.io/zone');
});

test('json: every rule with its source and the VMs it applies to now', () => {
  const out = JSON.parse(exportRules('json', input)) as { rules: (Rule & { members: string[] })[] };
  assert.deepEqual(
    out.rules.map((r) => [r.name, r.kind, r.members.join(','), r.source]),
    [
      ['vc-group-1', 'together', 'app1,app2', 'learned from traffic (virt-cohort groups)'],
      ['db-apart', 'apart', 'db1,db2', 'config.yaml'],
      ['web', 'together', 'web1,web2', 'config.yaml'],
      ['zones', 'apart', 'db1,web1', 'config.yaml'],
      ['db-on-a', 'must', 'db1', 'config.yaml'],
      ['web-b1', 'prefer', 'web2', 'config.yaml'],
      ['pin-x', 'pin', 'db2', 'config.yaml'],
    ],
  );
});
