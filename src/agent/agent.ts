import type { Server } from 'node:net';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { Registry } from '../collector/registry.js';
import { Store } from '../collector/store.js';
import { K } from '../collector/keys.js';
import { connectDaemon, redisLabel, replicated } from '../config/redis.js';
import type { Report } from '../collector/report.js';
import { LibvirtClient, type DomainSnapshot } from '../libvirt/client.js';
import { agentMetrics } from '../metrics/registry.js';
import { bpfObject } from '../paths.js';
import { openSensor, type Sensor } from '../sensor/index.js';
import { PCAP_COST } from '../sensor/pcap.js';
import type { Attachment } from '../sensor/sensor.js';
import { withTimeout } from '../util/exec.js';
import { logger } from '../util/log.js';
import type { AgentConfig } from './config.js';
import { listenHooks, type HookEvent } from './hookserver.js';
import { arpClaims, MAX_PEERS_PER_VM, toPairs } from './pairs.js';
import { AddressBook, type Owners } from './addresses.js';
import { HostDirectory } from './directory.js';
import { Leases } from './leases.js';
import { msToNextBoundary, periodLabel } from '../util/period.js';
import { PeriodLedger } from './ledger.js';
import { Spool } from './spool.js';
import { VmIds } from './vmids.js';
import { LibvirtLink, type DomainSource } from './libvirt.js';

export type { DomainSource } from './libvirt.js';

const log = logger('agent');

/** How long one report write may take before it is left to ioredis' replay and retried from the spool. */
const WRITE_TIMEOUT_MS = 15_000;
/** How long a flush waits for a replica to acknowledge its reports (WAIT) before keeping them for the next flush. */
const DURABLE_WAIT_MS = 2000;
/** How long the taps a `started` hook announced are counted without libvirt confirming them. */
const ANNOUNCED_MS = 60_000;
const MAX_PENDING_EVENTS = 10_000;

/**
 * The Redis writes of one flush, after the connection is ready: the spooled reports through the
 * exactly-once guard (`send`, default Store.apply), removed once `durable` resolved; retention; then
 * the zsets for people (queries already count the reports) and the index of the pair ids it gave.
 * Returns how many reports were sent. The agent's flush, and the fleet bench's simulated agents.
 */
export async function publishSpool(
  spool: Spool,
  store: Store,
  o: { host: string; retention: number; send?: (r: Report) => Promise<void>; durable?: (periods: number[]) => Promise<void> },
): Promise<number> {
  const sent = await spool.flush(o.send ?? ((r) => store.apply(r).then(() => undefined)), o.durable);
  if (sent)
    await store.trim(o.retention, Date.now(), (gone) =>
      log.info({ vms: gone.vms, addresses: gone.addresses, before: new Date(gone.before).toISOString() }, 'forgot the VMs stopped before the oldest period kept'),
    );
  await store.materialise({ host: o.host });
  return sent;
}

/** Wall and monotonic time (ms); tests step the wall clock with their own. */
export interface Clock {
  now(): number;
  mono(): number;
}

const SYSTEM_CLOCK: Clock = { now: () => Date.now(), mono: () => performance.now() };

/**
 * One agent per physical host: keeps the sensor attached to every VM tap
 * (hooks first, a periodic reconcile with libvirt to heal missed hooks),
 * closes each wall-clock period by reading the sensor into a report that goes
 * through the disk spool to Redis, and keeps the host registry and the VM
 * directory true.
 */
export class Agent {
  private readonly libvirt: LibvirtLink;
  private hooks?: Server;
  private timers: NodeJS.Timeout[] = [];
  private boundaryTimer?: NodeJS.Timeout;
  private stopping = false;
  /** Reads, periods reported and counts carried, across reads and restarts. */
  private ledger!: PeriodLedger;
  /** Period reads, one after the other; the boundaries are scheduled on the clock whatever they are doing. */
  private closing: Promise<unknown> = Promise.resolve();
  private flushAgain = false;
  /** VMs this host ran at the last reconcile, with what libvirt said of them. */
  private local = new Map<string, DomainSnapshot>();
  private book = new AddressBook();
  private readonly directory: HostDirectory;
  private readonly leases: Leases;
  private pendingEvents: Record<string, string | number>[] = [];
  /** Taps a `started` hook named, counted at once: libvirt may not answer yet (restarting, or a stale connection). */
  private announced = new Map<string, { vm: number; mac: string; domain: string; until: number }>();
  private reconciling?: Promise<void>;
  private reconcileAgain = false;
  private flushing?: Promise<void>;
  private waitingFor = '';

  private constructor(
    readonly cfg: AgentConfig,
    readonly sensor: Sensor,
    readonly redis: Redis,
    readonly store: Store,
    readonly registry: Registry,
    readonly spool: Spool,
    readonly ids: VmIds,
    connect: (uri: string) => Promise<DomainSource>,
    private readonly clock: Clock,
  ) {
    this.leases = new Leases(cfg.libvirtUri);
    this.libvirt = new LibvirtLink(
      cfg.libvirtUri,
      connect,
      (what) => this.waiting(what),
      () => void this.requestReconcile(),
    );
    this.directory = new HostDirectory(registry, this.book, cfg.host, cfg.site);
  }

  /** `sensor`: count with this one instead of opening the configured backend (a fake in tests: test/helpers/sensor.ts). */
  static async start(cfg: AgentConfig, connect: (uri: string) => Promise<DomainSource> = (uri) => LibvirtClient.connect(uri), sensor?: Sensor, clock: Clock = SYSTEM_CLOCK): Promise<Agent> {
    const spool = await Spool.open(join(cfg.stateDir, 'spool'), cfg.spoolMax);
    const ids = await VmIds.load(join(cfg.stateDir, 'vm-ids.json'));
    sensor ??= await openSensor({ backend: cfg.sensor, pinRoot: cfg.pinRoot, object: bpfObject, pcapCheckpoint: join(cfg.stateDir, 'pcap-counts.json') });
    if (sensor.fallbackReason) log.warn({ backend: sensor.kind, reason: sensor.fallbackReason }, `counting with libpcap because eBPF is not available: ${sensor.fallbackReason}`);
    else log.info({ backend: sensor.kind, pinRoot: cfg.pinRoot }, `sensor ready: ${sensor.kind === 'ebpf' ? `eBPF on tc (${sensor.describe?.() ?? ''})` : `libpcap (asked for). ${PCAP_COST}`}`);
    // Connection errors are retried by ioredis; flush() reports the wait, connectDaemon the credentials or TLS refused.
    const redis = connectDaemon(cfg.redis, cfg.redisAuth, log);
    agentMetrics.watch(spool, redis);
    const agent = new Agent(cfg, sensor, redis, new Store(redis, { zsetPeriods: cfg.zsetPeriods, host: cfg.host }), new Registry(redis), spool, ids, connect, clock);
    agent.ledger = await PeriodLedger.open(cfg.stateDir, clock.now(), clock.mono());
    redis.on('ready', () => {
      log.info({ redis: redisLabel(cfg.redis, cfg.redisAuth) }, 'Redis connected');
      void agent.flush();
    });
    redis.on('end', () => log.warn({ redis: redisLabel(cfg.redis, cfg.redisAuth) }, 'Redis connection closed'));
    agent.hooks = await listenHooks(cfg.socket, (e) => agent.onHook(e));
    log.info({ socket: cfg.socket, host: cfg.host, site: cfg.site, periodSeconds: cfg.periodSeconds }, 'agent started');
    agent.scheduleBoundary();
    agent.requestReconcile();
    agent.timers.push(
      setInterval(() => {
        void agent.requestReconcile();
        void agent.heartbeat();
      }, cfg.reconcileSeconds * 1000),
    );
    return agent;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    clearTimeout(this.boundaryTimer);
    await new Promise<void>((r) => (this.hooks ? this.hooks.close(() => r()) : r()));
    await this.reconciling?.catch(() => undefined);
    await this.flushing?.catch(() => undefined);
    // A hung libvirtd must not hold the agent's stop.
    await this.libvirt.close(); // bounded, and skipped while a call hangs
    await this.sensor.close();
    this.redis.disconnect();
  }

  // ---- periods ----------------------------------------------------------

  /** The next boundary on the clock; each one is read after the one before, and flushed without holding up the next. */
  private scheduleBoundary(): void {
    const now = Date.now();
    const wait = msToNextBoundary(now, this.cfg.periodSeconds);
    const boundary = now + wait;
    this.boundaryTimer = setTimeout(() => {
      const firedAt = this.clock.now();
      if (!this.stopping) this.scheduleBoundary();
      this.closing = this.closing.then(() => this.readPeriod(boundary, firedAt)).catch((err) => log.error({ err }, 'closing the period failed'));
      void this.closing.then(() => this.flush());
    }, wait);
  }

  /** Reads the sensor for the period that ends at `boundary` (see agent/periods.ts) and sends it through the spool. */
  async closePeriod(boundary: number, firedAt = this.clock.now()): Promise<Report[]> {
    const reports = await this.readPeriod(boundary, firedAt);
    await this.flush();
    return reports;
  }

  /** Reads the sensor and spools one report per period the read covers. */
  private async readPeriod(boundary: number, firedAt: number): Promise<Report[]> {
    const L = this.cfg.periodSeconds;
    const reading = await this.sensor.read();
    const now = this.clock.now();
    const mono = this.clock.mono();
    const { skipped, shares, parts } = this.ledger.take(reading.flows, boundary, firedAt, now, mono, L);
    const name = (id: number) => this.ids.name(id);
    // ARP claims first, each accepted or refused: a spoofed claim never renames a peer of this period.
    const cluster = await this.clusterAddresses();
    const claims = arpClaims(reading.flows, name);
    this.book.observe(claims, await this.owners(cluster, claims));
    for (const [a, vm] of this.book.entries()) cluster.set(a, vm);
    const reports: Report[] = [];
    const head = (period: number, from: number, to: number) => ({ v: 1 as const, host: this.cfg.host, site: this.cfg.site, period, length: L, from, to });
    for (const period of skipped) {
      // A period the wall clock jumped over: empty, marked (agent/ledger.ts).
      const report: Report = { ...head(period, period * 1000, (period + L) * 1000), pairs: [], overflow: { packets: 0, bytes: 0 }, unknownTap: 0, clockStep: true, vms: [] };
      await this.spool.put(report);
      reports.push(report);
    }
    for (const [i, share] of shares.entries()) {
      const { pairs, vms, folded } = toPairs(parts[i]!, name, cluster);
      const last = i === shares.length - 1;
      const report: Report = {
        ...head(share.period, share.from, share.to),
        pairs,
        overflow: last ? reading.overflow : { packets: 0, bytes: 0 },
        ...(folded && { folded }),
        unknownTap: last ? reading.unknownTap : 0,
        vms: [...vms].sort(),
      };
      await this.spool.put(report);
      agentMetrics.periodClosed(report, boundary, reading.flows.length, this.sensor.capacity);
      if (report.overflow.packets) log.error({ period: periodLabel({ start: share.period, length: L }), ...report.overflow }, 'the flow map was full: these packets are counted but not per peer');
      if (folded) log.warn({ period: periodLabel({ start: share.period, length: L }), folded }, `peers beyond ${MAX_PEERS_PER_VM} per VM that are not VMs: summed into the VM's '*' peer`);
      log.info({ period: periodLabel({ start: share.period, length: L }), pairs: pairs.length, vms: vms.size }, 'period closed');
      reports.push(report);
    }
    await this.ledger.commit(shares.at(-1)?.period, now, mono);
    await this.ids.save();
    return reports;
  }

  /**
   * Sends what the spool holds, when Redis is there; one flush at a time. A
   * flush asked for while one runs runs again after it: the running one listed
   * the spool before the new report was written.
   */
  flush(): Promise<void> {
    if (this.flushing) {
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = (async () => {
      do {
        this.flushAgain = false;
        await this.flushOnce();
      } while (this.flushAgain && !this.stopping);
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    try {
      if (this.redis.status !== 'ready') {
        this.waiting(`Redis at ${redisLabel(this.cfg.redis, this.cfg.redisAuth)} (${await this.spool.size()} reports spooled on disk)`);
        return;
      }
      const sent = await publishSpool(this.spool, this.store, {
        host: this.cfg.host,
        retention: this.cfg.retention,
        send: (r) =>
          agentMetrics.timePublish(() =>
            withTimeout(
              this.store.apply(r).then(() => undefined),
              WRITE_TIMEOUT_MS,
              'report write',
            ),
          ),
        durable: (periods) => this.durable(periods),
      });
      while (this.pendingEvents.length && this.redis.status === 'ready') {
        await this.store.event(this.cfg.host, this.pendingEvents[0]!);
        this.pendingEvents.shift();
      }
      if (sent) log.info({ sent }, 'reports sent to Redis');
    } catch (err) {
      log.warn({ err }, 'Redis write failed; reports stay in the spool and are sent again (each applied once)');
    }
  }

  /**
   * Resolves once the reports just written are on a replica, when Redis has
   * replicas; else throws, and they stay in the spool to be sent again.
   *
   * Why WAIT rather than re-checking after a failover: replication is
   * asynchronous, so Redis may acknowledge a report, the agent forget it, and
   * the primary die before a replica had it: the promoted replica never saw
   * it. Waiting for one replica closes that window at its source, costs one
   * round trip per flush (not per report), needs no memory of what was sent
   * nor any way to tell that a failover happened (a restart of the agent in
   * between would lose that memory), and a report kept is simply sent again:
   * the exactly-once guard (the period's `reported` set, in APPLY) makes a
   * second copy write nothing, and a copy lost with the old primary is
   * applied on the new one. With one replica, the one acknowledging is the
   * one Sentinel promotes; with more, Sentinel promotes the one with the
   * most data, which has it. In a Redis Cluster each period's reports are on
   * the shard of that period, and the list of periods on `{vc}`'s: each is
   * waited for on its own shard.
   */
  private async durable(periods: number[]): Promise<void> {
    await durable(this.redis, periods);
  }

  /** The cluster's address → VM map (vc:{vc}:addr), or an empty one while Redis cannot be read. */
  private async clusterAddresses(): Promise<Map<string, string>> {
    if (this.redis.status !== 'ready') return new Map();
    try {
      return await withTimeout(this.registry.addresses(), 5000, 'address book');
    } catch (err) {
      log.warn({ err }, 'cannot read the address book; peers named by what this host knows');
      return new Map();
    }
  }

  /**
   * The directory's owners of the addresses claimed this period by another VM
   * than the one holding them, with whether that owner still runs: usually
   * none, so no VM state is read.
   */
  private async owners(cluster: Map<string, string>, claims: Map<string, Set<string>>): Promise<Owners> {
    const contested = new Map<string, string>();
    for (const [vm, addrs] of claims) for (const a of addrs) if (cluster.has(a) && cluster.get(a) !== vm) contested.set(a, cluster.get(a)!);
    const owners: Owners = new Map();
    if (!contested.size) return owners;
    const states = await withTimeout(this.registry.vmStates([...new Set(contested.values())]), 5000, 'VM states').catch(() => undefined);
    for (const [a, vm] of contested) owners.set(a, { vm, live: !states || states.get(vm) === 'running' || states.get(vm) === 'arriving' });
    return owners;
  }

  // ---- hooks and reconcile ---------------------------------------------

  private onHook(e: HookEvent): void {
    log.info({ domain: e.domain, operation: e.operation, sub: e.subOperation }, 'hook');
    this.pendingEvents.push({ host: this.cfg.host, source: 'hook', domain: e.domain, operation: e.operation, sub: e.subOperation, extra: e.extra, at: e.at });
    if (this.pendingEvents.length > MAX_PENDING_EVENTS) this.pendingEvents.shift();
    void this.flush();
    this.requestReconcile();
    if (e.operation === 'started' && e.uuid) {
      const vm = this.ids.idFor(e.uuid, e.domain);
      for (const i of e.interfaces) if (i.tap && i.mac) this.announced.set(i.tap, { vm, mac: i.mac, domain: e.domain, until: Date.now() + ANNOUNCED_MS });
    } else if (e.operation === 'stopped' || e.operation === 'release') {
      for (const [tap, a] of this.announced) if (a.domain === e.domain) this.announced.delete(tap);
    }
    // `started` on a migration's destination fires while the VM is still paused: look again once it runs.
    if (e.operation === 'started' || e.operation === 'migrate' || e.operation === 'prepare') {
      setTimeout(() => void this.requestReconcile(), 3000).unref();
    }
  }

  /** Coalesces requests: one reconcile runs at a time, and one more after it if asked meanwhile. */
  requestReconcile(): Promise<void> {
    if (this.stopping) return Promise.resolve();
    if (this.reconciling) {
      this.reconcileAgain = true;
      return this.reconciling;
    }
    this.reconciling = this.reconcile()
      .catch((err) => log.warn({ err }, 'reconcile failed; trying again at the next one'))
      .finally(() => {
        this.reconciling = undefined;
        if (this.reconcileAgain && !this.stopping) {
          this.reconcileAgain = false;
          void this.requestReconcile();
        }
      });
    return this.reconciling;
  }

  private async reconcile(): Promise<void> {
    const domains = await this.libvirt.domains();
    if (!domains) {
      // libvirt is away: still count what the hooks announced, and remove nothing.
      await this.attachAll([...this.announcedTaps([])], false);
      return;
    }
    const want: (Attachment & { mac: string })[] = [];
    for (const d of domains) {
      const vm = this.ids.idFor(d.uuid, d.name);
      // A VM that opted out (domain metadata count="no") is not watched.
      if (!d.optOut) for (const i of d.interfaces) if (i.tap) want.push({ tap: i.tap, vm, mac: i.mac });
      this.book.trust(d.name, [...d.interfaces.flatMap((i) => i.addresses), ...this.leases.of(d.name)]);
    }
    want.push(...this.announcedTaps(domains));
    await this.attachAll(want, true);
    agentMetrics.taps(want.length);
    await this.ids.save();
    const gone = [...this.local.keys()].filter((n) => !domains.some((d) => d.name === n));
    this.local = new Map(domains.map((d) => [d.name, d]));
    this.directory.keepOnly(new Set(this.local.keys()));
    void this.leases.refresh(domains);
    this.waitingFor = '';
    if (this.redis.status !== 'ready') return;
    await this.publishDirectory(domains, gone);
  }

  /** Hook-announced taps libvirt does not list (yet), while their announcement is fresh. */
  private *announcedTaps(domains: DomainSnapshot[]): Iterable<Attachment & { mac: string }> {
    const listed = new Set(domains.flatMap((d) => d.interfaces.map((i) => i.tap)));
    const now = Date.now();
    for (const [tap, a] of this.announced) {
      if (a.until < now || listed.has(tap)) this.announced.delete(tap);
      else yield { tap, vm: a.vm, mac: a.mac };
    }
  }

  /** `exact`: also stop counting taps not in `want` (only with libvirt's full list). */
  private async attachAll(want: (Attachment & { mac: string })[], exact: boolean): Promise<void> {
    if (!exact) {
      if (!want.length) return;
      // Keep what is counted now: only libvirt's full list may stop a tap being counted.
      const have = (await this.sensor.attached()).filter((h) => !want.some((w) => w.tap === h.tap));
      want = [...want, ...have.map((h) => ({ ...h, mac: '' }))];
    }
    const r = await this.sensor.reconcile(want);
    if (r.attached.length || r.removed.length) log.info({ attached: r.attached, removed: r.removed }, 'taps reconciled');
    for (const f of r.failed) log.error({ tap: f.tap, error: f.error }, 'cannot count this tap; the others are counted');
  }

  private async publishDirectory(domains: DomainSnapshot[], gone: string[]): Promise<void> {
    await this.libvirt.readNode();
    await this.heartbeat(domains);
    for (const name of await this.directory.publish(domains, gone)) {
      log.info({ vm: name }, 'VM left this host');
      this.pendingEvents.push({ host: this.cfg.host, source: 'reconcile', domain: name, operation: 'gone', at: Date.now() });
    }
  }

  /**
   * The host's record with lastSeen now, from what libvirt last said: sent at
   * each reconcile interval whether libvirt answers or not, so a hung
   * libvirtd does not make the host look dead while its periods go on.
   */
  async heartbeat(domains: DomainSnapshot[] = [...this.local.values()]): Promise<void> {
    const node = this.libvirt.node;
    if (!node || this.redis.status !== 'ready' || this.stopping) return;
    const used = domains.reduce((s, d) => s + d.memoryKiB, 0);
    await withTimeout(
      this.registry.registerHost(this.cfg.host, {
        site: this.cfg.site,
        uri: this.cfg.advertiseUri || this.cfg.libvirtUri,
        cpus: node.cpus,
        memoryKiB: node.memoryKiB,
        freeMemoryKiB: Math.max(0, node.memoryKiB - used),
        vms: domains.length,
        sensor: this.sensor.kind,
        sensorNote: this.sensor.fallbackReason ?? '',
        periodSeconds: this.cfg.periodSeconds,
        migrateUri: this.cfg.migrateUri,
      }),
      5000,
      'the heartbeat',
    ).catch((err: Error) => log.warn({ err: err.message }, 'heartbeat not sent; the next one follows'));
  }

  private waiting(what: string): void {
    if (this.waitingFor !== what) log.warn(`waiting for ${what}; counting goes on`);
    this.waitingFor = what;
  }
}

/** Agent.durable's wait, for any writer of reports (the fleet bench, the cluster tests): see there. */
export async function durable(redis: Redis, periods: number[]): Promise<void> {
  const waits = [K.periods, ...periods.map((p) => K.reported(p))].map((key) => withTimeout(replicated(redis, DURABLE_WAIT_MS, key), DURABLE_WAIT_MS + 5000, 'waiting for a replica'));
  for (const { replicas, acked } of await Promise.all(waits)) {
    if (replicas && !acked)
      throw new Error(`no replica of Redis acknowledged the reports within ${DURABLE_WAIT_MS} ms (${replicas} connected): they stay spooled and are sent again (each applied once)`);
  }
}
