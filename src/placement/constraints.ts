import type { Problem } from './problem.js';
import { members, type Rule, type Scope } from './rules.js';

/**
 * The rules as the search reads them, indexed by VM. "must" and "apart" are
 * hard: a move that breaks one is never made (Placement.fits asks `allows`),
 * and a placement that already breaks one costs HARD penalties, so the search
 * leaves it. "prefer" and "together" are costs: one penalty each time one is
 * broken, a penalty being more than all the traffic could ever save, so they
 * give way only to capacity and to the hard rules. Pins are the Problem's
 * `movable`.
 */

/** A rule between two VMs, seen from one of them. */
interface Link {
  other: number;
  kind: 'together' | 'apart';
  scope: Scope;
  rule: number;
}

export interface Constraints {
  readonly rules: readonly Rule[];
  /** Per VM: 1 where a must rule lets it run (null: anywhere), and that rule. */
  readonly allowed: readonly (Uint8Array | null)[];
  readonly allowedRule: Int32Array;
  readonly preferred: readonly (Uint8Array | null)[];
  readonly preferredRule: Int32Array;
  readonly links: readonly (readonly Link[])[];
  /** 1 for a VM some rule names: the others are skipped at once. */
  readonly touched: Uint8Array;
  /** The objective's worth of one broken soft rule. */
  readonly penalty: number;
}

/** A broken hard rule weighs this many penalties: never traded for soft ones. */
export const HARD = 1000;

/** Indexes the rules for the VMs and hosts of a problem. `penalty`: see penaltyFor. */
export function compileRules(
  rules: readonly Rule[],
  vmNames: readonly string[],
  hostNames: readonly string[],
  hostSite: Int32Array,
  siteNames: readonly string[],
  penalty: number,
): Constraints | undefined {
  const n = vmNames.length;
  const allowed: (Uint8Array | null)[] = new Array(n).fill(null);
  const preferred: (Uint8Array | null)[] = new Array(n).fill(null);
  const allowedRule = new Int32Array(n).fill(-1);
  const preferredRule = new Int32Array(n).fill(-1);
  const links: Link[][] = Array.from({ length: n }, () => []);
  const touched = new Uint8Array(n);
  const index = new Map(vmNames.map((v, i) => [v, i] as const));
  let any = false;
  rules.forEach((r, ri) => {
    const vms = members(r, vmNames).map((v) => index.get(v)!);
    if (r.kind === 'must' || r.kind === 'prefer') {
      const mask = Uint8Array.from(hostNames, (h, i) => Number(r.hosts ? r.hosts.includes(h) : r.sites!.includes(siteNames[hostSite[i]!]!)));
      for (const v of vms) {
        const into = r.kind === 'must' ? allowed : preferred;
        // Two musts on one VM: it may run only where both let it (checkRules reports when that is nowhere).
        into[v] = into[v] ? into[v]!.map((x, h) => x & mask[h]!) : mask;
        (r.kind === 'must' ? allowedRule : preferredRule)[v] = ri;
        touched[v] = 1;
        any = true;
      }
    } else if (r.kind === 'together' || r.kind === 'apart') {
      if (vms.length < 2) return;
      for (const v of vms) {
        for (const u of vms) if (u !== v) links[v]!.push({ other: u, kind: r.kind, scope: r.scope ?? 'host', rule: ri });
        touched[v] = 1;
      }
      any = true;
    }
  });
  if (!any) return undefined;
  return { rules, allowed, allowedRule, preferred, preferredRule, links, touched, penalty };
}

/**
 * One soft-rule penalty: ten times the most the objective could ever count
 * (every edge across the dearest link, every VM on the dearest host), so that
 * no traffic gain pays for breaking a rule.
 */
export function penaltyFor(p: Omit<Problem, 'rules'>): number {
  const g = p.graph;
  let maxMsg = 0;
  let maxByte = 0;
  for (let k = 0; k < p.msgCoef.length; k++) {
    maxMsg = Math.max(maxMsg, p.msgCoef[k]!);
    maxByte = Math.max(maxByte, p.byteCoef[k]!);
  }
  let traffic = 0;
  for (let e = 0; e < g.edgeA.length; e++) traffic += g.edgeMessages[e]! * maxMsg + g.edgeBytes[e]! * maxByte;
  let hosting = 0;
  for (let h = 0; h < p.nHost; h++) hosting = Math.max(hosting, Math.abs(p.hostFixed[h]!) + 64 * p.hostPerCpu[h]! + 1024 * p.hostPerGiB[h]! + p.hostOpen[h]!);
  let oneOff = 0;
  for (let k = 0; k < p.migCostPerKiB.length; k++) oneOff = Math.max(oneOff, p.migCostPerKiB[k]!);
  let mem = 0;
  for (let v = 0; v < p.nVm; v++) mem += p.vmMem[v]!;
  return 10 * (traffic + hosting * p.nVm + (oneOff * mem) / p.horizonSeconds) + 1e-6;
}

const same = (p: Problem, scope: Scope, a: number, b: number) => (scope === 'host' ? a === b : p.hostSite[a] === p.hostSite[b]);

/** Whether the hard rules let v go to h, the others where `hostOf` has them (`ignore`: a VM about to leave, for swaps). */
export function allows(p: Problem, v: number, h: number, hostOf: Int32Array, ignore = -1): boolean {
  const c = p.rules;
  if (!c?.touched[v]) return true;
  const mask = c.allowed[v];
  if (mask && !mask[h]) return false;
  for (const l of c.links[v]!) {
    if (l.kind !== 'apart' || l.other === ignore) continue;
    const hu = hostOf[l.other]!;
    if (hu >= 0 && same(p, l.scope, hu, h)) return false;
  }
  return true;
}

/** What the rules charge v for being on h, the others staying where `hostOf` has them (0 without rules). */
export function ruleCost(p: Problem, v: number, h: number, hostOf: Int32Array): number {
  const c = p.rules;
  if (!c?.touched[v] || h < 0) return 0;
  let x = 0;
  if (c.allowed[v] && !c.allowed[v]![h]) x += HARD;
  if (c.preferred[v] && !c.preferred[v]![h]) x += 1;
  for (const l of c.links[v]!) {
    const hu = hostOf[l.other]!;
    if (hu < 0) continue;
    const together = same(p, l.scope, hu, h);
    if (l.kind === 'apart' && together) x += HARD;
    else if (l.kind === 'together' && !together) x += 1;
  }
  return x * c.penalty;
}

/** The rules' charge on a whole placement: each VM's own rules once, each pair once. */
export function totalRuleCost(p: Problem, hostOf: Int32Array): number {
  const c = p.rules;
  if (!c) return 0;
  let pairs = 0;
  let own = 0;
  for (let v = 0; v < p.nVm; v++) {
    const h = hostOf[v]!;
    if (!c.touched[v] || h < 0) continue;
    const all = ruleCost(p, v, h, hostOf);
    const unary = (c.allowed[v] && !c.allowed[v]![h] ? HARD : 0) + (c.preferred[v] && !c.preferred[v]![h] ? 1 : 0);
    own += unary * c.penalty;
    pairs += all - unary * c.penalty;
  }
  return own + pairs / 2;
}

/** The rules v breaks on h, in words, each with its rule: `apart from vm4 by host (rule db, config.yaml rules[0])`. */
export function brokenBy(p: Problem, v: number, h: number, hostOf: Int32Array, opts: { hardOnly?: boolean; pairsOnce?: boolean } = {}): string[] {
  const { hardOnly = false, pairsOnce = false } = opts;
  const c = p.rules;
  if (!c?.touched[v]) return [];
  const out: string[] = [];
  const rule = (i: number) => `rule ${c.rules[i]!.name}, ${c.rules[i]!.source}`;
  const where = (r: Rule) => (r.hosts ? `host ${r.hosts.join(' or ')}` : `site ${r.sites!.join(' or ')}`);
  if (c.allowed[v] && !c.allowed[v]![h]) out.push(`must run on ${where(c.rules[c.allowedRule[v]!]!)} (${rule(c.allowedRule[v]!)})`);
  if (!hardOnly && c.preferred[v] && !c.preferred[v]![h]) out.push(`should run on ${where(c.rules[c.preferredRule[v]!]!)} (${rule(c.preferredRule[v]!)})`);
  for (const l of c.links[v]!) {
    const hu = hostOf[l.other]!;
    if (hu < 0 || (pairsOnce && l.other < v)) continue;
    const together = same(p, l.scope, hu, h);
    if (l.kind === 'apart' && together) out.push(`apart from ${p.graph.names[l.other]} by ${l.scope} (${rule(l.rule)})`);
    else if (!hardOnly && l.kind === 'together' && !together) out.push(`together with ${p.graph.names[l.other]} by ${l.scope} (${rule(l.rule)})`);
  }
  return out;
}

/** Labels with the members of every together rule made one group, so that the starts that pack whole groups move them as one. */
export function mergeTogether(p: Problem, labels: Int32Array): Int32Array {
  const c = p.rules;
  if (!c) return labels;
  const out = labels.slice();
  const parent = Int32Array.from({ length: p.nVm }, (_, i) => i);
  const find = (x: number): number => (parent[x] === x ? x : (parent[x] = find(parent[x]!)));
  for (let v = 0; v < p.nVm; v++) for (const l of c.links[v]!) if (l.kind === 'together') parent[find(v)] = find(l.other);
  for (let v = 0; v < p.nVm; v++) out[v] = labels[find(v)]!;
  return out;
}
