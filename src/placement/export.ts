import { stringify } from 'yaml';
import { describeRule, members, type HostSite, type Rule } from './rules.js';

/**
 * `virt-cohort rules export`: the learned groups and the operator's rules as
 * another platform's own affinity objects (docs/rules.md says what each can and
 * cannot express). A learned group is a together-by-site rule over its members.
 * Patterns are expanded to the VMs known now, since no platform takes them.
 */

export const EXPORT_FORMATS = ['proxmox', 'openstack', 'kubevirt', 'json'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface ExportInput {
  rules: readonly Rule[];
  /** Learned groups (members), in the order `virt-cohort groups` gives them. */
  groups: readonly (readonly string[])[];
  /** The VMs known now, to expand patterns. */
  vms: readonly string[];
  hosts: readonly HostSite[];
  /** Proxmox VE VMIDs by VM name (a numeric name is its own VMID). */
  vmids?: ReadonlyMap<string, number>;
  /** The host each VM runs on now. */
  where?: ReadonlyMap<string, string>;
}

/** The learned groups as rules, then the operator's. */
export function exportedRules(input: ExportInput): Rule[] {
  const learned: Rule[] = input.groups.map((g, i) => ({ name: `vc-group-${i + 1}`, kind: 'together', vms: [...g], scope: 'site', source: 'learned from traffic (virt-cohort groups)' }));
  return [...learned, ...input.rules];
}

export function exportRules(format: ExportFormat, input: ExportInput): string {
  const rules = exportedRules(input).map((r) => ({ rule: r, vms: members(r, input.vms) }));
  switch (format) {
    case 'json':
      return `${JSON.stringify({ rules: rules.map(({ rule, vms }) => ({ ...rule, members: vms })) }, null, 2)}\n`;
    case 'proxmox':
      return proxmox(rules, input);
    case 'openstack':
      return openstack(rules);
    case 'kubevirt':
      return kubevirt(rules);
  }
}

type Expanded = { rule: Rule; vms: string[] }[];

/** A name the platform takes as an identifier: letters, digits, '-' and '_', starting with a letter. */
const ident = (s: string) => `${/^[A-Za-z]/.test(s) ? '' : 'r-'}${s.replace(/[^A-Za-z0-9_-]/g, '-')}`;

/** The hosts a must/prefer rule names (its sites' hosts for a site rule). */
const targetHosts = (r: Rule, hosts: readonly HostSite[]) => (r.hosts ? [...r.hosts] : hosts.filter((h) => r.sites!.includes(h.site)).map((h) => h.name));

/**
 * Proxmox VE 9 HA rules, as `ha-manager rules config` shows them and
 * /etc/pve/ha/rules.cfg holds them: `resource-affinity` (positive: same node,
 * negative: separate nodes) and `node-affinity` (nodes, strict 0|1) over
 * `vm:VMID` resources. Proxmox has nodes, not sites.
 */
function proxmox(rules: Expanded, input: ExportInput): string {
  const out = ['# Proxmox VE HA rules (/etc/pve/ha/rules.cfg, or ha-manager rules add TYPE ID --resources ... per rule), written by virt-cohort rules export', ''];
  const vmid = (n: string) => input.vmids?.get(n) ?? (/^\d+$/.test(n) ? Number(n) : undefined);
  for (const { rule, vms } of rules) {
    const comment = `${describeRule(rule)}; ${rule.source}`;
    const ids = vms.map(vmid);
    const missing = vms.filter((_, i) => ids[i] === undefined);
    const resources = ids.filter((x): x is number => x !== undefined).map((x) => `vm:${x}`);
    const skip = (why: string) => out.push(`# not exported: ${rule.name} (${comment}): ${why}`, '');
    if (missing.length) out.push(`# ${rule.name}: no Proxmox VMID for ${missing.join(', ')} (pass --vmid NAME=ID): left out of the rule`);
    const section = (type: string, body: [string, string][]) =>
      out.push(`${type}: ${ident(rule.name)}`, `\tcomment ${comment}`, `\tresources ${resources.join(',')}`, ...body.map(([k, v]) => `\t${k} ${v}`), '');
    if (rule.kind === 'together' || rule.kind === 'apart') {
      if (resources.length < 2) {
        skip('fewer than two of its VMs have a VMID');
        continue;
      }
      if (rule.scope === 'host') section('resource-affinity', [['affinity', rule.kind === 'together' ? 'positive' : 'negative']]);
      else if (rule.kind === 'together') {
        // No sites in Proxmox: a group kept in one site is kept, non-strictly, on the nodes of the site it is in now.
        const site = siteOf(vms, input);
        const nodes = input.hosts.filter((h) => h.site === site).map((h) => h.name);
        if (!nodes.length) skip('Proxmox has no sites, and the site its VMs are in is not known');
        else
          section('node-affinity', [
            ['nodes', nodes.join(',')],
            ['strict', '0'],
          ]);
      } else skip('Proxmox has no sites: apart by site cannot be written (apart by host is the nearest, and stricter)');
      continue;
    }
    if (!resources.length) {
      skip('none of its VMs has a VMID');
      continue;
    }
    if (rule.kind === 'must' || rule.kind === 'prefer') {
      const nodes = targetHosts(rule, input.hosts);
      if (!nodes.length) skip('none of its hosts is known');
      else
        section('node-affinity', [
          ['nodes', nodes.join(',')],
          ['strict', rule.kind === 'must' ? '1' : '0'],
        ]);
    } else skip(rule.kind === 'pin' ? 'Proxmox pins with a strict node-affinity to one node; the VM may be on any node now: set it by hand' : 'Proxmox has no opt-out from counting');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

/** The site most of the VMs run in now. */
function siteOf(vms: readonly string[], input: ExportInput): string | undefined {
  const count = new Map<string, number>();
  for (const vm of vms) {
    const site = input.hosts.find((h) => h.name === input.where?.get(vm))?.site;
    if (site) count.set(site, (count.get(site) ?? 0) + 1);
  }
  return [...count].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
}

/**
 * OpenStack Nova server groups: one `openstack server group create` per rule,
 * policy affinity / anti-affinity (hard) or soft-affinity / soft-anti-affinity
 * (compute API 2.15+), all by compute host. A server joins a group only when
 * it is created (`openstack server create --hint group=ID`).
 */
function openstack(rules: Expanded): string {
  const out = [
    '#!/bin/sh',
    '# OpenStack Nova server groups, written by virt-cohort rules export. Nova puts a server in a group when it is created:',
    '#   openstack server create --hint group=$(openstack server group show -f value -c id NAME) ...',
    '',
  ];
  for (const { rule, vms } of rules) {
    const comment = `# ${rule.name}: ${describeRule(rule)} (${rule.source}); members: ${vms.join(' ') || 'none now'}`;
    let policy: string | undefined;
    if (rule.kind === 'apart' && rule.scope === 'host') policy = 'anti-affinity';
    else if (rule.kind === 'apart')
      policy = 'soft-anti-affinity'; // by site: Nova knows hosts only; on other hosts at least, when it can
    else if (rule.kind === 'together' && rule.scope === 'host') policy = 'soft-affinity';
    else if (rule.kind === 'together') policy = 'soft-affinity'; // by site: one host when it can, which is one site
    if (!policy) {
      const how =
        rule.kind === 'must' || rule.kind === 'prefer'
          ? `boot them with --availability-zone ZONE (or ZONE:HOST, admin only) for ${rule.hosts ? `host ${rule.hosts.join(' or ')}` : `site ${rule.sites!.join(' or ')}`}`
          : 'Nova has no such policy';
      out.push(comment, `# not a server group: ${how}`, '');
      continue;
    }
    out.push(comment, `openstack --os-compute-api-version 2.15 server group create --policy ${policy} ${ident(rule.name)}`, '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}

const TOPOLOGY = { host: 'kubernetes.io/hostname', site: 'topology.kubernetes.io/zone' } as const;

/**
 * KubeVirt: per VM, the part of its VirtualMachine that carries the rules
 * (spec.template.metadata.labels and spec.template.spec.affinity), as merge
 * patches (`kubectl patch vm NAME --type merge --patch-file`). A rule is a
 * label `virt-cohort.org/RULE: member` on its VMs; together becomes preferred
 * podAffinity and apart required podAntiAffinity, by hostname or zone; must and
 * prefer become required and preferred nodeAffinity.
 */
function kubevirt(rules: Expanded): string {
  const byVm = new Map<string, { labels: Record<string, string>; affinity: Affinity }>();
  const of = (vm: string) => {
    let x = byVm.get(vm);
    if (!x) byVm.set(vm, (x = { labels: {}, affinity: {} }));
    return x;
  };
  const comments: string[] = [];
  for (const { rule, vms } of rules) {
    const label = `virt-cohort.org/${ident(rule.name).toLowerCase().slice(0, 63)}`;
    if (rule.kind === 'together' || rule.kind === 'apart') {
      const term = { labelSelector: { matchLabels: { [label]: 'member' } }, topologyKey: TOPOLOGY[rule.scope ?? 'host'] };
      for (const vm of vms) {
        const x = of(vm);
        x.labels[label] = 'member';
        if (rule.kind === 'apart') push((x.affinity.podAntiAffinity ??= {}), 'requiredDuringSchedulingIgnoredDuringExecution', term);
        else push((x.affinity.podAffinity ??= {}), 'preferredDuringSchedulingIgnoredDuringExecution', { weight: 100, podAffinityTerm: term });
      }
    } else if (rule.kind === 'must' || rule.kind === 'prefer') {
      const expr = { key: rule.hosts ? TOPOLOGY.host : TOPOLOGY.site, operator: 'In', values: [...(rule.hosts ?? rule.sites!)] };
      for (const vm of vms) {
        const node = (of(vm).affinity.nodeAffinity ??= {});
        if (rule.kind === 'must') {
          const req = (node.requiredDuringSchedulingIgnoredDuringExecution ??= { nodeSelectorTerms: [{ matchExpressions: [] }] });
          req.nodeSelectorTerms[0]!.matchExpressions.push(expr);
        } else push(node, 'preferredDuringSchedulingIgnoredDuringExecution', { weight: 100, preference: { matchExpressions: [expr] } });
      }
    } else
      comments.push(
        `# not exported: ${rule.name} (${describeRule(rule)}; ${rule.source}): KubeVirt has no ${rule.kind === 'pin' ? 'pin (set evictionStrategy: None to keep it from live-migrating)' : 'opt-out from counting'}`,
      );
  }
  const docs = [...byVm].map(([vm, x]) => ({
    apiVersion: 'kubevirt.io/v1',
    kind: 'VirtualMachine',
    metadata: { name: vm },
    spec: { template: { metadata: { labels: x.labels }, spec: { affinity: x.affinity } } },
  }));
  const head = [
    '# KubeVirt VirtualMachine affinity, written by virt-cohort rules export: merge each document into its VM,',
    '#   kubectl patch vm NAME --type merge --patch-file THIS-DOCUMENT',
    ...comments,
  ];
  return `${head.join('\n')}\n${docs.map((d) => `---\n${stringify(d)}`).join('')}`;
}

type Term = Record<string, unknown>;
interface Affinity {
  podAffinity?: Record<string, Term[]>;
  podAntiAffinity?: Record<string, Term[]>;
  nodeAffinity?: {
    requiredDuringSchedulingIgnoredDuringExecution?: { nodeSelectorTerms: { matchExpressions: Term[] }[] };
    preferredDuringSchedulingIgnoredDuringExecution?: Term[];
  };
}

function push(o: Record<string, unknown>, key: string, v: Term): void {
  ((o[key] ??= []) as Term[]).push(v);
}
