import type { VmEntry } from '../collector/registry.js';
import { SCOPES, type Config } from '../config/schema.js';

/**
 * The operator's rules (docs/rules.md), from their two sources: the `rules:`
 * section of the configuration, and each VM's libvirt domain metadata (the
 * elements inside virt-cohort's `<policy>`: a named group and its scope, a host
 * or site it must or should run on; `move="never"` and `count="no"` are the pin
 * and the opt-out). Every rule keeps where it came from, so that every message
 * about it (a warning, an error, a move it holds back) can say so.
 */

export type Scope = (typeof SCOPES)[number];
export type RuleKind = 'together' | 'apart' | 'must' | 'prefer' | 'pin' | 'opt-out';

export interface Rule {
  name: string;
  kind: RuleKind;
  /** VM names, or patterns with * and ?, as written. */
  vms: string[];
  /** together and apart: on the same (another) host, or site. */
  scope?: Scope;
  /** must and prefer: the hosts, or the sites, the VMs run on. */
  hosts?: string[];
  sites?: string[];
  /** Where it was written: `config.yaml rules[2]`, `domain metadata of db1, db2`, `manager.exclude`. */
  source: string;
}

export interface RuleIssue {
  level: 'error' | 'warning';
  message: string;
}

export interface RuleSet {
  rules: Rule[];
  issues: RuleIssue[];
}

const list = (v: string | string[] | undefined) => (v === undefined ? undefined : Array.isArray(v) ? v : [v]);

/** The rules of the configuration's `rules:` section; `where` names the file. */
export function configRules(entries: Config['rules'], where = 'configuration'): RuleSet {
  const rules: Rule[] = [];
  const issues: RuleIssue[] = [];
  entries.forEach((e, i) => {
    const source = `${where} rules[${i}]`;
    const name = e.name ?? `rules-${i}`;
    const kinds = (['together', 'apart', 'must', 'prefer'] as const).filter((k) => e[k] !== undefined);
    const bad = (what: string) => issues.push({ level: 'error', message: `${source}${e.name ? ` (${e.name})` : ''}: ${what}` });
    if (kinds.length !== 1) {
      bad(kinds.length ? `has ${kinds.join(' and ')}: write one rule per entry` : 'says nothing: give together or apart (a list of VMs, with scope host or site), or vms with must or prefer');
      return;
    }
    const kind = kinds[0]!;
    if (kind === 'together' || kind === 'apart') {
      if (e.vms) return void bad(`vms goes with must or prefer; for ${kind}, list the VMs in ${kind} itself`);
      rules.push({ name, kind, vms: [...e[kind]!], scope: e.scope ?? 'host', source });
      return;
    }
    const target = e[kind]!;
    if (e.scope) return void bad(`scope goes with together or apart; a ${kind} rule names a host or a site`);
    if (!e.vms) return void bad(`${kind} needs vms: the VMs (names or patterns) it applies to`);
    const hosts = list(target.host);
    const sites = list(target.site);
    if (Boolean(hosts) === Boolean(sites)) return void bad(`${kind} takes either host or site (one name or a list), not ${hosts ? 'both' : 'neither'}`);
    rules.push({ name, kind, vms: [...e.vms], ...(hosts ? { hosts } : { sites: sites! }), source });
  });
  return { rules, issues };
}

/** `manager.exclude`: VMs never to move. */
export function excludeRules(exclude: readonly string[]): Rule[] {
  return exclude.map((vm) => ({ name: `exclude-${vm}`, kind: 'pin', vms: [vm], source: 'manager.exclude' }));
}

type Raw = Record<string, unknown>;

/**
 * The rules of the VMs' domain metadata, as the agents published them. A group
 * (`<vc:apart group="db" scope="host"/>` on db1 and on db2) becomes one rule over
 * its members; the same group with two scopes is an error naming both VMs.
 */
export function metadataRules(directory: readonly Pick<VmEntry, 'name' | 'rules' | 'pinned' | 'optOut'>[]): RuleSet {
  const rules: Rule[] = [];
  const issues: RuleIssue[] = [];
  const groups = new Map<string, { kind: 'together' | 'apart'; group: string; scope: Scope; members: string[]; first: string }>();
  for (const v of directory) {
    const where = `domain metadata of ${v.name}`;
    if (v.optOut) rules.push({ name: `opt-out-${v.name}`, kind: 'opt-out', vms: [v.name], source: `${where} (count="no")` });
    else if (v.pinned) rules.push({ name: `pin-${v.name}`, kind: 'pin', vms: [v.name], source: `${where} (move="never")` });
    if (!v.rules) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(v.rules);
    } catch {
      raw = undefined;
    }
    if (!Array.isArray(raw)) {
      issues.push({ level: 'error', message: `${where}: its rules cannot be read (${v.rules.slice(0, 60)}): check its agent's version and the <vc:policy> element (virsh metadata)` });
      continue;
    }
    for (const r of raw as Raw[]) {
      const el = String(r.element ?? '');
      const shown = `<vc:${el}${Object.entries(r)
        .filter(([k]) => k !== 'element')
        .map(([k, x]) => ` ${k}="${String(x)}"`)
        .join('')}/>`;
      const bad = (what: string) => issues.push({ level: 'error', message: `${where}: ${shown}: ${what}` });
      const unknown = Object.keys(r).filter((k) => k !== 'element' && !ATTRS[el]?.includes(k));
      if (!ATTRS[el]) {
        bad(`unknown element: use <vc:apart group=NAME scope=host|site/>, <vc:together .../>, <vc:must host=H|site=S/> or <vc:prefer .../>`);
        continue;
      }
      if (unknown.length) {
        bad(`unknown attribute ${unknown.join(', ')}: it takes ${ATTRS[el]!.join(', ')}`);
        continue;
      }
      if (el === 'apart' || el === 'together') {
        const group = typeof r.group === 'string' ? r.group : '';
        const scope = (r.scope ?? 'host') as string;
        if (!group) {
          bad('needs group="NAME": the VMs that name the same group are kept together (or apart)');
          continue;
        }
        if (!(SCOPES as readonly string[]).includes(scope)) {
          bad(`unknown scope '${scope}': use host or site`);
          continue;
        }
        const key = `${el}\u0000${group}`;
        const g = groups.get(key);
        if (!g) groups.set(key, { kind: el, group, scope: scope as Scope, members: [v.name], first: v.name });
        else if (g.scope !== scope)
          issues.push({ level: 'error', message: `${el} group ${group}: scope ${g.scope} in the domain metadata of ${g.first} but ${scope} in that of ${v.name}: give every member the same scope` });
        else g.members.push(v.name);
        continue;
      }
      const hosts = typeof r.host === 'string' ? r.host.split(',').filter(Boolean) : undefined;
      const sites = typeof r.site === 'string' ? r.site.split(',').filter(Boolean) : undefined;
      if (Boolean(hosts?.length) === Boolean(sites?.length)) {
        bad('takes either host="H[,H2]" or site="S[,S2]"');
        continue;
      }
      rules.push({ name: `${el}-${v.name}`, kind: el as 'must' | 'prefer', vms: [v.name], ...(hosts?.length ? { hosts } : { sites: sites! }), source: where });
    }
  }
  for (const g of groups.values()) {
    rules.push({ name: g.group, kind: g.kind, vms: g.members, scope: g.scope, source: `domain metadata of ${g.members.join(', ')}` });
  }
  return { rules, issues };
}

const ATTRS: Record<string, string[]> = { apart: ['group', 'scope'], together: ['group', 'scope'], must: ['host', 'site'], prefer: ['host', 'site'] };

/** Whether a VM name matches a rule's name or pattern (* any run of characters, ? one). */
export function matches(pattern: string, name: string): boolean {
  if (!/[*?]/.test(pattern)) return pattern === name;
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(name);
}

/** The VMs of `names` a rule applies to, in the order of `names`. */
export function members(rule: Pick<Rule, 'vms'>, names: readonly string[]): string[] {
  return names.filter((n) => rule.vms.some((p) => matches(p, n)));
}

/** A rule in a few words: `db1, db2 apart by host`, `db1 must run on site a`. */
export function describeRule(r: Rule): string {
  const vms = r.vms.join(', ');
  const where = r.hosts ? `host ${r.hosts.join(' or ')}` : `site ${(r.sites ?? []).join(' or ')}`;
  switch (r.kind) {
    case 'together':
    case 'apart':
      return `${vms} ${r.kind} by ${r.scope}`;
    case 'must':
      return `${vms} must run on ${where}`;
    case 'prefer':
      return `${vms} should run on ${where}`;
    case 'pin':
      return `${vms} never moves`;
    case 'opt-out':
      return `${vms} is neither counted nor moved`;
  }
}

/** Where the hosts are: for the checks that need the cluster (unknown hosts, rules no placement can satisfy). */
export interface HostSite {
  name: string;
  site: string;
}

/**
 * What is wrong with a set of rules, whatever the traffic: a rule naming no
 * known VM (a warning: the VM may not be started yet), a host or site no agent
 * knows, two rules that contradict each other (each named with its source), a
 * rule no placement can satisfy (more VMs apart by host than there are hosts).
 */
export function checkRules(rules: readonly Rule[], vmNames: readonly string[], hosts?: readonly HostSite[]): RuleIssue[] {
  const out: RuleIssue[] = [];
  const named = (r: Rule) => `rule ${r.name} (${r.source})`;
  const sets = rules.map((r) => members(r, vmNames));
  rules.forEach((r, i) => {
    for (const p of r.vms) {
      if (!vmNames.some((n) => matches(p, n))) out.push({ level: 'warning', message: `${named(r)} names ${p}, which matches no known VM: it applies once such a VM runs; check the name` });
    }
    if (hosts) {
      const hostNames = new Set(hosts.map((h) => h.name));
      const siteNames = new Set(hosts.map((h) => h.site));
      for (const h of r.hosts ?? [])
        if (!hostNames.has(h)) out.push({ level: 'warning', message: `${named(r)} names host ${h}, which is not in the host registry (known: ${[...hostNames].join(', ')})` });
      for (const s of r.sites ?? []) if (!siteNames.has(s)) out.push({ level: 'warning', message: `${named(r)} names site ${s}, which no host is in (known: ${[...siteNames].join(', ')})` });
      if (r.kind === 'apart') {
        const room = r.scope === 'host' ? hostNames.size : siteNames.size;
        if (sets[i]!.length > room) {
          out.push({
            level: 'error',
            message: `${named(r)} keeps ${sets[i]!.length} VMs (${sets[i]!.join(', ')}) apart by ${r.scope}, but there are only ${room} ${r.scope}s: no placement can satisfy it; add ${r.scope}s or take VMs out of the rule`,
          });
        }
      }
    }
  });
  for (let i = 0; i < rules.length; i++) {
    for (let j = i + 1; j < rules.length; j++) {
      const [a, b] = [rules[i]!, rules[j]!];
      const common = sets[i]!.filter((n) => sets[j]!.includes(n));
      const pair = (a.kind === 'together' && b.kind === 'apart') || (a.kind === 'apart' && b.kind === 'together');
      if (pair && common.length >= 2) {
        const together = a.kind === 'together' ? a : b;
        const apart = a.kind === 'apart' ? a : b;
        // Together by site and apart by host is a replica set in one site; every other mix cannot hold.
        if (!(together.scope === 'site' && apart.scope === 'host')) {
          out.push({
            level: 'error',
            message: `${named(together)} keeps ${common.join(', ')} together by ${together.scope}, and ${named(apart)} keeps them apart by ${apart.scope}: remove one, or keep them together by site and apart by host`,
          });
        }
      }
      if (a.kind === 'must' && b.kind === 'must' && common.length && Boolean(a.hosts) === Boolean(b.hosts)) {
        const x = a.hosts ?? a.sites!;
        const y = b.hosts ?? b.sites!;
        if (!x.some((h) => y.includes(h))) {
          out.push({ level: 'error', message: `${named(a)} and ${named(b)} send ${common.join(', ')} to ${x.join(', ')} and to ${y.join(', ')}: a VM cannot be on both; remove one` });
        }
      }
    }
  }
  return out;
}

/** All the rules in force: the configuration's, `manager.exclude`, and the VMs' metadata; with every issue found. */
export function rulesInForce(config: { rules: Config['rules']; exclude?: readonly string[]; file?: string }, directory: readonly VmEntry[], hosts?: readonly HostSite[]): RuleSet {
  const fromConfig = configRules(config.rules, config.file);
  const fromMeta = metadataRules(directory);
  const rules = [...fromConfig.rules, ...excludeRules(config.exclude ?? []), ...fromMeta.rules];
  const names = directory.filter((v) => v.state !== 'stopped').map((v) => v.name);
  return { rules, issues: [...fromConfig.issues, ...fromMeta.issues, ...checkRules(rules, names.length ? names : directory.map((v) => v.name), hosts)] };
}

/** A rule a single move would break: `hard` for must and apart (never done), soft for prefer and together. */
export interface Breach {
  rule: Rule;
  hard: boolean;
  /** `apart from db2 by host (rule db, config.yaml rules[0])`. */
  text: string;
}

/**
 * What moving `vm` to host `to` would break that its place now keeps, the other
 * VMs staying where `where` has them: for `migrate`, a drain, and each move the
 * manager orders.
 */
export function moveBreaks(rules: readonly Rule[], where: ReadonlyMap<string, string>, siteOf: ReadonlyMap<string, string>, vm: string, to: string): Breach[] {
  const from = where.get(vm);
  const names = [...where.keys()];
  const out: Breach[] = [];
  const tag = (r: Rule) => `(rule ${r.name}, ${r.source})`;
  const near = (scope: Scope | undefined, a: string | undefined, b: string | undefined) => a !== undefined && b !== undefined && (scope === 'site' ? siteOf.get(a) === siteOf.get(b) : a === b);
  for (const r of rules) {
    if (!members(r, names.includes(vm) ? names : [...names, vm]).includes(vm)) continue;
    if (r.kind === 'must' || r.kind === 'prefer') {
      const ok = (h: string | undefined) => h !== undefined && (r.hosts ? r.hosts.includes(h) : r.sites!.includes(siteOf.get(h) ?? ''));
      if (!ok(to) && (from === undefined || ok(from))) {
        out.push({ rule: r, hard: r.kind === 'must', text: `${r.kind === 'must' ? 'must' : 'should'} run on ${r.hosts ? `host ${r.hosts.join(' or ')}` : `site ${r.sites!.join(' or ')}`} ${tag(r)}` });
      }
    } else if (r.kind === 'together' || r.kind === 'apart') {
      for (const u of members(r, names)) {
        if (u === vm) continue;
        const hu = where.get(u);
        const broken = (h: string | undefined) => (r.kind === 'apart' ? near(r.scope, h, hu) : !near(r.scope, h, hu));
        if (broken(to) && !broken(from)) out.push({ rule: r, hard: r.kind === 'apart', text: `${r.kind === 'apart' ? 'apart from' : 'together with'} ${u} by ${r.scope} ${tag(r)}` });
      }
    }
  }
  return out;
}
