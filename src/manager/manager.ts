import type { Redis } from 'ioredis';
import { pairMember } from '../collector/keys.js';
import { Registry, type HostEntry } from '../collector/registry.js';
import { DEFAULT_PERIOD_SECONDS, msToNextBoundary } from '../util/period.js';
import { clusterGroups, interSiteShare } from '../placement/view.js';
import type { Environment } from '../placement/env.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS, readCollector, type CollectorView } from '../placement/fromCollector.js';
import { planMoves, type Plan } from '../placement/index.js';
import { managerMetrics } from '../metrics/registry.js';
import { logger } from '../util/log.js';
import type { ManagerConfig } from './config.js';
import { adoptRunning } from './adopt.js';
import { execute, type HostRoute, type MoveOrder } from './executor.js';
import type { MigrationRecord } from './history.js';
import type { LeaderLock } from './lock.js';
import { RouteVetter, routePolicy } from './trust.js';
import { describeHold, whyHeld } from './safety.js';

const log = logger('manager');

export { DEFAULT_MANAGER, type ManagerConfig } from './config.js';

export interface Round {
  n: number;
  at: number;
  view?: CollectorView;
  groups: string[][];
  /** Share of VM-to-VM bytes/s that crosses sites. */
  interSite: number;
  plan?: Plan;
  /** Moves made (or, in a dry run, that would be). */
  moves: MoveOrder[];
  skipped: { vm: string; to: string; why: string }[];
  done: MigrationRecord[];
  /** Hosts whose registered routes this manager does not vouch for: nothing moves from or to them. */
  refused: { host: string; why: string }[];
  note?: string;
}

/**
 * The closed loop: every few periods, as the leader, read the collector,
 * plan, and migrate what the plan proposed for `confirmRounds` rounds in a row,
 * skipping VMs in cooldown and hosts that are draining or silent. Hosts marked
 * draining are emptied first.
 */
export class Manager {
  private timer?: NodeJS.Timeout;
  private stopping = false;
  private rounds = 0;
  private streak = new Map<string, number>();
  /** The leadership term the streak was counted in: a manager elected again starts its streaks afresh. */
  private streakTerm = 0;
  private busy?: Promise<Round>;
  /** Told of each running migration's progress (the demo prints it). */
  progress?: (vm: string, percent: number, mibPerSecond: number) => void;
  private readonly vetter: RouteVetter;
  /** host → the refusal last logged, so each is logged once, not every round. */
  private said = new Map<string, string>();

  constructor(
    readonly redis: Redis,
    readonly cfg: ManagerConfig,
    readonly lock: LeaderLock,
    private readonly onRound: (r: Round) => void = () => undefined,
  ) {
    this.vetter = new RouteVetter(routePolicy(cfg));
    for (const p of this.vetter.problems) log.error(`${p}: this entry is ignored; correct it (docs/security.md)`);
  }

  start(): void {
    this.lock.start();
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    await this.busy?.catch(() => undefined);
    await this.lock.stop();
  }

  private async periodSeconds(): Promise<number> {
    return (await new Registry(this.redis).settings().catch(() => undefined))?.periodSeconds || DEFAULT_PERIOD_SECONDS;
  }

  private schedule(): void {
    if (this.stopping) return;
    void this.periodSeconds().then((p) => {
      const every = p * this.cfg.everyPeriods;
      const wait = msToNextBoundary(Date.now(), every) + this.cfg.settleMs;
      this.timer = setTimeout(() => {
        const began = Date.now();
        this.busy = this.round()
          .then((r) => {
            managerMetrics.round(r, (Date.now() - began) / 1000);
            return r;
          })
          .catch((err) => {
            managerMetrics.round(undefined, (Date.now() - began) / 1000);
            log.error({ err }, 'round failed; trying again at the next one');
            return { n: this.rounds, at: Date.now(), groups: [], interSite: 0, moves: [], skipped: [], done: [], refused: [], note: (err as Error).message } as Round;
          });
        void this.busy.then((r) => this.onRound(r)).finally(() => this.schedule());
      }, wait);
    });
  }

  /** One decision round (public for tests and `manager --once`). */
  async round(): Promise<Round> {
    const r: Round = { n: ++this.rounds, at: Date.now(), groups: [], interSite: 0, moves: [], skipped: [], done: [], refused: [] };
    if (!(await this.lock.tick())) {
      r.note = `standing by: the leader is ${await this.lock.holder()}`;
      return r;
    }
    if (this.lock.term !== this.streakTerm) {
      this.streak.clear();
      this.streakTerm = this.lock.term;
    }
    const view = await readCollector(this.redis, {
      query: { type: 'weighted', span: this.cfg.span, coefficient: this.cfg.coefficient, maxWaitMs: this.cfg.maxWaitMs, approx: true },
      ...(this.cfg.env
        ? { env: this.cfg.env }
        : { defaults: { latencyMs: DEFAULT_LATENCY_MS, bandwidthMbit: DEFAULT_BANDWIDTH_MBIT, cpuOvercommit: this.cfg.cpuOvercommit, reserveMemoryMiB: this.cfg.reserveMemory } }),
    });
    r.view = view;
    const trusted = trustedRoutes(view.registry, this.vetter);
    r.refused = trusted.refused;
    this.sayRefused(trusted.refused);
    const untrusted = new Map(trusted.refused.map((x) => [x.host, x.why]));
    // Migrations a previous leader started and never recorded: watched to their end before anything new.
    const adopted = await adoptRunning(this.redis, trusted.routes, { timeoutMs: this.cfg.timeoutMs, cooldownMs: this.cfg.cooldownMs, manager: this.lock.id });
    if (adopted.length) {
      r.done = adopted;
      r.note = `adopted ${adopted.length} migration(s) a previous leader started: ${adopted.map((a) => `${a.vm} ${a.outcome}`).join(', ')}; planning again next round`;
      return r;
    }
    const draining = new Set(view.registry.filter((h) => h.draining).map((h) => h.host));
    if (view.answer.status !== 'ok') {
      r.note = `the collector handed the query back: ${view.answer.reason}`;
      return r;
    }
    const byVm = new Map(view.vms.map((v) => [v.name, v]));
    r.interSite = interSiteShare(view);
    // The groups people read (logs, manager --once), as `virt-cohort groups` finds them with this horizon.
    r.groups = clusterGroups(view, { horizonSeconds: this.cfg.horizonSeconds })
      .filter((g) => g.significant)
      .map((g) => g.members);
    const closed = (h: string) => draining.has(h) || untrusted.has(h); // nothing planned onto them
    const env: Environment = { ...view.environment, hosts: view.environment.hosts.map((h) => (closed(h.name) ? { ...h, reporting: false } : h)) };
    const plan = planMoves(view.traffic, view.vms, env, {
      objective: this.cfg.objective,
      horizonSeconds: this.cfg.horizonSeconds,
      maxMoves: this.cfg.maxMoves,
      exclude: this.cfg.exclude,
    });
    r.plan = plan;

    const proposed = new Set<string>();
    for (const m of plan.moves) {
      const key = pairMember(m.vm, m.to);
      proposed.add(key);
      this.streak.set(key, (this.streak.get(key) ?? 0) + 1);
    }
    for (const k of [...this.streak.keys()]) if (!proposed.has(k)) this.streak.delete(k);

    const orders: MoveOrder[] = [];
    for (const m of plan.moves) {
      const untrustedWhy = [m.from, m.to].filter((h) => untrusted.has(h)).map((h) => `${h}: ${untrusted.get(h)}`)[0];
      // The plan's order keeps capacity right move after move: no room check here.
      const hold = untrustedWhy
        ? undefined
        : await whyHeld(
            this.redis,
            m,
            { hosts: view.registry, vms: view.directory },
            {
              room: false,
              draining: true,
              cooldown: true,
              confirm: { rounds: this.cfg.confirmRounds, seen: this.streak.get(pairMember(m.vm, m.to)) ?? 0 },
            },
          );
      const why = untrustedWhy ?? (hold ? describeHold(hold) : undefined);
      if (why) r.skipped.push({ vm: m.vm, to: m.to, why });
      else orders.push({ vm: m.vm, from: m.from, to: m.to, reason: m.reason });
    }
    for (const d of drainMoves(view, draining, orders, untrusted)) {
      const why = untrusted.get(d.from);
      if (why) r.skipped.push({ vm: d.vm, to: d.to, why: `${d.from}: ${why}` });
      else orders.push(d);
    }
    r.moves = orders.filter((o) => byVm.has(o.vm));
    if (!r.moves.length) {
      r.note = plan.noMove ?? (r.skipped.length ? 'every proposed move is held back (see skipped)' : 'no move');
      return r;
    }
    if (!this.cfg.apply) {
      r.note = 'dry run: nothing migrated (start the manager with --apply to act)';
      return r;
    }
    r.done = await execute(this.redis, r.moves, trusted.routes, {
      maxPerHost: this.cfg.maxPerHost,
      maxConcurrent: this.cfg.maxConcurrent,
      timeoutMs: this.cfg.timeoutMs,
      autoConverge: this.cfg.autoConverge,
      cooldownMs: this.cfg.cooldownMs,
      mayAct: () => this.lock.isLeader,
      manager: this.lock.id,
      ...(this.progress ? { onProgress: this.progress } : {}),
    });
    for (const d of r.done) this.streak.delete(pairMember(d.vm, d.to));
    return r;
  }

  private sayRefused(refused: { host: string; why: string }[]): void {
    const now = new Map(refused.map((x) => [x.host, x.why]));
    for (const [host, why] of now) if (this.said.get(host) !== why) log.error({ host }, `host ${host} left alone (nothing migrates from or to it): ${why}`);
    for (const host of this.said.keys()) if (!now.has(host)) log.info({ host }, `host ${host}: its routes are vouched for again`);
    this.said = now;
  }
}

/**
 * How to reach each host's libvirt, and where migrations into it send memory:
 * only the registered routes `vetter` (the manager's configuration) vouches
 * for; each other host with the reason it is refused.
 */
export function trustedRoutes(registry: readonly HostEntry[], vetter: RouteVetter): { routes: Map<string, HostRoute>; refused: { host: string; why: string }[] } {
  const routes = new Map<string, HostRoute>();
  const refused: { host: string; why: string }[] = [];
  for (const h of registry) {
    const v = vetter.vet(h.host, h.uri, h.migrateUri);
    if (v.ok) routes.set(h.host, v.route);
    else refused.push({ host: h.host, why: v.why });
  }
  return { routes, refused };
}

/** Share of the VM-to-VM traffic (bytes/s) whose two ends sit in different sites. */
export { interSiteShare } from '../placement/view.js';

/**
 * Evacuation of draining hosts: each VM still there goes where most of its
 * traffic is (the host of its heaviest peer) if that host has room, else to
 * the live host with the most free memory, preferring its own site.
 */
export function drainMoves(view: CollectorView, draining: Set<string>, planned: MoveOrder[], closed: ReadonlyMap<string, unknown> = new Map()): MoveOrder[] {
  if (!draining.size) return [];
  const free = new Map(view.hosts.filter((h) => !draining.has(h.name) && !closed.has(h.name)).map((h) => [h.name, h.freeMemoryKiB]));
  const moving = new Set(planned.map((m) => m.vm));
  const where = new Map(view.vms.map((v) => [v.name, v]));
  const out: MoveOrder[] = [];
  for (const v of view.vms) {
    if (!draining.has(v.host) || moving.has(v.name)) continue;
    const peers = view.traffic
      .filter((p) => p.src === v.name || p.dst === v.name)
      .map((p) => ({ peer: p.src === v.name ? p.dst : p.src, bytes: p.bytes }))
      .sort((a, b) => b.bytes - a.bytes);
    let to: string | undefined;
    for (const p of peers) {
      const h = where.get(p.peer)?.host;
      if (h && free.has(h) && free.get(h)! >= v.memoryKiB) {
        to = h;
        break;
      }
    }
    to ??= [...free]
      .filter(([, f]) => f >= v.memoryKiB)
      .sort((a, b) => Number(view.hosts.find((h) => h.name === b[0])?.site === v.site) - Number(view.hosts.find((h) => h.name === a[0])?.site === v.site) || b[1] - a[1])[0]?.[0];
    if (!to) {
      log.error({ vm: v.name, host: v.host }, 'cannot drain: no live host has room for this VM');
      continue;
    }
    free.set(to, (free.get(to) ?? 0) - v.memoryKiB);
    out.push({ vm: v.name, from: v.host, to, reason: `${v.host} is draining; ${to} ${peers.length ? 'is where its traffic goes' : 'has the most room'}` });
  }
  return out;
}
