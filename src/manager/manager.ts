import type { Redis } from 'ioredis';
import { Registry, type HostEntry } from '../collector/registry.js';
import { DEFAULT_PERIOD_SECONDS, msToNextBoundary } from '../util/period.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS, readCollector, type CollectorView } from '../placement/fromCollector.js';
import type { Plan } from '../placement/index.js';
import { managerMetrics } from '../metrics/registry.js';
import { logger } from '../util/log.js';
import type { ManagerConfig } from './config.js';
import { adoptRunning } from './adopt.js';
import { decide, forgetDone } from './decide.js';
import { execute, type HostRoute, type MoveOrder } from './executor.js';
import { cooldowns, type MigrationRecord } from './history.js';
import { loadStreak, saveStreak, type LeaderLock } from './lock.js';
import { RouteVetter, routePolicy } from './trust.js';

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
    // Migrations a previous leader started and never recorded: watched to their end before anything new.
    const adopted = await adoptRunning(this.redis, trusted.routes, { timeoutMs: this.cfg.timeoutMs, cooldownMs: this.cfg.cooldownMs, manager: this.lock.id });
    if (adopted.length) {
      r.done = adopted;
      r.note = `adopted ${adopted.length} migration(s) a previous leader started: ${adopted.map((a) => `${a.vm} ${a.outcome}`).join(', ')}; planning again next round`;
      return r;
    }
    const term = this.lock.term;
    const d = decide({
      view,
      settings: this.cfg,
      streak: await loadStreak(this.redis, term),
      cooldowns: await cooldowns(
        this.redis,
        view.vms.map((v) => v.name),
      ),
      closed: new Map(trusted.refused.map((x) => [x.host, x.why])),
      now: Date.now(),
    });
    Object.assign(r, { interSite: d.interSite, groups: d.groups, skipped: d.skipped, moves: d.orders, ...(d.plan && { plan: d.plan }), ...(d.note && { note: d.note }) });
    if (r.moves.length && !this.cfg.apply) r.note = 'dry run: nothing migrated (start the manager with --apply to act)';
    if (r.moves.length && this.cfg.apply) {
      r.done = await execute(this.redis, r.moves, trusted.routes, {
        maxPerHost: this.cfg.maxPerHost,
        maxConcurrent: this.cfg.maxConcurrent,
        timeoutMs: this.cfg.timeoutMs,
        autoConverge: this.cfg.autoConverge,
        cooldownMs: this.cfg.cooldownMs,
        mayAct: () => this.lock.fenced(),
        manager: this.lock.id,
        term,
        ...(this.progress ? { onProgress: this.progress } : {}),
      });
      forgetDone(d.streak, r.done);
    }
    await saveStreak(this.redis, term, d.streak);
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

export { interSiteShare } from '../placement/view.js';
