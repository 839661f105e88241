import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Report } from '../collector/report.js';

/**
 * Every metric of the agent and the manager, in one registry per process.
 * Counting is always on (a few additions per period); a port is opened only
 * when metricsPort is set (src/metrics/server.ts).
 */
export const registry = new Registry();

let defaultsOn = false;
/** Node's own metrics (CPU, memory, event loop), once a server exposes them. */
export function collectProcessMetrics(): void {
  if (defaultsOn) return;
  defaultsOn = true;
  collectDefaultMetrics({ register: registry, prefix: 'virt_cohort_' });
}

const reg = { registers: [registry] };

// ---- agent ----------------------------------------------------------------

const packets = new Counter({ name: 'virt_cohort_agent_packets_total', help: 'Packets counted between VMs and their peers (all periods closed)', ...reg });
const bytes = new Counter({ name: 'virt_cohort_agent_bytes_total', help: 'Bytes counted between VMs and their peers', ...reg });
const overflowPackets = new Counter({ name: 'virt_cohort_agent_overflow_packets_total', help: 'Packets counted while the flow map was full (not attributed to a peer)', ...reg });
const foldedPairs = new Counter({ name: 'virt_cohort_agent_folded_pairs_total', help: "Pairs beyond a VM's cap of peers that are not VMs, summed into its '*' peer", ...reg });
const overflowBytes = new Counter({ name: 'virt_cohort_agent_overflow_bytes_total', help: 'Bytes counted while the flow map was full', ...reg });
const unknownTap = new Counter({ name: 'virt_cohort_agent_unknown_tap_packets_total', help: 'Packets seen on a tap with no VM registered (should stay 0)', ...reg });
const mapEntries = new Gauge({ name: 'virt_cohort_agent_flow_map_entries', help: 'Flows in the map at the last period close', ...reg });
const mapFill = new Gauge({ name: 'virt_cohort_agent_flow_map_fill_ratio', help: 'Flows at the last period close over the map capacity (eBPF)', ...reg });
const periods = new Counter({ name: 'virt_cohort_agent_periods_closed_total', help: 'Periods closed (read, spooled)', ...reg });
const late = new Counter({ name: 'virt_cohort_agent_periods_late_total', help: 'Periods read more than max(1 s, a tenth of the period) after their boundary', ...reg });
const missing = new Counter({
  name: 'virt_cohort_agent_periods_missing_total',
  help: 'Whole periods with no read of their own (the agent was down or stalled): their counts went into the next report',
  ...reg,
});
const closeDelay = new Gauge({ name: 'virt_cohort_agent_period_close_delay_seconds', help: 'How long after its boundary the last period was read', ...reg });
const publish = new Histogram({
  name: 'virt_cohort_agent_publish_seconds',
  help: 'Time to write one report to Redis',
  buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
  ...reg,
});
const publishFailures = new Counter({ name: 'virt_cohort_agent_publish_failures_total', help: 'Report writes that failed (the report stays in the spool)', ...reg });
const taps = new Gauge({ name: 'virt_cohort_agent_taps', help: 'VM taps the agent wants counted at the last reconcile', ...reg });
/** Gauges read from the live process at each scrape: set what they read with `watch`. */
const live = {
  spool: undefined as { size(): Promise<number>; dropped: number } | undefined,
  redis: undefined as { status: string } | undefined,
  lock: undefined as { isLeader: boolean } | undefined,
};
new Gauge({
  name: 'virt_cohort_agent_spool_reports',
  help: 'Reports on disk waiting for Redis',
  ...reg,
  async collect() {
    if (live.spool) this.set(await live.spool.size().catch(() => 0));
  },
});
new Gauge({
  name: 'virt_cohort_agent_spool_dropped_reports',
  help: 'Reports dropped since start because the spool was full',
  ...reg,
  collect() {
    if (live.spool) this.set(live.spool.dropped);
  },
});
new Gauge({
  name: 'virt_cohort_redis_connected',
  help: '1 while the connection to Redis is ready',
  ...reg,
  collect() {
    if (live.redis) this.set(live.redis.status === 'ready' ? 1 : 0);
  },
});

export const agentMetrics = {
  /** A period was read and spooled; `boundary` is when it ended (ms), `capacity` the flow map's size (0: no map). */
  periodClosed(r: Report, boundary: number, flows: number, capacity: number): void {
    let m = 0;
    let b = 0;
    for (const p of r.pairs) {
      m += p[1];
      b += p[2];
    }
    packets.inc(m);
    bytes.inc(b);
    overflowPackets.inc(r.overflow.packets);
    overflowBytes.inc(r.overflow.bytes);
    foldedPairs.inc(r.folded ?? 0);
    unknownTap.inc(r.unknownTap);
    mapEntries.set(flows);
    if (capacity) mapFill.set(flows / capacity);
    periods.inc();
    const delay = Math.max(0, r.to - boundary) / 1000;
    closeDelay.set(delay);
    if (delay > Math.max(1, r.length / 10)) late.inc();
    const skipped = Math.floor((r.period * 1000 - r.from) / (r.length * 1000));
    if (skipped > 0) missing.inc(skipped);
  },
  /** Times one report write. */
  async timePublish<T>(write: () => Promise<T>): Promise<T> {
    const end = publish.startTimer();
    try {
      const v = await write();
      end();
      return v;
    } catch (err) {
      publishFailures.inc();
      throw err;
    }
  },
  taps: (n: number) => taps.set(n),
  /** Gauges read at each scrape from the live agent. */
  watch(spool: { size(): Promise<number>; dropped: number }, redis: { status: string }): void {
    live.spool = spool;
    live.redis = redis;
  },
};

// ---- manager --------------------------------------------------------------

const rounds = new Counter({
  name: 'virt_cohort_manager_rounds_total',
  help: 'Decision rounds by result: planned, standby (not the leader), no_data (the collector had no answer), failed',
  labelNames: ['result'],
  ...reg,
});
const roundSeconds = new Histogram({
  name: 'virt_cohort_manager_round_seconds',
  help: 'Duration of a round, migrations included',
  buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
  ...reg,
});
const proposed = new Counter({ name: 'virt_cohort_manager_moves_proposed_total', help: 'Moves the plans proposed', ...reg });
const held = new Counter({ name: 'virt_cohort_manager_moves_held_total', help: 'Proposed moves held back (cooldown, hysteresis, draining destination)', ...reg });
const ordered = new Counter({ name: 'virt_cohort_manager_moves_ordered_total', help: 'Moves ordered (made with --apply, reported in a dry run)', ...reg });
const interSite = new Gauge({ name: 'virt_cohort_manager_inter_site_ratio', help: 'Share of VM-to-VM bytes crossing sites at the last round', ...reg });
const groups = new Gauge({ name: 'virt_cohort_manager_groups', help: 'Groups of communicating VMs found at the last round', ...reg });
new Gauge({
  name: 'virt_cohort_manager_leader',
  help: '1 while this manager holds the leader lock',
  ...reg,
  collect() {
    if (live.lock) this.set(live.lock.isLeader ? 1 : 0);
  },
});
const migrations = new Counter({ name: 'virt_cohort_migrations_total', help: 'Live migrations by outcome (ok, failed, aborted)', labelNames: ['outcome'], ...reg });
const migrationSeconds = new Histogram({
  name: 'virt_cohort_migration_duration_seconds',
  help: 'Live migration duration by outcome',
  labelNames: ['outcome'],
  buckets: [1, 2, 5, 10, 20, 30, 60, 120, 300, 600],
  ...reg,
});
const downtime = new Histogram({
  name: 'virt_cohort_migration_downtime_seconds',
  help: 'Downtime of successful live migrations (libvirt)',
  buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  ...reg,
});

/** The fields of a migration the metrics read (manager/history.ts's MigrationRecord): the manager sits above the metrics. */
interface MigrationLike {
  outcome: string;
  seconds: number;
  downtimeMs?: number;
}

/** The fields of a round the metrics read (manager.ts's Round). */
interface RoundLike {
  note?: string;
  view?: { answer: { status: string } };
  interSite: number;
  groups: unknown[];
  plan?: { moves: unknown[] };
  moves: unknown[];
  skipped: unknown[];
}

export const managerMetrics = {
  round(r: RoundLike | undefined, seconds: number): void {
    const result = !r ? 'failed' : r.note?.startsWith('standing by') ? 'standby' : r.view?.answer.status !== 'ok' ? 'no_data' : 'planned';
    rounds.inc({ result });
    roundSeconds.observe(seconds);
    if (!r || result !== 'planned') return;
    proposed.inc(r.plan?.moves.length ?? 0);
    held.inc(r.skipped.length);
    ordered.inc(r.moves.length);
    interSite.set(r.interSite);
    groups.set(r.groups.length);
  },
  watchLeader(lock: { isLeader: boolean }): void {
    live.lock = lock;
  },
  watchRedis(redis: { status: string }): void {
    live.redis = redis;
  },
  migration(rec: MigrationLike): void {
    migrations.inc({ outcome: rec.outcome });
    migrationSeconds.observe({ outcome: rec.outcome }, rec.seconds);
    if (rec.outcome === 'ok' && rec.downtimeMs !== undefined) downtime.observe(rec.downtimeMs / 1000);
  },
};
