import type { HostEntry, VmEntry } from '../collector/registry.js';
import { decide, forgetDone, type Decision, type DecisionSettings } from '../manager/decide.js';
import type { ManagerConfig } from '../manager/config.js';
import { nextCooldown, type Cooldown } from '../manager/history.js';
import { rulesOf } from '../placement/fromCollector.js';
import type { Environment } from '../placement/env.js';
import { Scorer, type Costs } from './score.js';
import type { Trace } from './trace.js';
import { envAt, envOf, roundView, weightedAnswer } from './view.js';

/**
 * `virt-cohort replay`: the manager's own decision (manager/decide.ts) run
 * round by round over a recorded trace, its moves simulated: a moved VM's
 * later traffic is counted at its new host, each move takes its memory over
 * the link at the environment's bandwidth and price, starts the VM's cooldown
 * (doubling as live), and a round that falls while migrations run is skipped,
 * as the live manager's next round waits for them. Deterministic: no clock,
 * no randomness beyond the planner's own (seeded).
 */
export type ReplaySettings = DecisionSettings & Pick<ManagerConfig, 'span' | 'coefficient' | 'everyPeriods' | 'cooldownMs' | 'maxConcurrent' | 'settleMs' | 'rules' | 'rulesFile'>;

export interface ReplayOptions {
  /** An environment file to judge the trace under instead of the recorded one(s). */
  env?: Environment;
  /** A move that brings a VM back to a host it left within this many rounds is a ping-pong move. Default 10. */
  pingPongRounds?: number;
  /** Told of each decision (round time in s, the view's now in ms). */
  onDecision?: (t: number, d: Decision) => void;
}

export interface SimulatedMove {
  vm: string;
  from: string;
  to: string;
  /** Start, ms. */
  at: number;
  seconds: number;
  round: number;
  pingPong: boolean;
}

export interface ReplayResult {
  rounds: number;
  /** Rounds that fell while the previous round's migrations still ran (the live manager waits for them). */
  skippedRounds: number;
  moves: SimulatedMove[];
  gibMigrated: number;
  pingPong: number;
  costs: Costs;
  /** Seconds during which a significant group (as the round found it) spanned more than one site. */
  splitSeconds: number;
  /** Seconds from the first period's start to the last one's end. */
  seconds: number;
  /** Per period: start (s) and bytes crossing sites. */
  series: { start: number; interSiteBytes: number }[];
  /** What the rounds told a person (VMs left out, silent hosts), each once. */
  notes: string[];
}

export const DEFAULT_PING_PONG_ROUNDS = 10;

export function replay(tr: Trace, s: ReplaySettings, o: ReplayOptions = {}): ReplayResult {
  const L = tr.periodSeconds;
  const every = L * s.everyPeriods;
  const hosts = tr.hosts;
  const scorer = new Scorer(tr, hosts, o.env);
  const H = scorer.hostIndex;
  const vms = tr.vms;
  const running = (v: VmEntry) => v.state === 'running' || v.state === 'arriving';
  // Where each VM was when the trace starts: the directory, with the moves made meanwhile undone.
  const hostOf = Int32Array.from(vms, (v) => (running(v) ? (H.get(v.host) ?? -1) : -1));
  const vmIndex = new Map(vms.map((v, i) => [v.name, i]));
  const start = tr.periods[0]?.start ?? 0;
  for (const m of [...tr.migrations].reverse()) {
    const v = vmIndex.get(m.vm);
    if (m.outcome === 'ok' && v !== undefined && hostOf[v]! >= 0 && m.at >= start * 1000) hostOf[v] = H.get(m.from) ?? hostOf[v]!;
  }
  // Free memory follows the VMs: a host's other load stays as its agent last reported it.
  const placed = (where: Int32Array) => {
    const mem = new Float64Array(hosts.length);
    where.forEach((h, v) => h >= 0 && (mem[h]! += vms[v]!.memoryKiB));
    return mem;
  };
  const recorded = placed(Int32Array.from(vms, (v) => (running(v) ? (H.get(v.host) ?? -1) : -1)));
  const lastReport = new Map<string, number>();
  const cool = new Map<string, Cooldown>();
  let streak: ReadonlyMap<string, number> = new Map();
  const pending: { v: number; to: number; done: number }[] = [];
  const moved = new Map<number, { round: number; from: number }[]>();
  const notes = new Set<string>();
  const scratch: Float64Array[] = [];
  const out: ReplayResult = { rounds: 0, skippedRounds: 0, moves: [], gibMigrated: 0, pingPong: 0, costs: scorer.costs, splitSeconds: 0, seconds: 0, series: [], notes: [] };
  const window = o.pingPongRounds ?? DEFAULT_PING_PONG_ROUNDS;
  let busyUntil = 0;
  // The rules in force, as live (manager.ts rulesFor): the configuration's and the VMs' metadata, as recorded.
  const rules = rulesOf({ directory: vms, registry: hosts }, { rules: s.rules ?? [], exclude: s.exclude, ...(s.rulesFile && { file: s.rulesFile }) });
  for (const i of rules.issues) notes.add(`rules: ${i.message}`);

  const land = (ms: number) => {
    for (let i = 0; i < pending.length; i++) {
      const m = pending[i]!;
      if (m.done > ms) continue;
      hostOf[m.v] = m.to;
      pending.splice(i--, 1);
    }
  };

  const round = (t: number) => {
    const now = t * 1000 + s.settleMs;
    if (now < busyUntil) {
      out.skippedRounds++;
      return;
    }
    land(now);
    out.rounds++;
    const free = placed(hostOf);
    const registry: HostEntry[] = hosts.map((h, i) => ({ ...h, lastSeen: lastReport.get(h.host) ?? 0, freeMemoryKiB: h.freeMemoryKiB + recorded[i]! - free[i]! }));
    const directory: VmEntry[] = vms.map((v, i) => (hostOf[i]! >= 0 ? { ...v, host: hosts[hostOf[i]!]!.host, site: hosts[hostOf[i]!]!.site } : v));
    const version = envAt(tr.environments, now);
    const view = roundView(weightedAnswer(tr, t, s.span, s.coefficient, scratch), { registry, directory, env: o.env ?? envOf(version), defaults: version.defaults }, now);
    for (const n of view.notes) notes.add(n);
    const d = decide({ view, settings: s, streak, cooldowns: new Map([...cool].map(([vm, c]) => [vm, c.until])), closed: new Map(), now, rules: rules.rules });
    o.onDecision?.(t, d);
    const site = new Map(view.vms.map((v) => [v.name, v.site]));
    if (d.groups.some((g) => new Set(g.map((m) => site.get(m))).size > 1)) out.splitSeconds += every;
    // The executor's order: up to maxConcurrent at once, each as soon as a slot is free.
    const slots = new Array<number>(Math.max(1, s.maxConcurrent)).fill(now);
    for (const m of d.orders) {
      const v = vmIndex.get(m.vm)!;
      const from = H.get(m.from)!;
      const to = H.get(m.to)!;
      const slot = slots.indexOf(Math.min(...slots));
      const at = slots[slot]!;
      const seconds = scorer.migration(vms[v]!.memoryKiB, from, to, at);
      slots[slot] = at + seconds * 1000;
      cool.set(m.vm, nextCooldown(cool.get(m.vm) ?? { count: 0, until: 0 }, s.cooldownMs, at));
      const past = moved.get(v) ?? [];
      const pingPong = past.some((p) => p.from === to && out.rounds - p.round <= window);
      past.push({ round: out.rounds, from });
      moved.set(v, past);
      pending.push({ v, to, done: slots[slot]! });
      out.moves.push({ vm: m.vm, from: m.from, to: m.to, at, seconds, round: out.rounds, pingPong });
      out.gibMigrated += vms[v]!.memoryKiB / 1048576;
      if (pingPong) out.pingPong++;
    }
    busyUntil = Math.max(...slots);
    const next = new Map(d.streak);
    forgetDone(next, d.orders);
    streak = next;
  };

  let t = Math.ceil((start + s.span * L) / every) * every;
  for (let k = 0; k < tr.periods.length; k++) {
    const p = tr.periods[k]!;
    for (; t <= p.start; t += every) round(t);
    // A VM whose migration ends in the first half of the period is counted at its new host for all of it.
    land((p.start + L / 2) * 1000);
    scorer.period(k, hostOf);
    out.series.push({ start: p.start, interSiteBytes: scorer.series[k]! });
    // Its reports arrive at its end: hosts that reported are live from then (the agents' heartbeat).
    for (const h of p.reported) lastReport.set(h, (p.start + L) * 1000);
  }
  const end = (tr.periods.at(-1)?.start ?? 0) + L;
  for (; t <= end; t += every) round(t);
  out.seconds = end - start;
  out.notes = [...notes];
  return out;
}
