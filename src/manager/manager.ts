import type { Redis } from 'ioredis';
import { Registry } from '../collector/registry.js';
import { DEFAULT_PERIOD_SECONDS, msToNextBoundary } from '../util/period.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS, readCollector, rulesOf, type CollectorView } from '../placement/fromCollector.js';
import type { RuleIssue } from '../placement/rules.js';
import type { Plan } from '../placement/index.js';
import { managerMetrics } from '../metrics/registry.js';
import { logger } from '../util/log.js';
import type { ManagerConfig } from './config.js';
import { adoptRunning } from './adopt.js';
import { CertWatch } from './certs.js';
import { DecisionEnvironment } from './environment.js';
import { decide, forgetDone, hostsLeft, quotaDeadlines } from './decide.js';
import { execute, type HostRoute, type MoveOrder } from './executor.js';
import { EventJudge, EventReader, type HookEntry } from './events.js';
import { cooldowns, holdExternal, recentMigrationMs, type MigrationRecord } from './history.js';
import { loadStreak, saveStreak, type LeaderLock } from './lock.js';
import { RouteVetter, routePolicy, trustedRoutes } from './trust.js';

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
  /** Set for a decision an event asked for: what happened, and when (ms). */
  cause?: { what: string; at: number };
  /** The version of the environment stored in Redis the decision used (undefined: a file's, a lab's or the registry's). */
  envVersion?: number;
}

/** What an event round decides about. */
export interface EventFocus {
  /** The VMs to place now (none: only the draining hosts are emptied). */
  focus: string[];
  cause: { what: string; at: number };
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
  private readonly environment: DecisionEnvironment;
  /** host → the refusal last logged, so each is logged once, not every round. */
  private said = new Map<string, string>();
  /** Rule problems already logged: each once, until it goes away. */
  private ruleSaid = new Set<string>();
  /** One decision at a time: rounds and event reactions queue here for their reading and deciding, not for their migrations. */
  private queue: Promise<unknown> = Promise.resolve();
  /** VM → the move decided for it and not finished: a later decision leaves it alone and counts its room. */
  private moving = new Map<string, MoveOrder>();
  /** The migrations running, whichever decision made them: the executor's limits count them all. */
  private running = new Map<MoveOrder, Promise<void>>();
  private listening?: Promise<void>;
  private readonly judge = new EventJudge();
  /** Hosts seen being left (draining, or silent too long), so that a new one is acted on at once. */
  private leaving = new Set<string>();

  constructor(
    readonly redis: Redis,
    readonly cfg: ManagerConfig,
    readonly lock: LeaderLock,
    private readonly onRound: (r: Round) => void = () => undefined,
    /** The hosts' TLS certificates, looked at before each decision (a test without libvirtd gives its own). */
    private readonly certs = new CertWatch(),
  ) {
    this.vetter = new RouteVetter(routePolicy(cfg));
    this.environment = new DecisionEnvironment(redis, cfg);
    for (const p of this.vetter.problems) log.error(`${p}: this entry is ignored; correct it (docs/security.md)`);
  }

  start(): void {
    this.lock.start();
    this.schedule();
    if (this.cfg.events) this.listening = this.listen();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.timer);
    clearTimeout(this.quotaTimer);
    await this.busy?.catch(() => undefined);
    await this.listening?.catch(() => undefined);
    await Promise.all(this.reacting);
    await this.queue.catch(() => undefined);
    await this.lock.stop();
  }

  /** Runs `fn` after every decision queued before it. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Between rounds: the hosts' hook events, read as they come, and the
   * registry's drain marks, checked every second. Only the leader acts.
   */
  private async listen(): Promise<void> {
    const reader = new EventReader(this.redis);
    try {
      while (!this.stopping) {
        try {
          const entries = await reader.next();
          if (!this.lock.isLeader) {
            // A standby acts on nothing; once it leads, it goes on from where the leader got to.
            reader.forget();
            continue;
          }
          // Judged in order at once; each reaction then runs on its own, so one waiting for the directory holds up no other.
          for (const e of entries) this.track(this.onEvent(e));
          await reader.done();
          await this.onLeaving();
          await this.onEnvironment();
        } catch (err) {
          if (this.stopping) break;
          log.warn({ err }, 'reading the hook events failed; trying again in a second (the rounds go on)');
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
    } finally {
      reader.close();
    }
  }

  private reacting = new Set<Promise<unknown>>();

  private track(p: Promise<unknown>): void {
    const q = p.catch((err) => log.error({ err }, 'reacting to an event failed; the rounds go on'));
    this.reacting.add(q);
    void q.finally(() => this.reacting.delete(q));
  }

  /** One event: judged, then acted on (a round for a VM started, a hold for a VM moved by someone else). Public for tests. */
  async onEvent(e: HookEntry): Promise<Round | undefined> {
    const r = this.judge.judge(e);
    if (r.kind === 'none') return undefined;
    log.info({ vm: r.vm, host: r.host, event: e.operation, id: e.id }, r.kind === 'place' ? 'VM started: placing it now' : 'VM arrived by migration');
    if (r.kind === 'arrived') {
      await this.arrived(r);
      return undefined;
    }
    // The agent writes the VM into the directory when libvirt shows it running: wait for that, briefly.
    const reg = new Registry(this.redis);
    for (let i = 0; i < 30 && !this.stopping; i++) {
      const v = (await reg.vms()).find((x) => x.name === r.vm);
      if (v?.host === r.host && v.state === 'running') return this.eventRound({ focus: [r.vm], cause: { what: `${r.vm} started on ${r.host}`, at: r.at } });
      await new Promise((res) => setTimeout(res, 100));
    }
    log.info({ vm: r.vm, host: r.host }, 'an event for a VM the directory does not show running there: ignored (the rounds see it when it does)');
    return undefined;
  }

  /** A VM arrived by a migration: unless this manager made it, held where it is and recorded as external. */
  private async arrived(r: { vm: string; host: string; at: number }): Promise<void> {
    const until = await holdExternal(this.redis, r, this.cfg.externalHoldMs);
    if (until !== undefined) log.warn({ vm: r.vm, host: r.host, until: new Date(until).toISOString() }, 'a VM moved by something other than virt-cohort: held where it is');
  }

  /** A host newly marked draining, or newly silent for evacuateSilent: emptied now, not at the next round. */
  private async onLeaving(): Promise<void> {
    const now = Date.now();
    const left = hostsLeft({ registry: await new Registry(this.redis).hosts() }, this.cfg.evacuateSilentMs, now);
    const fresh = [...left].filter(([h]) => !this.leaving.has(h));
    this.leaving = new Set(left.keys());
    if (!fresh.length) return;
    const what = fresh.map(([h, l]) => (l.kind === 'draining' ? `host ${h} draining` : `host ${h} silent`)).join(', ');
    // Not awaited: the events go on being read while its migrations run.
    this.track(this.eventRound({ focus: [], cause: { what, at: now } }));
  }

  private quotaTimer?: NodeJS.Timeout;
  /** How long recent migrations took (history's 90th percentile, ms), read at each decision: a quota's evacuation counts it. */
  private migrationMs = 0;

  /**
   * The next quota deadline (a host whose quota ends, less the time its VMs need to leave and the
   * margin) gets a decision of its own at that instant, not at the round after it. Re-armed from each
   * decision's view, so a new environment or VMs moved since move it.
   */
  private armQuota(view: CollectorView): void {
    clearTimeout(this.quotaTimer);
    const now = Date.now();
    const busy = new Set(view.vms.map((v) => v.host));
    const next = [...quotaDeadlines(view, { marginMs: this.cfg.quotaMarginMs, migrationMs: this.migrationMs })].filter(([h, q]) => q.at > now && busy.has(h)).sort((a, b) => a[1].at - b[1].at)[0];
    // setTimeout holds at most ~24 days; a later deadline is armed by a later round.
    if (!next || this.stopping || next[1].at - now > 2 ** 31 - 1) return;
    const [host, q] = next;
    this.quotaTimer = setTimeout(() => this.track(this.eventRound({ focus: [], cause: { what: `host ${host}'s quota: ${q.why}`, at: q.at } })), q.at - now);
  }

  /** A decision an event asked for, in turn with the other decisions (not with their migrations); told like a round. */
  private async eventRound(f: EventFocus): Promise<Round> {
    const r = await this.round(f);
    const started = r.done[0]?.at;
    if (started !== undefined) log.info({ cause: f.cause.what, reactionMs: started - f.cause.at }, 'event: migration started');
    this.onRound(r);
    return r;
  }

  private async periodSeconds(): Promise<number> {
    return (await new Registry(this.redis).settings().catch(() => undefined))?.periodSeconds || DEFAULT_PERIOD_SECONDS;
  }

  private schedule(): void {
    if (this.stopping) return;
    void this.periodSeconds().then((p) => {
      const every = p * this.cfg.everyPeriods;
      const wait = msToNextBoundary(Date.now(), every) + this.cfg.settleMs;
      this.timer = setTimeout(() => this.scheduledRound(), wait);
    });
  }

  /** True while a scheduled round runs (its migrations included). */
  private inRound = false;

  /** A round of the schedule (`why`: brought forward by a change, such as a new environment version), then the next one scheduled. */
  private scheduledRound(why?: { what: string; at: number }): void {
    const began = Date.now();
    this.inRound = true;
    this.busy = this.round(undefined, why)
      .then((r) => {
        managerMetrics.round(r, (Date.now() - began) / 1000);
        return r;
      })
      .catch((err) => {
        managerMetrics.round(undefined, (Date.now() - began) / 1000);
        log.error({ err }, 'round failed; trying again at the next one');
        return { n: this.rounds, at: Date.now(), groups: [], interSite: 0, moves: [], skipped: [], done: [], refused: [], note: (err as Error).message } as Round;
      });
    void this.busy
      .then((r) => this.onRound(r))
      .finally(() => {
        this.inRound = false;
        this.schedule();
      });
  }

  /** The environment version last seen between rounds (undefined: not read yet). */
  private envSeen?: number;

  /**
   * A new environment version (virt-cohort env apply|set) wakes the manager like an event: the next
   * round runs now, under the new prices and quotas, rather than at its time. A round running already
   * reads the version when it decides, and the next follows on schedule.
   */
  private async onEnvironment(): Promise<void> {
    const v = await new Registry(this.redis).environmentVersion();
    const was = this.envSeen;
    this.envSeen = v;
    if (was === undefined || v === was || this.inRound || this.stopping) return;
    clearTimeout(this.timer);
    log.info({ version: v, was }, `environment version ${v}: a round now`);
    this.scheduledRound({ what: `environment version ${v}`, at: Date.now() });
  }

  /**
   * One decision round (public for tests and `manager --once`); with `event`, the decision an event
   * asked for. Decisions are made one at a time; their migrations run side by side, within the limits.
   */
  async round(event?: EventFocus, why?: { what: string; at: number }): Promise<Round> {
    const cause = event?.cause ?? why;
    const r: Round = { n: ++this.rounds, at: Date.now(), groups: [], interSite: 0, moves: [], skipped: [], done: [], refused: [], ...(cause && { cause }) };
    const decided = await this.exclusive(() => this.decideRound(r, event));
    if (!decided) return r;
    const { routes, term, streak } = decided;
    try {
      r.done = await execute(this.redis, r.moves, routes, {
        maxPerHost: this.cfg.maxPerHost,
        maxConcurrent: this.cfg.maxConcurrent,
        timeoutMs: this.cfg.timeoutMs,
        autoConverge: this.cfg.autoConverge,
        live: this.cfg.live,
        assumeSharedStorage: this.cfg.assumeSharedStorage,
        encrypt: this.cfg.encrypt,
        cooldownMs: this.cfg.cooldownMs,
        mayAct: () => this.lock.fenced(),
        manager: this.lock.id,
        term,
        running: this.running,
        ...(this.progress ? { onProgress: this.progress } : {}),
      });
    } finally {
      for (const m of r.moves) if (this.moving.get(m.vm) === m) this.moving.delete(m.vm);
    }
    forgetDone(streak, r.done);
    // An event's decision plans only its VMs: the rounds' streaks are theirs.
    if (!event) await saveStreak(this.redis, term, streak);
    return r;
  }

  /**
   * Reads and decides, one decision at a time; the moves to make are claimed (this.moving) before the
   * next decision reads. Undefined when there is nothing to execute (r says why).
   */
  private async decideRound(r: Round, event?: EventFocus): Promise<{ routes: Map<string, HostRoute>; term: number; streak: Map<string, number> } | undefined> {
    if (!(await this.lock.tick())) {
      r.note = `standing by: the leader is ${await this.lock.holder()}`;
      return undefined;
    }
    const inForce = await this.environment.read();
    if (inForce.version !== undefined) r.envVersion = inForce.version;
    const view = await readCollector(this.redis, {
      // An event does not wait for late reports: the periods before say enough about the group.
      query: { type: 'weighted', span: this.cfg.span, coefficient: this.cfg.coefficient, maxWaitMs: event ? 0 : this.cfg.maxWaitMs, approx: true },
      ...(inForce.env
        ? { env: inForce.env }
        : { defaults: { latencyMs: DEFAULT_LATENCY_MS, bandwidthMbit: DEFAULT_BANDWIDTH_MBIT, cpuOvercommit: this.cfg.cpuOvercommit, reserveMemoryMiB: this.cfg.reserveMemory } }),
    });
    r.view = view;
    // Only a quota's deadline uses it: the history is read only while one is set.
    if (view.environment.hosts.some((h) => h.availableUntil !== undefined)) this.migrationMs = await recentMigrationMs(this.redis).catch(() => this.migrationMs);
    this.armQuota(view);
    const trusted = trustedRoutes(view.registry, this.vetter);
    for (const bad of await this.certs.refused(trusted.routes)) {
      trusted.routes.delete(bad.host);
      trusted.refused.push(bad);
    }
    r.refused = trusted.refused;
    this.sayRefused(trusted.refused);
    // Migrations a previous leader started and never recorded: watched to their end before anything new.
    const adopted = await adoptRunning(this.redis, trusted.routes, { timeoutMs: this.cfg.timeoutMs, cooldownMs: this.cfg.cooldownMs, manager: this.lock.id, ours: new Set(this.moving.keys()) });
    if (adopted.length) {
      r.done = adopted;
      r.note = `adopted ${adopted.length} migration(s) a previous leader started: ${adopted.map((a) => `${a.vm} ${a.outcome}`).join(', ')}; planning again next round`;
      return undefined;
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
      rules: this.rulesFor(view),
      moving: [...this.moving.values()],
      migrationMs: this.migrationMs,
      ...(event && { focus: event.focus }),
    });
    const orders = inForce.version === undefined ? d.orders : d.orders.map((m) => ({ ...m, envVersion: inForce.version }));
    Object.assign(r, { interSite: d.interSite, groups: d.groups, skipped: d.skipped, moves: orders, ...(d.plan && { plan: d.plan }), ...(d.note && { note: d.note }) });
    if (r.moves.length && !this.cfg.apply) r.note = 'dry run: nothing migrated (start the manager with --apply to act)';
    if (!r.moves.length || !this.cfg.apply) {
      if (!event) await saveStreak(this.redis, term, d.streak);
      return undefined;
    }
    for (const m of r.moves) this.moving.set(m.vm, m);
    return { routes: trusted.routes, term, streak: d.streak };
  }

  /** The rules in force this round (the configuration's and the VMs' metadata); each problem with them logged once. */
  private rulesFor(view: CollectorView) {
    const set = rulesOf(view, { rules: this.cfg.rules ?? [], exclude: this.cfg.exclude, ...(this.cfg.rulesFile && { file: this.cfg.rulesFile }) });
    const now = new Set(set.issues.map((i: RuleIssue) => `${i.level}\u0000${i.message}`));
    for (const i of set.issues) if (!this.ruleSaid.has(`${i.level}\u0000${i.message}`)) log[i.level === 'error' ? 'error' : 'warn'](`rules: ${i.message}`);
    this.ruleSaid = now;
    return set.rules;
  }

  private sayRefused(refused: { host: string; why: string }[]): void {
    const now = new Map(refused.map((x) => [x.host, x.why]));
    for (const [host, why] of now) if (this.said.get(host) !== why) log.error({ host }, `host ${host} left alone (nothing migrates from or to it): ${why}`);
    for (const host of this.said.keys()) if (!now.has(host)) log.info({ host }, `host ${host}: its routes are vouched for again`);
    this.said = now;
  }
}

export { interSiteShare } from '../placement/view.js';
