import { buildGraph, type PairTraffic, type TrafficGraph, type TrafficMeasure } from '../analysis/graph.js';
import { brokenBy, ruleCost } from './constraints.js';
import type { Environment } from './env.js';
import { explainMove, fmtBytesRate, fmtSeconds } from './explain.js';
import type { VmInfo } from './live.js';
import { optimise, type PlanMethod } from './optimise.js';
import { buildProblem, UNITS, type Objective, type Problem } from './problem.js';
import type { Rule } from './rules.js';
import { moveDelta } from './search.js';
import { hostingRate, migrationSeconds, oneOff, Placement, scratch, score, siteCosts, type Score } from './state.js';

export interface PlanOptions {
  objective: Objective;
  /** A move is proposed only if the plan up to it pays back within this many seconds. Default 3600. */
  horizonSeconds?: number;
  /** At most this many migrations per round. Default 5. */
  maxMoves?: number;
  /** VMs never to move, on top of those pinned through libvirt metadata. */
  exclude?: readonly string[];
  /** Clock for availability windows (ms since the epoch). Default Date.now(). */
  now?: number;
  /** Measure the group detectors use to seed the search. Default 'bytes'. */
  measure?: TrafficMeasure;
  /** The operator's rules (rules.ts): must and apart are never broken by a move, prefer and together are costs. */
  rules?: readonly Rule[];
  /** The groups the search starts from (optimise.ts). Default 'cohesive': ours, with every other start. */
  method?: PlanMethod;
  /** buildGraph(traffic, the VMs' names in order) when the caller built it already (a round shares it with its groups). */
  graph?: TrafficGraph;
}

export interface Move {
  vm: string;
  from: string;
  to: string;
  fromSite: string;
  toSite: string;
  /** Objective rate saved by this move given the moves before it (may be < 0 for a move that prepares others). */
  gain: number;
  migrationSeconds: number;
  /** One-off cost of the move in the objective's unit (for time: seconds). */
  migrationCost: number;
  /** When the plan up to and including this move has paid for itself (cumulative one-off / cumulative gain). */
  paybackSeconds: number;
  reason: string;
}

export interface Plan {
  objective: Objective;
  unit: string;
  horizonSeconds: number;
  moves: Move[];
  /** Set when `moves` is empty: why nothing moves, in words. */
  noMove?: string;
  before: Score;
  after: Score;
  /** Which start of the search gave the target placement. */
  method: string;
  /** What a rule kept from moving: `vm3 stays on a2 rather than b1: apart from vm4 by host (rule db, ...)`. */
  held: string[];
  /** Rules the placement the plan leads to still breaks (none can be kept, or not within this round): never silent. */
  broken: string[];
}

/** `virt-cohort plan`: ordered moves towards the best placement found, within the round's limits. */
export function planMoves(traffic: readonly PairTraffic[], vms: readonly VmInfo[], env: Environment, opts: PlanOptions): Plan {
  const horizon = opts.horizonSeconds ?? 3600;
  const maxMoves = opts.maxMoves ?? 5;
  const excluded = new Set(opts.exclude ?? []);
  const g =
    opts.graph ??
    buildGraph(
      traffic,
      vms.map((v) => v.name),
    );
  const p = buildProblem(
    g,
    vms.map((v) => ({ name: v.name, memoryKiB: v.memoryKiB, vcpus: v.vcpus, host: v.host, pinned: v.pinned === true || excluded.has(v.name) })),
    env,
    opts.objective,
    horizon,
    opts.now ?? Date.now(),
    opts.rules ?? [],
  );
  const start = new Placement(p, p.origin.slice());
  const before = score(start);
  const base = { objective: opts.objective, unit: UNITS[opts.objective], horizonSeconds: horizon, before, held: [], broken: [] };
  if (vms.length === 0) return { ...base, moves: [], noMove: 'there are no VMs to place', after: before, method: 'none' };
  if (maxMoves < 1) return { ...base, moves: [], noMove: 'the round allows no move (maxMoves is 0)', after: before, method: 'none' };
  const best = optimise(p, opts.measure ?? 'bytes', {}, opts.method);
  const target = best.placement.host;
  const { moves, blocked } = sequence(p, start, target, maxMoves);
  const after = score(start);
  const plan: Plan = { ...base, moves, after, method: best.name, held: ruleHolds(start, new Set(moves.map((m) => m.vm))), broken: brokenRules(p, target) };
  if (moves.length === 0) {
    plan.noMove = whyNoMove(p, before, target, blocked, g.edgeA.length === 0) ?? unpaid(p, before, opts.measure ?? 'bytes', explain(p, before), opts.method);
    if (plan.broken.length) plan.noMove = `${plan.noMove}; and no placement found keeps every rule (see broken)`;
  }
  return plan;
}

/**
 * What the rules kept from moving: each VM with a rule whose best host, rules
 * aside, would lower the objective but breaks a rule that its own place keeps.
 */
function ruleHolds(pl: Placement, moved: Set<string>): string[] {
  const p = pl.p;
  const c = p.rules;
  if (!c) return [];
  const s = scratch(p);
  const out: string[] = [];
  for (let v = 0; v < p.nVm; v++) {
    const cur = pl.host[v]!;
    if (!c.touched[v] || !p.movable[v] || cur < 0) continue;
    const cost = siteCosts(pl, v, s);
    const here = ruleCost(p, v, cur, pl.host);
    let best = -1;
    let bestD = -1e-12 * (1 + Math.abs(cost[p.hostSite[cur]!]!));
    for (let h = 0; h < p.nHost; h++) {
      if (h === cur || !pl.hasRoom(v, h)) continue;
      const d = moveDelta(pl, v, h, cost) - ruleCost(p, v, h, pl.host) + here;
      if (d < bestD) {
        bestD = d;
        best = h;
      }
    }
    if (best < 0 || ruleCost(p, v, best, pl.host) <= here) continue;
    const kept = new Set(brokenBy(p, v, cur, pl.host));
    const why = brokenBy(p, v, best, pl.host).filter((x) => !kept.has(x));
    const name = p.graph.names[v]!;
    out.push(`${name} ${moved.has(name) ? 'goes to' : 'stays on'} ${p.hostNames[cur]} rather than ${p.hostNames[best]}: ${why.join('; ')}`);
  }
  return out;
}

/** The rules the target placement breaks, one line per VM (a pair once). */
function brokenRules(p: Problem, target: Int32Array): string[] {
  if (!p.rules) return [];
  const out: string[] = [];
  for (let v = 0; v < p.nVm; v++) {
    if (target[v]! < 0) continue;
    const why = brokenBy(p, v, target[v]!, target, { pairsOnce: true });
    if (why.length) out.push(`${p.graph.names[v]} on ${p.hostNames[target[v]!]} breaks: ${why.join('; ')}${p.movable[v] ? '' : ' (it is pinned)'}`);
  }
  return out;
}

/** Nothing pays back: say what the best placement would save if migrations were free, and when it would pay. */
function unpaid(p: Problem, before: Score, measure: TrafficMeasure, fallback: string, method?: PlanMethod): string {
  const free = optimise({ ...p, horizonSeconds: 1e15 }, measure, {}, method).score;
  const gain = before.rate - free.rate;
  if (!(gain > 1e-12 * Math.abs(before.rate)) || free.moves === 0) return fallback;
  const payback = free.oneOff / gain;
  return `moving ${free.moves} VM${free.moves > 1 ? 's' : ''} would save ${gain.toPrecision(3)} ${UNITS[p.objective]} but pays back only after ${fmtSeconds(payback)}, beyond the horizon of ${fmtSeconds(p.horizonSeconds)}: keep the VMs where they are, or raise the horizon`;
}

function explain(p: Problem, before: Score): string {
  return `the current placement is already the best found for the ${p.objective} objective; the ${fmtBytesRate(before.interSiteBytes)} that still crosses sites stays because capacity or pinned VMs leave no better choice`;
}

/**
 * Orders the moves from the current to the target placement: at each step the executable move
 * (its destination has room now, so capacity holds after every single migration) with the best
 * gain net of its amortised one-off cost. Then keeps the longest prefix that pays back within the
 * horizon. Applies the kept moves to `cur`.
 */
function sequence(p: Problem, cur: Placement, target: Int32Array, maxMoves: number): { moves: Move[]; blocked: boolean } {
  const pending: number[] = [];
  for (let v = 0; v < p.nVm; v++) if (target[v] !== cur.host[v]) pending.push(v);
  const s = scratch(p);
  const steps: { v: number; to: number; gain: number; rules: number; cost: number; secs: number; from: number }[] = [];
  const trial = cur.clone();
  // A pending VM's gain changes only when a neighbour moves or when its own or its target host
  // gains or loses its last VM: cached, and recomputed only then.
  const gainOf = new Float64Array(p.nVm);
  const known = new Uint8Array(p.nVm);
  const graph = p.graph;
  while (steps.length < maxMoves && pending.length > 0) {
    let pick = -1;
    let pickNet = -Infinity;
    let pickGain = 0;
    for (let i = 0; i < pending.length; i++) {
      const v = pending[i]!;
      const h = target[v]!;
      if (!trial.fits(v, h)) continue;
      if (!known[v]) {
        gainOf[v] = rateGain(trial, v, h, s);
        known[v] = 1;
      }
      const gain = gainOf[v]! + ruleCost(p, v, trial.host[v]!, trial.host) - ruleCost(p, v, h, trial.host);
      const net = gain - oneOff(p, v, h) / p.horizonSeconds;
      if (net > pickNet) {
        pickNet = net;
        pick = i;
        pickGain = gain;
      }
    }
    if (pick < 0) break;
    const v = pending[pick]!;
    const h = target[v]!;
    const from = trial.host[v]!;
    steps.push({ v, to: h, gain: pickGain, rules: pickGain - gainOf[v]!, cost: oneOff(p, v, h), secs: migrationSeconds(p, v, from, h), from });
    trial.move(v, h);
    pending.splice(pick, 1);
    for (let i = graph.offsets[v]!; i < graph.offsets[v + 1]!; i++) if (graph.neighbours[i]! < p.nVm) known[graph.neighbours[i]!] = 0;
    for (const u of pending) {
      const hu = trial.host[u]!;
      const tu = target[u]!;
      if (hu === from || hu === h || tu === from || tu === h) known[u] = 0;
    }
  }
  const blocked = steps.length === 0 && pending.length > 0;
  let keep = 0;
  let g = 0;
  let c = 0;
  const payback: number[] = [];
  steps.forEach((st, k) => {
    g += st.gain;
    c += st.cost;
    const pb = g > 0 ? c / g : Infinity;
    payback.push(pb);
    if (g > 0 && pb <= p.horizonSeconds) keep = k + 1;
  });
  const moves: Move[] = [];
  for (let k = 0; k < keep; k++) {
    const st = steps[k]!;
    const kept = st.rules > 0 ? brokenBy(p, st.v, st.from, cur.host).filter((x) => !brokenBy(p, st.v, st.to, cur.host).includes(x)) : [];
    const reason = explainMove(cur, st.v, st.to, st.gain - st.rules, st.cost, payback[k]!, kept);
    moves.push({
      vm: p.graph.names[st.v]!,
      from: p.hostNames[st.from]!,
      to: p.hostNames[st.to]!,
      fromSite: p.siteNames[p.hostSite[st.from]!]!,
      toSite: p.siteNames[p.hostSite[st.to]!]!,
      gain: st.gain,
      migrationSeconds: st.secs,
      migrationCost: st.cost,
      paybackSeconds: payback[k]!,
      reason,
    });
    cur.move(st.v, st.to);
  }
  return { moves, blocked };
}

/** Rate saved if v moved to h now (positive = better), one-off costs left out. */
function rateGain(pl: Placement, v: number, h: number, s: ReturnType<typeof scratch>): number {
  const p = pl.p;
  const cur = pl.host[v]!;
  const cost = siteCosts(pl, v, s);
  let d = cost[p.hostSite[cur]!]! - cost[p.hostSite[h]!]! + hostingRate(p, v, cur) - hostingRate(p, v, h);
  if (pl.count[cur] === 1) d += p.hostOpen[cur]!;
  if (pl.count[h] === 0) d -= p.hostOpen[h]!;
  return d;
}

function whyNoMove(p: Problem, before: Score, target: Int32Array, blocked: boolean, noTraffic: boolean): string | undefined {
  const changed = target.some((h, v) => h !== p.origin[v]);
  const split = before.interSiteBytes > 0 ? `; ${fmtBytesRate(before.interSiteBytes)} still crosses sites` : '';
  if (blocked) return `a better placement exists but every move in it waits for room on a full host (VMs would have to swap): free memory or vCPUs on the destination hosts${split}`;
  if (changed) return `the best placement found does not pay back within the horizon of ${fmtSeconds(p.horizonSeconds)}: keep the VMs where they are, or raise the horizon${split}`;
  if (noTraffic && p.objective !== 'cost') return 'no traffic was recorded between the VMs, so there is no group to bring together and nothing to gain by moving';
  if (!split) return `the current placement is already the best found for the ${p.objective} objective`;
  return undefined;
}
