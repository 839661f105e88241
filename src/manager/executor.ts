import type { Redis } from 'ioredis';
import { abortJob, completedJob, domainState, jobInfo, migrateDomain } from '../libvirt/virsh.js';
import { managerMetrics } from '../metrics/registry.js';
import { UserError } from '../util/errors.js';
import { sleep } from '../util/exec.js';
import { logger } from '../util/log.js';
import { clearRunning, cooldownUntil, markRunning, recordMigration, startCooldown, type MigrationRecord } from './history.js';
import { whyWait, type Limits } from './safety.js';

const log = logger('executor');

export interface MoveOrder {
  vm: string;
  from: string;
  to: string;
  reason?: string;
  /** The version of the environment stored in Redis the decision used; goes into the migration's record. */
  envVersion?: number;
}

/** How to reach a host's libvirt, where migrations into it send memory, and its site (for manager.encrypt). */
export interface HostRoute {
  uri: string;
  migrateUri?: string;
  site?: string;
}

export type EncryptPolicy = 'never' | 'between-sites' | 'always';

/** Whether a migration from `src` to `dst` sends its memory over TLS: between sites unless told otherwise; a site unknown counts as another site. */
export function encrypts(policy: EncryptPolicy, src: HostRoute, dst: HostRoute): boolean {
  return policy === 'always' || (policy === 'between-sites' && (!src.site || src.site !== dst.site));
}

/** `maxPerHost`: outbound migrations at once per source host (1 by default in the configuration); `maxConcurrent`: in the cluster. */
export interface ExecutorOptions extends Limits {
  /** A migration still running after this is aborted; the VM stays on its source. */
  timeoutMs: number;
  autoConverge: boolean;
  /** false: pause the VM for the whole copy (manager.live). Default true. */
  live?: boolean;
  /** virsh migrate --unsafe: the disks are on storage every host sees, which libvirt cannot recognise (manager.assumeSharedStorage). */
  assumeSharedStorage?: boolean;
  /** Which migrations go over TLS (manager.encrypt). Default between-sites. */
  encrypt?: EncryptPolicy;
  /** First cooldown after a migration of a VM; doubles with each repeat. */
  cooldownMs: number;
  /** Checked before each migration starts: only the leader acts (the manager asks Redis, with its fencing token). */
  mayAct: () => boolean | Promise<boolean>;
  manager?: string;
  /** The leader's fencing token, written in the migration's mark and record. */
  term?: number;
  progressEveryMs?: number;
  onProgress?: (vm: string, percent: number, mibPerSecond: number) => void;
  /**
   * The migrations this manager runs, shared by decisions that execute at once (a round's, and an
   * event's that must not wait for them): the limits count them all. Default: this call's own.
   */
  running?: Map<MoveOrder, Promise<void>>;
}

/**
 * Runs the moves in plan order with bounded concurrency; a move starts when whyWait (src/manager/safety.ts)
 * lets it, counting the migrations of other decisions in `opts.running`. Returns when its own moves end.
 */
export async function execute(redis: Redis, moves: MoveOrder[], routes: Map<string, HostRoute>, opts: ExecutorOptions): Promise<MigrationRecord[]> {
  const pending = [...moves];
  const running = opts.running ?? new Map<MoveOrder, Promise<void>>();
  const mine = new Set<MoveOrder>();
  const done: MigrationRecord[] = [];
  const failed: Error[] = [];
  while (pending.length || mine.size) {
    let started = false;
    for (let i = 0; i < pending.length; i++) {
      const m = pending[i]!;
      const wait = whyWait(m, [...running.keys()], [...running.keys(), ...pending.slice(0, i)], opts);
      if (wait === 'cluster-full') break;
      if (wait) continue;
      pending.splice(i--, 1);
      if (!(await opts.mayAct())) {
        log.warn({ vm: m.vm }, 'no longer the leader: move not started');
        continue;
      }
      // Another decision may have started a migration while Redis was asked: the limits are checked again.
      if (whyWait(m, [...running.keys()], [...running.keys(), ...pending.slice(0, i + 1)], opts)) {
        pending.splice(i + 1, 0, m);
        break;
      }
      started = true;
      mine.add(m);
      running.set(
        m,
        migrateOne(redis, m, routes, opts)
          .then(
            (r) => void done.push(r),
            (err: Error) => void failed.push(err),
          )
          .finally(() => {
            running.delete(m);
            mine.delete(m);
          }),
      );
    }
    if (running.size) await Promise.race(running.values());
    else if (!started) break;
  }
  if (failed.length) throw failed[0];
  return done;
}

/** One live migration, watched: progress logged, aborted after the timeout, recorded in the history, cooldown started. */
export async function migrateOne(redis: Redis, m: MoveOrder, routes: Map<string, HostRoute>, opts: ExecutorOptions): Promise<MigrationRecord> {
  if (m.from === m.to) throw new UserError(`${m.vm} already runs on ${m.to}: nothing to migrate`);
  const src = routes.get(m.from);
  const dst = routes.get(m.to);
  if (!src) throw new UserError(`no libvirt URI known for host '${m.from}' (is its agent running?)`);
  if (!dst) throw new UserError(`no libvirt URI known for host '${m.to}' (is its agent running?)`);
  const at = Date.now();
  const tls = encrypts(opts.encrypt ?? 'between-sites', src, dst);
  const rec: MigrationRecord = {
    vm: m.vm,
    from: m.from,
    to: m.to,
    outcome: 'failed',
    at,
    seconds: 0,
    ...(m.reason ? { reason: m.reason } : {}),
    ...(opts.manager ? { manager: opts.manager } : {}),
    ...(opts.term ? { term: opts.term } : {}),
    encrypted: tls,
    ...(opts.live === false ? { paused: true } : {}),
    ...(m.envVersion !== undefined ? { envVersion: m.envVersion } : {}),
  };
  const state = await domainState(src.uri, m.vm).catch((err: Error) => `unknown (${err.message.split('\n')[0]})`);
  if (state !== 'running') {
    rec.error = `${m.vm} is not running on ${m.from} (state: ${state})`;
    await finish(redis, rec, opts, true);
    return rec;
  }
  // Marked and cooled down before virsh starts: a manager killed now leaves the next leader what to adopt.
  await startCooldown(redis, m.vm, opts.cooldownMs);
  await markRunning(redis, { vm: m.vm, from: m.from, to: m.to, at, ...(opts.manager && { manager: opts.manager }), ...(opts.term && { term: opts.term }), ...(m.reason && { reason: m.reason }) });
  log.info({ vm: m.vm, from: m.from, to: m.to, reason: m.reason }, 'migration starting');
  let aborted = false;
  let migrating = true;
  const job = migrateDomain(src.uri, m.vm, dst.uri, {
    ...(dst.migrateUri ? { migrateUri: dst.migrateUri } : {}),
    autoConverge: opts.autoConverge,
    ...(opts.live === false ? { live: false } : {}),
    unsafe: opts.assumeSharedStorage === true,
    tls,
    timeoutMs: opts.timeoutMs + 120_000,
  }).finally(() => {
    migrating = false;
  });
  const watch = (async () => {
    while (migrating) {
      await sleep(opts.progressEveryMs ?? 1000);
      if (!migrating) break;
      if (Date.now() - at > opts.timeoutMs && !aborted) {
        aborted = true;
        log.warn({ vm: m.vm, timeoutMs: opts.timeoutMs }, 'migration too slow: aborting; the VM stays on its source');
        await abortJob(src.uri, m.vm).catch((err) => log.error({ err, vm: m.vm }, 'domjobabort failed'));
        continue;
      }
      const info = await jobInfo(src.uri, m.vm).catch(() => ({}) as Record<string, string>);
      const processed = mib(info['Data processed'] ?? info['Memory processed']);
      const total = mib(info['Data total'] ?? info['Memory total']);
      const rate = mib(info['Memory bandwidth']);
      if (total > 0) {
        const pct = Math.min(100, (100 * processed) / total);
        log.info({ vm: m.vm, percent: Math.round(pct), mibPerSecond: Math.round(rate) }, 'migration progress');
        opts.onProgress?.(m.vm, pct, rate);
      }
    }
  })();
  try {
    await job;
    rec.outcome = 'ok';
  } catch (err) {
    rec.outcome = aborted ? 'aborted' : 'failed';
    rec.error = (err as Error).message.split('\n').slice(-2).join(' ').slice(0, 500);
  }
  await watch;
  rec.seconds = (Date.now() - at) / 1000;
  if (rec.outcome === 'ok') {
    const done = await completedJob(dst.uri, m.vm).catch(() => ({}) as Record<string, string>);
    const downtime = /^(\d+)/.exec(done['Total downtime'] ?? '');
    if (downtime) rec.downtimeMs = Number(downtime[1]);
    const data = mib(done['Data processed'] ?? done['Memory processed']);
    if (data) rec.dataMiB = data;
    const there = await domainState(dst.uri, m.vm).catch(() => 'unknown');
    if (there !== 'running') log.error({ vm: m.vm, to: m.to, state: there }, 'migrated, but not running on the destination');
  } else {
    // An aborted or failed migration must leave the VM running where it was.
    const here = await domainState(src.uri, m.vm).catch(() => 'unknown');
    log.warn({ vm: m.vm, from: m.from, to: m.to, outcome: rec.outcome, error: rec.error, stateOnSource: here }, 'migration did not happen');
  }
  await finish(redis, rec, opts, false);
  return rec;
}

/**
 * Records the outcome and clears the running mark; `cool`: start the cooldown
 * now (it was not, before virsh). A marked migration is recorded by whoever
 * clears its mark: when an old leader and the one that adopted its migration
 * both see it end, it is recorded once.
 */
export async function finish(redis: Redis, rec: MigrationRecord, opts: Pick<ExecutorOptions, 'cooldownMs'>, cool: boolean): Promise<void> {
  if (cool) await startCooldown(redis, rec.vm, opts.cooldownMs).catch(() => 0);
  else if ((await clearRunning(redis, rec.vm).catch(() => 1)) === 0) {
    log.info({ vm: rec.vm, outcome: rec.outcome }, 'migration already recorded by the manager that adopted or started it');
    return;
  }
  managerMetrics.migration(rec);
  await recordMigration(redis, rec).catch((err) => log.error({ err, rec }, 'cannot record the migration in Redis'));
  const until = await cooldownUntil(redis, rec.vm).catch(() => 0);
  log.info({ ...rec, cooldownUntil: until ? new Date(until).toISOString() : undefined }, 'migration recorded');
}

/** "123.456 MiB" or "1.2 GiB" (virsh domjobinfo) → MiB. */
function mib(text: string | undefined): number {
  const m = /^([\d.]+)\s*(KiB|MiB|GiB|B)/.exec(text ?? '');
  if (!m) return 0;
  const n = Number(m[1]);
  return m[2] === 'GiB' ? n * 1024 : m[2] === 'KiB' ? n / 1024 : m[2] === 'B' ? n / 2 ** 20 : n;
}
