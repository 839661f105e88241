import { pairMember } from '../collector/keys.js';
import type { CollectorView } from '../placement/fromCollector.js';
import { planMoves, type Plan } from '../placement/index.js';
import { members, moveBreaks, type Rule } from '../placement/rules.js';
import { clusterGroups, interSiteShare } from '../placement/view.js';
import type { Environment } from '../placement/env.js';
import type { ManagerConfig } from './config.js';
import type { MoveOrder } from './executor.js';
import { describeHold, holdOf } from './safety.js';

/** The settings a decision depends on (the manager's, as configured). */
export type DecisionSettings = Pick<ManagerConfig, 'objective' | 'horizonSeconds' | 'maxMoves' | 'exclude' | 'confirmRounds'> & Partial<Pick<ManagerConfig, 'method'>>;

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
}

export interface Decision {
  /** Share of VM-to-VM bytes/s that crosses sites. */
  interSite: number;
  /** The significant groups, as `virt-cohort groups` finds them with this horizon. */
  groups: string[][];
  plan?: Plan;
  /** Moves to make now: the plan's confirmed moves, then the evacuation of draining hosts. */
  orders: MoveOrder[];
  skipped: { vm: string; to: string; why: string }[];
  /** The streak after this decision (moves proposed again count one more; others start over). */
  streak: Map<string, number>;
  note?: string;
}

/**
 * One decision of the manager: plan over the view, keep the hysteresis
 * streak, hold what may not move (pinned, in cooldown, unconfirmed, to or from
 * a closed host), and evacuate draining hosts. The live manager and a replay
 * both call this, and nothing else decides.
 */
export function decide(input: DecisionInput): Decision {
  const { view, settings: cfg, closed, now } = input;
  const d: Decision = { interSite: 0, groups: [], orders: [], skipped: [], streak: new Map() };
  if (view.answer.status !== 'ok') {
    d.note = `the collector handed the query back: ${view.answer.reason}`;
    d.streak = new Map(input.streak);
    return d;
  }
  const draining = new Set(view.registry.filter((h) => h.draining).map((h) => h.host));
  d.interSite = interSiteShare(view);
  d.groups = clusterGroups(view, { horizonSeconds: cfg.horizonSeconds })
    .filter((g) => g.significant)
    .map((g) => g.members);
  const shut = (h: string) => draining.has(h) || closed.has(h); // nothing planned onto them
  const env: Environment = { ...view.environment, hosts: view.environment.hosts.map((h) => (shut(h.name) ? { ...h, reporting: false } : h)) };
  const plan = planMoves(view.traffic, view.vms, env, {
    objective: cfg.objective,
    horizonSeconds: cfg.horizonSeconds,
    maxMoves: cfg.maxMoves,
    exclude: input.focus ? [...cfg.exclude, ...view.vms.filter((v) => !input.focus!.includes(v.name)).map((v) => v.name)] : cfg.exclude,
    now,
    ...(input.rules && { rules: input.rules }),
    ...(cfg.method && { method: cfg.method }),
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
  const drain = drainMoves(view, draining, d.orders, closed, rules);
  for (const vm of drain.stuck) d.skipped.push({ vm, to: '-', why: drain.why.get(vm) ?? 'cannot leave its draining host: no live host has room for it' });
  for (const o of drain.moves) {
    const why = closed.get(o.from);
    if (why) d.skipped.push({ vm: o.vm, to: o.to, why: `${o.from}: ${why}` });
    else d.orders.push(o);
  }
  const known = new Set(view.vms.map((v) => v.name));
  d.orders = d.orders.filter((o) => known.has(o.vm));
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

/**
 * Evacuation of draining hosts: each VM still there goes where most of its
 * traffic is (the host of its heaviest peer) if that host has room, else to
 * the live host with the most free memory, preferring its own site; never
 * where a must or apart rule forbids, and where a prefer or together rule
 * would be broken only when no other host has room. A VM no host can take is
 * `stuck`, and `why` says what blocks it (no room, or which rule).
 */
export function drainMoves(
  view: CollectorView,
  draining: Set<string>,
  planned: MoveOrder[],
  closed: ReadonlyMap<string, unknown> = new Map(),
  rules: readonly Rule[] = [],
): { moves: MoveOrder[]; stuck: string[]; why: Map<string, string> } {
  const stuck: string[] = [];
  const why = new Map<string, string>();
  if (!draining.size) return { moves: [], stuck, why };
  const free = new Map(view.hosts.filter((h) => !draining.has(h.name) && !closed.has(h.name)).map((h) => [h.name, h.freeMemoryKiB]));
  const moving = new Set(planned.map((m) => m.vm));
  const where = new Map(view.vms.map((v) => [v.name, v]));
  const site = new Map(view.hosts.map((h) => [h.name, h.site]));
  const now = new Map(view.vms.map((v) => [v.name, v.host]));
  for (const m of planned) now.set(m.vm, m.to);
  const siteOf = new Map(view.registry.map((h) => [h.host, h.site]));
  const out: MoveOrder[] = [];
  const names = view.vms.map((v) => v.name);
  for (const v of view.vms) {
    if (!draining.has(v.host) || moving.has(v.name)) continue;
    // A pin is a rule too: the VM stays, and the drain says which pin keeps it.
    const pin = rules.find((r) => (r.kind === 'pin' || r.kind === 'opt-out') && members(r, names).includes(v.name));
    if (pin || v.pinned) {
      stuck.push(v.name);
      why.set(
        v.name,
        pin ? `cannot leave its draining host: it is pinned (rule ${pin.name}, ${pin.source})` : 'cannot leave its draining host now: it is arriving by a migration, or its host is silent',
      );
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
        const h = where.get(p.peer)?.host;
        if (h && hosts.includes(h)) return h;
      }
      return hosts.sort((a, b) => Number(site.get(b) === v.site) - Number(site.get(a) === v.site) || free.get(b)! - free.get(a)!)[0];
    };
    const to = pick(clean) ?? pick(allowed);
    if (!to) {
      stuck.push(v.name);
      const blocked = room.flatMap((h) =>
        breaks
          .get(h)!
          .filter((b) => b.hard)
          .map((b) => `${h}: ${b.text}`),
      );
      why.set(v.name, room.length ? `cannot leave its draining host without breaking a rule: ${blocked.join('; ')}` : 'cannot leave its draining host: no live host has room for it');
      continue;
    }
    free.set(to, (free.get(to) ?? 0) - v.memoryKiB);
    now.set(v.name, to);
    const soft = breaks.get(to)!.map((b) => b.text);
    out.push({
      vm: v.name,
      from: v.host,
      to,
      reason: `${v.host} is draining; ${to} ${peers.length ? 'is where its traffic goes' : 'has the most room'}${soft.length ? `; no host with room keeps every rule, this one breaks only ${soft.join('; ')}` : ''}`,
    });
  }
  return { moves: out, stuck, why };
}
