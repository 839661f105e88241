import type { Redis } from 'ioredis';
import { Registry } from '../collector/registry.js';
import { labEnvironment } from '../lab/environment.js';
import type { LabState } from '../lab/state.js';
import { readHistory, readRunning, type MigrationRecord } from '../manager/history.js';
import type { LeaderLock } from '../manager/lock.js';
import { Manager, type ManagerConfig, type Round } from '../manager/manager.js';
import { changeEnvironment } from '../placement/fromCollector.js';
import { changeLine, setPath } from '../placement/envEdit.js';
import { sleep } from '../util/exec.js';
import { renderRound } from './manager.js';
import { table } from './table.js';

/**
 * `virt-cohort demo --objective cost`: the environment changes while the manager runs, and the
 * manager follows the money. Four versions of the lab's environment, each written as `env set`
 * writes it (a new version wakes the manager):
 *   1. site a is cheaper than b, and bytes between sites are paid: every VM gathers on a;
 *   2. b becomes a little cheaper than a: the saving does not pay the moves back within the
 *      horizon, and nothing moves;
 *   3. b becomes much cheaper: the moves pay back within the horizon, and every VM goes to b;
 *   4. the quota of b's hosts ends in a few minutes: every VM leaves b before the end, the time
 *      its migrations need counted (manager.quotaMargin and decide.ts quotaDeadlines).
 */

/** The demo's prices: per VM-hour, per GB between the sites; the currency is the operator's. */
export const COST_DEMO = {
  a: 0.1,
  b: 0.12,
  /** b after the first change: cheaper than a by less than a move costs over the horizon. */
  bSlightly: 0.095,
  /** b after the second change: cheaper by far more. */
  bCheap: 0.05,
  transferPerGB: 0.09,
  /** The quota of b's hosts ends this long after it is set. */
  quotaMs: 150_000,
  /** Spare time the manager keeps before a quota's end (manager.quotaMargin). */
  quotaMarginMs: 30_000,
} as const;

export interface CostStep {
  what: string;
  /** The change in a few words, for the table. */
  label: string;
  version: number;
  /** When the version was written (ms). */
  at: number;
  /** The placement's cost per hour (hosting and bytes between sites) under this version: at the first decision after it, and once settled. */
  before?: number;
  after?: number;
  migrations: MigrationRecord[];
  /** From the change to the start of its first migration (ms). */
  firstMigrationMs?: number;
  /** For the quota: its end (ms), and how long before it the last VM had left. */
  quotaEnd?: number;
  spareMs?: number;
  /** The sites of the VMs once settled. */
  sites: Record<string, number>;
}

type Say = (line: string) => void;

/** Runs the four steps on a lab whose guests run; returns what each did. The manager is the real one, started as the daemon starts it. */
export async function costDemo(lab: LabState, redis: Redis, lock: LeaderLock, settings: ManagerConfig, say: Say, short: (vm: string) => string): Promise<CostStep[]> {
  const rounds: Round[] = [];
  const cfg: ManagerConfig = { ...settings, objective: 'cost', events: true, cooldownMs: 30_000, quotaMarginMs: COST_DEMO.quotaMarginMs };
  const manager = new Manager(redis, cfg, lock, (r) => {
    rounds.push(r);
    say(describe(r).replaceAll(`vc-${lab.name}-`, ''));
  });
  manager.progress = (vm, pct, rate) => say(`    ${short(vm)} ${pct.toFixed(0)} % at ${rate.toFixed(0)} MiB/s`);
  const steps: CostStep[] = [];
  const registry = new Registry(redis);
  const sitesNow = async () => {
    const siteOf = new Map((await registry.hosts()).map((h) => [h.host, h.site]));
    const count: Record<string, number> = {};
    for (const v of await registry.vms()) {
      const site = v.state === 'running' ? siteOf.get(v.host) : undefined;
      if (site) count[site] = (count[site] ?? 0) + 1;
    }
    return count;
  };

  /** Writes one change as `env set` does, then waits until the manager has settled under it. */
  const step = async (
    label: string,
    what: string,
    edit: (doc: Record<string, unknown>) => object,
    settled: (sites: Record<string, number>) => boolean,
    timeoutMs: number,
    extra: Partial<CostStep> = {},
  ) => {
    say('');
    say(`== ${what}`);
    const change = await changeEnvironment(redis, (cur) => edit(structuredClone((cur ?? labEnvironment(lab)) as Record<string, unknown>)), {
      source: `virt-cohort demo: ${what}`,
      by: 'virt-cohort demo',
      base: labEnvironment(lab) as object,
    });
    const s: CostStep = { what, label, version: change.version, at: Date.now(), migrations: [], sites: {}, ...extra };
    steps.push(s);
    say(`   environment version ${change.version}: ${change.changes.length ? change.changes.map(changeLine).join(', ') : 'as before'}`);
    const from = rounds.length;
    const deadline = Date.now() + timeoutMs;
    // Settled: no migration running, the VMs where they should be, and a decision under this version
    // that moves nothing and sees no traffic between sites (its periods are after the moves).
    for (;;) {
      await sleep(500);
      const mine = rounds.slice(from).filter((r) => r.envVersion === change.version && r.view?.answer.status === 'ok' && r.plan);
      if (mine[0]) s.before ??= costPerHour(mine[0]);
      const quiet = mine.at(-1);
      if (quiet && !quiet.moves.length && quiet.interSite < 0.02 && mine.length >= 3 && !(await readRunning(redis)).length) {
        const where = await sitesNow();
        if (settled(where)) {
          s.sites = where;
          s.after = costPerHour(quiet);
          break;
        }
      }
      if (Date.now() > deadline) {
        s.sites = await sitesNow();
        say(`   not settled after ${Math.round(timeoutMs / 1000)} s`);
        break;
      }
    }
    // From the history, as `virt-cohort history` shows it: an event's decision reports its round only once its migrations end.
    s.migrations = (await readHistory(redis, 1000)).filter((d) => d.at >= s.at).sort((x, y) => x.at - y.at);
    const first = s.migrations.map((d) => d.at).sort((x, y) => x - y)[0];
    if (first !== undefined) s.firstMigrationMs = first - s.at;
    if (s.quotaEnd !== undefined) {
      const lastLeft = Math.max(...s.migrations.filter((d) => d.outcome === 'ok').map((d) => d.at + d.seconds * 1000));
      if (Number.isFinite(lastLeft)) s.spareMs = s.quotaEnd - lastLeft;
    }
    say(`   ${summary(s)}`);
    return s;
  };

  manager.start();
  try {
    const all = (site: string) => (w: Record<string, number>) => Object.keys(w).length === 1 && (w[site] ?? 0) > 0;
    await step(
      `a ${COST_DEMO.a}, b ${COST_DEMO.b}, ${COST_DEMO.transferPerGB}/GB`,
      `prices: site a ${COST_DEMO.a}, site b ${COST_DEMO.b} per VM-hour; ${COST_DEMO.transferPerGB} per GB between them`,
      (doc) => {
        for (const l of doc.links as { transferPricePerGB: number }[]) l.transferPricePerGB = COST_DEMO.transferPerGB;
        return setPath(setPath(doc, 'sites.a.price.perVmHour', COST_DEMO.a).doc, 'sites.b.price.perVmHour', COST_DEMO.b).doc;
      },
      all('a'),
      300_000,
    );
    await step(
      `b ${COST_DEMO.bSlightly}`,
      `site b drops to ${COST_DEMO.bSlightly}: the saving does not pay the moves back within the horizon`,
      (doc) => setPath(doc, 'sites.b.price.perVmHour', COST_DEMO.bSlightly).doc,
      all('a'),
      120_000,
    );
    await step(
      `b ${COST_DEMO.bCheap}`,
      `site b drops to ${COST_DEMO.bCheap}: the moves pay back within the horizon`,
      (doc) => setPath(doc, 'sites.b.price.perVmHour', COST_DEMO.bCheap).doc,
      all('b'),
      300_000,
    );
    const end = Date.now() + COST_DEMO.quotaMs;
    const iso = new Date(end).toISOString().replace(/\.\d+Z$/, 'Z');
    await step(
      `b's quota ends in ${COST_DEMO.quotaMs / 1000} s`,
      `the quota of site b's hosts ends at ${iso.slice(11, 19)} UTC, in ${COST_DEMO.quotaMs / 1000} s`,
      (doc) => {
        for (const h of Object.values(doc.hosts as Record<string, { site: string; availableUntil?: string }>)) if (h.site === 'b') h.availableUntil = iso;
        return doc;
      },
      all('a'),
      COST_DEMO.quotaMs + 120_000,
      { quotaEnd: Date.parse(iso) },
    );
  } finally {
    await manager.stop();
  }
  return steps;
}

/** The cost per hour of where the VMs are, under the decision's environment (the plan's starting point). */
function costPerHour(r: Round): number {
  return r.plan!.before.rate * 3600;
}

function describe(r: Round): string {
  const cost = r.plan && r.view?.answer.status === 'ok' ? `; cost ${costPerHour(r).toFixed(3)}/h` : '';
  if (r.moves.length || r.done.length || r.cause || r.skipped.some((s) => !/^proposed \d/.test(s.why))) {
    const [head, ...rest] = renderRound(r).trimEnd().split('\n');
    // An event's decision (a quota's deadline, a new version) says what it was decided for.
    const cause = r.cause ? [`  decided at once for: ${r.cause.what}`] : [];
    return [head!.replace(/(environment version \d+)/, `$1${cost}`), ...cause, ...rest].join('\n');
  }
  return `round ${r.n} at ${new Date(r.at).toISOString().slice(11, 19)}: environment version ${r.envVersion ?? '-'}${cost}; ${r.note ?? 'no move'}${r.skipped.length ? ` (${r.skipped.length} move(s) waiting for confirmation)` : ''}`;
}

function summary(s: CostStep): string {
  const money = (x?: number) => (x === undefined ? '?' : x.toFixed(3));
  const where = Object.entries(s.sites)
    .map(([site, n]) => `${n} on site ${site}`)
    .join(', ');
  const parts = [`cost ${money(s.before)}/h before, ${money(s.after)}/h after`, `${s.migrations.length} migration(s)`];
  if (s.firstMigrationMs !== undefined) parts.push(`the first ${(s.firstMigrationMs / 1000).toFixed(1)} s after the change`);
  if (s.spareMs !== undefined) parts.push(`the last VM off site b ${(s.spareMs / 1000).toFixed(0)} s before the quota's end`);
  return `${parts.join('; ')}; VMs: ${where || 'none'}`;
}

/** The steps side by side, in the environment's money. */
export function costTable(steps: readonly CostStep[]): string {
  const money = (x?: number) => (x === undefined ? '?' : x.toFixed(3));
  return table(
    ['CHANGE', 'VERSION', 'COST/H BEFORE', 'COST/H AFTER', 'MIGRATIONS', 'FIRST MIGRATION AFTER', 'VMS'],
    steps.map((s) => [
      s.label,
      String(s.version),
      money(s.before),
      money(s.after),
      String(s.migrations.length),
      s.firstMigrationMs === undefined ? '-' : `${(s.firstMigrationMs / 1000).toFixed(1)} s`,
      Object.entries(s.sites)
        .map(([site, n]) => `${n} on ${site}`)
        .join(', '),
    ]),
  );
}

/** What the steps did that they should not have (empty: each change was followed as it should be). */
export function costDemoProblems(steps: readonly CostStep[]): string[] {
  const out: string[] = [];
  const [gather, slight, cheap, quota] = steps;
  const only = (s: CostStep | undefined, site: string) => !!s && Object.keys(s.sites).length === 1 && (s.sites[site] ?? 0) > 0;
  const failed = steps.flatMap((s) => s.migrations.filter((d) => d.outcome !== 'ok'));
  if (!only(gather, 'a')) out.push('the VMs did not gather on site a, the cheaper');
  if (!slight || slight.migrations.length) out.push(`${slight?.migrations.length ?? '?'} migration(s) when the saving did not pay back`);
  if (!only(cheap, 'b') || !cheap?.migrations.length) out.push('the VMs did not go to site b once it paid back');
  if (!only(quota, 'a')) out.push('the VMs did not leave site b when its quota ended');
  if (quota?.spareMs === undefined || quota.spareMs <= 0)
    out.push(`the last VM left site b ${quota?.spareMs === undefined ? '(never)' : `${(-quota.spareMs / 1000).toFixed(0)} s after`} the quota's end`);
  if (failed.length) out.push(`${failed.length} migration(s) failed: ${failed.map((d) => `${d.vm} ${d.error ?? d.outcome}`).join('; ')}`);
  return out;
}
