import type { Redis } from 'ioredis';
import { K } from '../collector/keys.js';
import { query } from '../collector/query.js';
import { Registry, type EnvRecord } from '../collector/registry.js';
import { spanPeriods } from '../collector/span.js';
import { readHistory } from '../manager/history.js';
import { environmentJson, type Environment } from '../placement/env.js';
import type { DefaultLinks } from '../placement/fromCollector.js';
import { UserError } from '../util/errors.js';
import { DEFAULT_PERIOD_SECONDS, periodLabel } from '../util/period.js';
import { addPeriod, TRACE_VERSION, type EnvVersion, type Trace } from './trace.js';

/** Periods read per collector query while recording: bounds the memory of one read. */
const CHUNK = 120;

export interface RecordOptions {
  /** Periods (or a duration, '1d') ending with the newest ended period; or give `from`/`to`. */
  span?: number | string;
  /** Unix ms: the periods that start from `from` and end by `to` (default: now). */
  from?: number;
  to?: number;
  /** The environment file the manager uses (manager.environment, an override); undefined: the versions stored in Redis, else `defaultEnv`, else derived from the registry with `defaults`. */
  env?: Environment;
  envSource?: string;
  /** What stands in while no environment is stored (a lab's). */
  defaultEnv?: Environment;
  defaultEnvSource?: string;
  defaults: DefaultLinks;
  /** What is recorded, for the header (a Redis URL without credentials, a lab). */
  source: string;
  now?: number;
}

/**
 * `virt-cohort record`: the collector's periods over the span, each as the
 * manager's query reads it (addresses resolved to VMs, a missing host's part
 * estimated from its report before, as the manager's approximate answer
 * does), with the host registry, the VM directory, the environment and the
 * migrations made meanwhile.
 */
export async function recordTrace(redis: Redis, o: RecordOptions): Promise<Trace> {
  const now = o.now ?? Date.now();
  const reg = new Registry(redis);
  const [settings, hosts, vms] = await Promise.all([reg.settings(), reg.hosts(), reg.vms()]);
  const L = settings.periodSeconds ?? DEFAULT_PERIOD_SECONDS;
  const newestEnded = Math.floor(Math.min(o.to ?? now, now) / 1000 / L) * L - L;
  let first: number;
  if (o.from !== undefined) first = Math.ceil(o.from / 1000 / L) * L;
  else first = newestEnded - (spanPeriods(o.span ?? '1d', L) - 1) * L;
  const held = await redis.zrangebyscore(K.periods, first, newestEnded, 'LIMIT', 0, 1);
  if (!held.length) {
    throw new UserError(
      `the collector holds no period from ${periodLabel({ start: first, length: L })} to ${periodLabel({ start: newestEnded, length: L })}: record a span it holds (virt-cohort stats shows the newest periods)`,
    );
  }
  first = Math.max(first, Number(held[0]));
  const tr: Trace = {
    version: TRACE_VERSION,
    recordedAt: now,
    source: o.source,
    periodSeconds: L,
    names: [],
    periods: [],
    hosts,
    vms,
    environments: o.env
      ? [{ at: first * 1000, file: environmentJson(o.env), defaults: o.defaults, source: o.envSource ?? 'file' }]
      : envVersions(await reg.environmentHistory(), first * 1000, (newestEnded + L) * 1000, o),
    migrations: [],
  };
  const index = new Map<string, number>();
  for (let start = first; start <= newestEnded; start += CHUNK * L) {
    const last = Math.min(newestEnded, start + (CHUNK - 1) * L);
    const n = (last - start) / L + 1;
    const a = await query(redis, { type: 'detail', span: n, approx: true, now: (last + L) * 1000, periodSeconds: L });
    if (a.status !== 'ok' || a.type !== 'detail')
      throw new UserError(`the collector cannot give periods ${periodLabel({ start, length: L })} on: ${a.status === 'reformulate' ? a.reason : 'no detail'}`);
    const reported = await Promise.all(a.detail.map((d) => redis.smembers(K.reported(d.period))));
    a.detail.forEach((d, i) => {
      const estimated = a.estimated.filter((e) => e.period === d.period).map((e) => e.host);
      if (!d.pairs.length && !reported[i]!.length && !estimated.length) return; // no host reported: a gap
      addPeriod(tr, index, d.period, d.pairs, reported[i]!.sort(), estimated.sort());
    });
  }
  const until = (newestEnded + L) * 1000;
  tr.migrations = (await readHistory(redis, 100_000)).filter((m) => m.at >= first * 1000 && m.at < until).reverse();
  return tr;
}

/**
 * The environment's versions over [from, until) (ms) as a trace holds them: the one in force at
 * `from` (the stored version then, else what stands in: `defaultEnv` or the registry's), then each
 * version stored after it, from the instant it was written. A replay then prices each round as the
 * live manager did.
 */
export function envVersions(stored: readonly EnvRecord[], from: number, until: number, o: Pick<RecordOptions, 'defaults' | 'defaultEnv' | 'defaultEnvSource'>): EnvVersion[] {
  const at = (v: EnvRecord, t: number): EnvVersion => ({ at: t, file: v.file, defaults: o.defaults, source: `Redis version ${v.version}: ${v.source} by ${v.by}`, version: v.version });
  const before = stored.filter((v) => v.at <= from).at(-1);
  const out: EnvVersion[] = [
    before ? at(before, from) : { at: from, file: o.defaultEnv ? environmentJson(o.defaultEnv) : null, defaults: o.defaults, source: o.defaultEnv ? (o.defaultEnvSource ?? 'default') : 'registry' },
  ];
  for (const v of stored) if (v.at > from && v.at < until && v.at > out.at(-1)!.at) out.push(at(v, v.at));
  return out;
}
