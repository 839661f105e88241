import { pairMember } from '../collector/keys.js';
import type { CollectorView } from '../placement/fromCollector.js';
import { planMoves, type Plan } from '../placement/index.js';
import { members, moveBreaks, type Rule } from '../placement/rules.js';
import { clusterGroups, interSiteShare, viewGraph } from '../placement/view.js';
import type { Environment } from '../placement/env.js';
import { siteLinks } from '../placement/problem.js';
import type { ManagerConfig } from './config.js';
import type { MoveOrder } from './executor.js';
import { describeHold, holdOf } from './safety.js';

/** The settings a decision depends on (the manager's, as configured). */
export type DecisionSettings = Pick<ManagerConfig, 'objective' | 'horizonSeconds' | 'maxMoves' | 'exclude' | 'confirmRounds'> &
  Partial<Pick<ManagerConfig, 'method' | 'evacuateSilentMs' | 'quotaMarginMs'>>;

/** Everything one decision reads, already fetched: the decision itself does no I/O. */
export interface DecisionInput {
  view: CollectorView;
  settings: DecisionSettings;
  /** "vm→host" (pairMember) → rounds in a row the move was proposed, before this one. */
  streak: ReadonlyMap<string, number>;
  /** VM → end of its migration cooldown (ms since the epoch). */
  cooldowns: ReadonlyMap<string, number>;
  /** Hosts nothing moves from or to, with the reason (routes the manager does not vouch for). */
  closed: ReadonlyMap<string, string>;
  /** The decision's clock (ms): cooldowns and availability windows are judged at it. */
  now: number;
  /** The operator's rules in force (placement/rules.ts): the plan obeys them, and no order breaks a must or apart rule. */
  rules?: readonly Rule[];
  /**
   * An event's decision (manager/events.ts): only these VMs are planned (the others stay put), and
   * their moves need no confirmation: a VM just started joins its group now. Draining hosts are emptied as ever.
   */
  focus?: readonly string[];
  /**
   * Moves decided before and not finished (the manager runs an event's decision while a round's
   * migrations go on): those VMs are not planned again, and their destinations' room is taken.
   */
  moving?: readonly MoveOrder[];
  /** How long recent migrations took (ms, a high percentile; manager/history.ts recentMigrationMs): a quota's evacuation counts each VM at least this. */
  migrationMs?: number;
}

export interface Decision {
  /** Share of VM-to-VM bytes/s that crosses sites. */
  interSite: number;
  /** The significant groups, as `virt-cohort groups` finds them with this horizon. */
  groups: string[][];
  plan?: Plan;
  /** Moves to make now: the plan's confirmed moves, then the evacuation of draining and long-silent hosts. */
  orders: MoveOrder[];
  skipped: { vm: string; to: string; why: string }[];
  /** The streak after this decision (moves proposed again count one more; others start over). */
  streak: Map<string, number>;
  note?: string;
}

/**
 * One decision of the manager: plan over the view, keep the hysteresis
 * streak, hold what may not move (pinned, in cooldown, unconfirmed, to or from
 * a closed host, already moving), and evacuate the hosts being left: draining
 * ones, and those silent for `evacuateSilentMs`. The live manager and a
 * replay both call this, and nothing else decides.
 */
export function decide(input: DecisionInput): Decision {
  const { view, settings: cfg, closed, now } = input;
  const d: Decision = { interSite: 0, groups: [], orders: [], skipped: [], streak: new Map() };
  if (view.answer.status !== 'ok') {
    d.note = `the collector handed the query back: ${view.answer.reason}`;
    d.streak = new Map(input.streak);
    return d;
  }
  const leaving = hostsLeft(view, cfg.evacuateSilentMs ?? 0, now, { marginMs: cfg.quotaMarginMs ?? 0, migrationMs: input.migrationMs ?? 0 });
  const moving = input.moving ?? [];
  d.interSite = interSiteShare(view);
  const graph = viewGraph(view); // one graph for the groups and the plan: a million pairs are read once
  d.groups = clusterGroups(view, { horizonSeconds: cfg.horizonSeconds, graph })
    .filter((g) => g.significant)
    .map((g) => g.members);
  const shut = (h: string) => leaving.has(h) || closed.has(h); // nothing planned onto them
  const env: Environment = { ...view.environment, hosts: view.environment.hosts.map((h) => (shut(h.name) ? { ...h, reporting: false } : h)) };
  const plan = planMoves(view.traffic, view.vms, env, {
    objective: cfg.objective,
    horizonSeconds: cfg.horizonSeconds,
    maxMoves: cfg.maxMoves,
    exclude: [...cfg.exclude, ...moving.map((m) => m.vm), ...(input.focus ? view.vms.filter((v) => !input.focus!.includes(v.name)).map((v) => v.name) : [])],
    now,
    ...(input.rules && { rules: input.rules }),
    ...(cfg.method && { method: cfg.method }),
    graph,
  });
  d.plan = plan;
  for (const m of plan.moves) {
    const key = pairMember(m.vm, m.to);
    d.streak.set(key, (input.streak.get(key) ?? 0) + 1);
  }
  const facts = { hosts: view.registry, vms: view.directory, now, cooldowns: input.cooldowns };
  const rules = input.rules ?? [];
  const where = new Map(view.vms.map((v) => [v.name, v.host]));
  const siteOf = new Map(view.registry.map((h) => [h.host, h.site]));
  const rooms = new Rooms(view);
  for (const m of moving) {
    rooms.take(m);
    where.set(m.vm, m.to);
  }
  for (const m of plan.moves) {
    const shutWhy = [m.from, m.to].filter((h) => closed.has(h)).map((h) => `${h}: ${closed.get(h)}`)[0];
    const seen = input.focus ? cfg.confirmRounds : (d.streak.get(pairMember(m.vm, m.to)) ?? 0);
    const hold = shutWhy ? undefined : holdOf(m, facts, { room: false, draining: true, cooldown: true, confirm: { rounds: cfg.confirmRounds, seen } });
    const held = shutWhy ?? (hold ? describeHold(hold) : undefined);
    // A move held back can leave a later one of the plan breaking a rule (db1 waits for db2 to leave), or
    // short of the room it counted on: each is checked again in order.
    const breach = held ? undefined : moveBreaks(rules, where, siteOf, m.vm, m.to).find((b) => b.hard);
    const why = held ?? (breach ? `would break ${breach.text}` : rooms.take(m));
    if (why) d.skipped.push({ vm: m.vm, to: m.to, why });
    else {
      d.orders.push({ vm: m.vm, from: m.from, to: m.to, reason: m.reason });
      where.set(m.vm, m.to);
    }
  }
  const drain = drainMoves(view, leaving, [...moving, ...d.orders], closed, rules);
  for (const vm of drain.stuck) d.skipped.push({ vm, to: '-', why: drain.why.get(vm)! });
  for (const o of drain.moves) {
    const why = closed.get(o.from);
    if (why) d.skipped.push({ vm: o.vm, to: o.to, why: `${o.from}: ${why}` });
    else d.orders.push(o);
  }
  const known = new Set(view.vms.map((v) => v.name));
  const busy = new Set(moving.map((m) => m.vm));
  d.orders = d.orders.filter((o) => known.has(o.vm) && !busy.has(o.vm));
  if (!d.orders.length) d.note = plan.noMove ?? (d.skipped.length ? 'every proposed move is held back (see skipped)' : 'no move');
  return d;
}

/**
 * Free memory along the orders: the plan keeps capacity right move after
 * move, but only if every move before goes; when one is held, a later move
 * that counted on the room it left is held too (else it would overfill its
 * destination; a replay found it).
 */
class Rooms {
  private free: Map<string, number>;
  private mem: Map<string, number>;
  constructor(view: CollectorView) {
    this.free = new Map(view.hosts.map((h) => [h.name, h.freeMemoryKiB - view.environment.reserveMemoryKiB]));
    this.mem = new Map(view.vms.map((v) => [v.name, v.memoryKiB]));
  }
  /** Why the move cannot go now, or undefined after counting it. */
  take(m: { vm: string; from: string; to: string }): string | undefined {
    const need = this.mem.get(m.vm) ?? 0;
    const free = this.free.get(m.to);
    if (free !== undefined && free + 1e-9 * need < need) return `${m.to} has ${Math.floor(free / 1024)} MiB free, ${m.vm} needs ${Math.ceil(need / 1024)} MiB (a move the plan made room with is held)`;
    if (free !== undefined) this.free.set(m.to, free - need);
    const left = this.free.get(m.from);
    if (left !== undefined) this.free.set(m.from, left + need);
    return undefined;
  }
}

/** A move made starts its streak over: the live round after its migrations, a replay after its simulated ones. */
export function forgetDone(streak: Map<string, number>, done: readonly { vm: string; to: string }[]): void {
  for (const m of done) streak.delete(pairMember(m.vm, m.to));
}

/** Why a host is being left: an operator drains it, its agent has been silent too long, or its quota ends. */
export interface Leaving {
  kind: 'draining' | 'silent' | 'quota';
  /** "a1 is draining", "a1 has been silent for 600 s": the start of each move's reason. */
  why: string;
}

/**
 * The hosts to evacuate now: draining ones, (evacuateSilentMs > 0) those whose agent has been silent
 * that long, and (given the environment) those whose quota ends before their VMs could leave, with
 * the margin to spare (quotaDeadlines).
 */
export function hostsLeft(
  view: Pick<CollectorView, 'registry'> & Partial<Pick<CollectorView, 'environment' | 'vms'>>,
  evacuateSilentMs: number,
  now: number,
  quota: QuotaTiming = { marginMs: 0 },
): Map<string, Leaving> {
  const out = new Map<string, Leaving>();
  for (const h of view.registry) {
    if (h.draining) out.set(h.host, { kind: 'draining', why: `${h.host} is draining` });
    else if (evacuateSilentMs > 0 && now - h.lastSeen >= evacuateSilentMs) {
      out.set(h.host, { kind: 'silent', why: `${h.host} has been silent for ${Math.round((now - h.lastSeen) / 1000)} s` });
    }
  }
  if (view.environment && view.vms) {
    for (const [host, q] of quotaDeadlines({ environment: view.environment, vms: view.vms }, quota)) {
      if (now >= q.at && !out.has(host)) out.set(host, { kind: 'quota', why: q.why });
    }
  }
  return out;
}

/**
 * A live migration sends the memory at least once and the pages written meanwhile again: the
 * estimate counts it twice over the link, plus a fixed set-up (connection, the guest paused and
 * resumed). The lab's 128 MiB guests over 1 Gbit/s take 3 to 9 s (README), against 1.1 s of link time.
 */
const PRECOPY_PASSES = 2;
const MIGRATION_SETUP_MS = 8_000;

/** How a quota's evacuation is timed: the margin kept to spare, and (when known) how long recent migrations took, a floor for each VM's. */
export interface QuotaTiming {
  marginMs: number;
  migrationMs?: number;
}

/**
 * For each host whose quota ends (availableUntil), when its evacuation must start: the end, less the
 * time its VMs need to leave, less `marginMs` (rounds come at their interval; migrations may be
 * slower than their link). The VMs of the hosts whose quota ends no later are counted too, all one
 * after the other: the executor runs one migration per host at a time, and evacuations onto the
 * same destinations wait for each other. Each VM is its memory twice over the slowest link out of
 * its site plus a fixed set-up, or what recent migrations took (`migrationMs`) when that is longer:
 * a loaded host migrates slower than its link.
 */
export function quotaDeadlines(view: Pick<CollectorView, 'environment' | 'vms'>, { marginMs, migrationMs = 0 }: QuotaTiming): Map<string, { at: number; until: number; why: string }> {
  const env = view.environment;
  const out = new Map<string, { at: number; until: number; why: string }>();
  const ending = env.hosts.filter((h) => h.availableUntil !== undefined);
  if (!ending.length) return out;
  const S = env.sites.length;
  const siteIndex = new Map(env.sites.map((s, i) => [s.name, i] as const));
  const { bps } = siteLinks(env);
  const leaveMs = (h: (typeof ending)[number]) => {
    const s = siteIndex.get(h.site)!;
    let slowest = Infinity;
    for (let t = 0; t < S; t++) if (bps[s * S + t]! > 0) slowest = Math.min(slowest, bps[s * S + t]!);
    const there = view.vms.filter((v) => v.host === h.name);
    const one = (v: (typeof there)[number]) => Math.max(migrationMs, MIGRATION_SETUP_MS + (PRECOPY_PASSES * v.memoryKiB * 1024 * 8 * 1000) / slowest);
    return { vms: there.length, ms: there.reduce((ms, v) => ms + one(v), 0) };
  };
  const own = new Map(ending.map((h) => [h.name, leaveMs(h)]));
  for (const h of ending) {
    const until = h.availableUntil!;
    const byThen = ending.filter((g) => g.availableUntil! <= until);
    const needMs = byThen.reduce((ms, g) => ms + own.get(g.name)!.ms, 0);
    const vms = byThen.reduce((n, g) => n + own.get(g.name)!.vms, 0);
    const others = byThen.length > 1 ? ` (with ${byThen.length - 1} other host(s) whose quota ends by then)` : '';
    const why = `${h.name}'s quota ends at ${new Date(until).toISOString().slice(0, 19)}Z; ${vms} VM(s)${others} need about ${Math.ceil(needMs / 1000)} s to leave, and ${Math.round(marginMs / 1000)} s are kept to spare`;
    out.set(h.name, { at: until - needMs - marginMs, until, why });
  }
  return out;
}

/**
 * Evacuation of the hosts being left: each VM still there goes where most of
 * its traffic is (the host of its heaviest peer) if that host has room, else
 * to the live host with the most free memory, preferring its own site; never
 * where a must or apart rule forbids, and where a prefer or together rule
 * would be broken only when no other host has room. A VM no host can take is
 * `stuck`, and `why` says what blocks it (no room, a pin, or which rule).
 */
export function drainMoves(
  view: CollectorView,
  leaving: ReadonlyMap<string, Leaving>,
  planned: readonly MoveOrder[],
  closed: ReadonlyMap<string, unknown> = new Map(),
  rules: readonly Rule[] = [],
): { moves: MoveOrder[]; stuck: string[]; why: Map<string, string> } {
  const stuck: string[] = [];
  const why = new Map<string, string>();
  if (!leaving.size) return { moves: [], stuck, why };
  const free = new Map(view.hosts.filter((h) => !leaving.has(h.name) && !closed.has(h.name)).map((h) => [h.name, h.freeMemoryKiB]));
  const moving = new Set(planned.map((m) => m.vm));
  const siteOf = new Map(view.registry.map((h) => [h.host, h.site]));
  // Where each VM will be once the moves decided before are made.
  const now = new Map(view.vms.map((v) => [v.name, v.host]));
  for (const m of planned) now.set(m.vm, m.to);
  const entry = new Map(view.directory.map((v) => [v.name, v]));
  const out: MoveOrder[] = [];
  const names = view.vms.map((v) => v.name);
  for (const v of view.vms) {
    const left = leaving.get(v.host);
    if (!left || moving.has(v.name)) continue;
    const stay = (reason: string) => {
      stuck.push(v.name);
      why.set(v.name, `cannot leave its ${left.kind === 'quota' ? 'host before its quota ends' : `${left.kind} host`}${reason}`);
    };
    // A pin is a rule too: the VM stays, and the evacuation says which pin keeps it. The view pins every VM of a
    // silent host (nothing is planned for it); here only the VM's own pin, opt-out or arrival keeps it.
    const pin = rules.find((r) => (r.kind === 'pin' || r.kind === 'opt-out') && members(r, names).includes(v.name));
    const own = entry.get(v.name);
    const fixed = own ? own.pinned || own.optOut || own.state === 'arriving' : v.pinned;
    if (pin || fixed) {
      stay(pin ? `: it is pinned (rule ${pin.name}, ${pin.source})` : ' now: it is pinned by its metadata, or arriving by a migration');
      continue;
    }
    const peers = view.traffic
      .filter((p) => p.src === v.name || p.dst === v.name)
      .map((p) => ({ peer: p.src === v.name ? p.dst : p.src, bytes: p.bytes }))
      .sort((a, b) => b.bytes - a.bytes);
    const room = [...free].filter(([, f]) => f >= v.memoryKiB).map(([h]) => h);
    const breaks = new Map(room.map((h) => [h, moveBreaks(rules, now, siteOf, v.name, h)]));
    // Hosts no hard rule forbids; among them, those that keep every rule come first.
    const allowed = room.filter((h) => !breaks.get(h)!.some((b) => b.hard));
    const clean = allowed.filter((h) => !breaks.get(h)!.length);
    const pick = (hosts: string[]): string | undefined => {
      for (const p of peers) {
        const h = now.get(p.peer);
        if (h && hosts.includes(h)) return h;
      }
      return hosts.sort((a, b) => Number(siteOf.get(b) === v.site) - Number(siteOf.get(a) === v.site) || free.get(b)! - free.get(a)!)[0];
    };
    const to = pick(clean) ?? pick(allowed);
    if (!to) {
      const blocked = room.flatMap((h) =>
        breaks
          .get(h)!
          .filter((b) => b.hard)
          .map((b) => `${h}: ${b.text}`),
      );
      stay(room.length ? ` without breaking a rule: ${blocked.join('; ')}` : ': no live host has room for it');
      continue;
    }
    free.set(to, (free.get(to) ?? 0) - v.memoryKiB);
    now.set(v.name, to);
    const soft = breaks.get(to)!.map((b) => b.text);
    out.push({
      vm: v.name,
      from: v.host,
      to,
      reason: `${left.why}; ${to} ${peers.length ? 'is where its traffic goes' : 'has the most room'}${soft.length ? `; no host with room keeps every rule, this one breaks only ${soft.join('; ')}` : ''}`,
    });
  }
  return { moves: out, stuck, why };
}
