import type { Redis } from 'ioredis';
import { checkPeriodLength, periodLabel } from '../agent/period.js';
import { UserError } from '../util/errors.js';
import { completeness, waitComplete, type Missing } from './complete.js';
import { K, splitPair } from './keys.js';
import { readSettings } from './registry.js';
import { addScores, resolvePeriod, type Counts } from './resolve.js';
import { spanPeriods, spanStarts } from './span.js';

export type QueryType = 'detail' | 'mean' | 'weighted';
export const QUERY_TYPES: readonly QueryType[] = ['detail', 'mean', 'weighted'];

/** What a caller asks; every field but `type` and `span` has a default. */
export interface QueryOptions {
  type: QueryType;
  /** Periods (10), or a duration ('5m') rounded up to whole periods. The span ends with the newest ended period. */
  span: number | string;
  /** weighted only: each period counts `coefficient` times the one before it. Must be > 0. Default 2. */
  coefficient?: number;
  /** How long to wait for missing reports, ms. Default 0: answer (or hand back) at once. */
  maxWaitMs?: number;
  /** Whether an answer that estimates missing reports from the host's period before is acceptable. Default false. */
  approx?: boolean;
  /** Only the pairs with this VM on either side. Must be in the VM directory. */
  vm?: string;
  /** The query's instant (Unix ms), which fixes the span. Default: now. Waiting still takes real time. */
  now?: number;
  /** Period length in seconds. Default: vc:settings periodSeconds, else 30. */
  periodSeconds?: number;
  /** A host whose lastSeen is older than this (ms) is dead and no longer blocks a period. Default: 2 periods. */
  graceMs?: number;
  /** How often to look again while waiting, ms. Default 200. */
  pollMs?: number;
}

export interface Pair {
  src: string;
  dst: string;
  messages: number;
  bytes: number;
}

/** A host's part of a period that was estimated, and the period whose report stood in for it (null: none found, counted as zero). */
export interface Estimated {
  period: number;
  host: string;
  from: number | null;
}

export interface PeriodDetail {
  period: number;
  pairs: Pair[];
}

interface Answer {
  status: 'ok';
  /** True when some host's part of some period was estimated (see `estimated`). */
  approximate: boolean;
  estimated: Estimated[];
  /** Period starts (Unix s), oldest first. */
  periods: number[];
  periodSeconds: number;
}

export interface AggregateAnswer extends Answer {
  type: 'mean' | 'weighted';
  /** weighted only. */
  coefficient?: number;
  /** Per pair, the mean (or weighted mean) per period, rounded to 6 decimals, most messages first. */
  pairs: Pair[];
}

export interface DetailAnswer extends Answer {
  type: 'detail';
  detail: PeriodDetail[];
}

export interface Reformulate {
  status: 'reformulate';
  type: QueryType;
  reason: string;
  /**
   * When the same query will be answerable (ms): with hosts missing, at the latest (each will have reported or be
   * counted dead); with too few periods held, at the earliest (the span's periods will exist); null when it never
   * will be as asked (retention keeps fewer periods than the span).
   */
  answerableAt: number | null;
  /** Hosts that had not reported when the query gave up. */
  missing: Missing[];
  /** Periods the collector holds that end no later than the span. */
  periodsAvailable: number;
  periods: number[];
  periodSeconds: number;
}

export type QueryResult = AggregateAnswer | DetailAnswer | Reformulate;

/** How far back (periods) to look for a missing host's last report when estimating its part. */
export const ESTIMATE_LOOKBACK = 10;
export const DEFAULT_PERIOD_SECONDS = 30;
export const DEFAULT_COEFFICIENT = 2;
export const DEFAULT_POLL_MS = 200;

interface Settled {
  type: QueryType;
  span: number | string;
  coefficient: number;
  maxWaitMs: number;
  approx: boolean;
  vm: string | undefined;
  now: number;
  periodSeconds: number | undefined;
  graceMs: number | undefined;
  pollMs: number;
}

/** Checks a query's options once, before anything is read. */
export function checkQuery(o: QueryOptions): Readonly<Settled> {
  if (!QUERY_TYPES.includes(o.type)) throw new UserError(`unknown query type '${o.type}': use one of ${QUERY_TYPES.join(', ')}`);
  const coefficient = o.coefficient ?? DEFAULT_COEFFICIENT;
  if (!Number.isFinite(coefficient) || coefficient <= 0) {
    throw new UserError(`the coefficient must be a number > 0 (each period counts that many times the one before); got ${o.coefficient}`);
  }
  const maxWaitMs = o.maxWaitMs ?? 0;
  if (!Number.isFinite(maxWaitMs) || maxWaitMs < 0) throw new UserError(`the maximum wait must be 0 or more; got ${o.maxWaitMs} ms`);
  if (o.graceMs !== undefined && (!Number.isFinite(o.graceMs) || o.graceMs < 0)) throw new UserError(`the grace time must be 0 or more; got ${o.graceMs} ms`);
  if (o.periodSeconds !== undefined) periodLength(o.periodSeconds);
  spanPeriods(o.span, DEFAULT_PERIOD_SECONDS); // its form and sign; the count needs the period length, read later
  if (o.vm !== undefined && o.vm.trim() === '') throw new UserError('the VM name is empty: `virt-cohort stats --vms` lists the VM directory');
  return Object.freeze({
    type: o.type, span: o.span, coefficient, maxWaitMs, approx: o.approx ?? false, vm: o.vm,
    now: o.now ?? Date.now(), periodSeconds: o.periodSeconds, graceMs: o.graceMs, pollMs: o.pollMs ?? DEFAULT_POLL_MS,
  });
}

function periodLength(s: number): number {
  try {
    return checkPeriodLength(s);
  } catch (err) {
    throw new UserError(`bad period length: ${(err as Error).message}`);
  }
}

/**
 * The seed's query: the span's periods are read once complete; an incomplete
 * period is waited for while the wait allows, then estimated if approximation
 * is allowed, else the query is handed back with the time it will be
 * answerable.
 */
export async function query(redis: Redis, options: QueryOptions): Promise<QueryResult> {
  const q = checkQuery(options);
  const settings = await readSettings(redis);
  const L = periodLength(q.periodSeconds ?? settings.periodSeconds ?? DEFAULT_PERIOD_SECONDS);
  const n = spanPeriods(q.span, L);
  const periods = spanStarts(n, L, q.now);
  const graceMs = q.graceMs ?? 2 * L * 1000;
  if (q.vm !== undefined && !(await redis.sismember(K.vms, q.vm))) {
    throw new UserError(`unknown VM '${q.vm}': it is not in the VM directory (vc:vms); \`virt-cohort stats --vms\` lists the VMs`);
  }
  const base = { type: q.type, periods, periodSeconds: L };
  const newest = periods[n - 1]!;

  const first = await redis.zrange(K.periods, '0', '0');
  const firstPeriod = first.length ? Number(first[0]) : undefined;
  if (firstPeriod === undefined || firstPeriod > periods[0]!) {
    const available = firstPeriod === undefined || firstPeriod > newest ? 0 : (newest - firstPeriod) / L + 1;
    const never = settings.retention !== undefined && settings.retention > 0 && n > settings.retention;
    const reason = firstPeriod === undefined
      ? `no period has been reported yet: the span asks for ${n} period(s)`
      : `the span asks for ${n} period(s) from ${periodLabel({ start: periods[0]!, length: L })}, but the collector holds ${available} period(s) up to then (the oldest starts ${periodLabel({ start: firstPeriod, length: L })})` +
        (never ? `; retention keeps ${settings.retention}: ask for at most ${settings.retention}` : `: ask for at most ${available}`);
    return {
      status: 'reformulate', ...base, reason, missing: [], periodsAvailable: available,
      answerableAt: never || firstPeriod === undefined ? null : (firstPeriod + n * L) * 1000,
    };
  }

  const t0 = Date.now();
  const clock = () => q.now + (Date.now() - t0);
  const waited = q.maxWaitMs > 0
    ? await waitComplete(redis, periods, L, graceMs, clock, q.now + q.maxWaitMs, q.pollMs)
    : await completeness(redis, periods, L, graceMs, q.now);
  if (waited.missing.length && !q.approx) {
    const byPeriod = groupMissing(waited.missing);
    const reason = `${byPeriod.size} period(s) incomplete: ` +
      [...byPeriod].map(([p, hs]) => `${periodLabel({ start: p, length: L })} lacks ${hs.join(', ')}`).join('; ') +
      (q.maxWaitMs > 0 ? ` (waited ${(Date.now() - t0) / 1000} s)` : '') +
      ': wait longer, allow an approximate answer, or ask again later';
    return {
      status: 'reformulate', ...base, reason, missing: waited.missing,
      periodsAvailable: (newest - firstPeriod) / L + 1, answerableAt: waited.answerableAt,
    };
  }

  // One transaction per period: its reported set and its sums are read together, so a
  // report landing now is either in both (not estimated) or in neither (estimated).
  const [addr, snaps] = await Promise.all([
    redis.hgetall(K.addr).then((h) => new Map(Object.entries(h))),
    Promise.all(periods.map((p) => readPeriod(redis, p))),
  ]);
  const missing = waited.missing.filter((m) => !snaps[periods.indexOf(m.period)]!.reported.has(m.host));
  const estimated = await estimate(redis, missing, snaps.map((s, i) => [periods[i]!, s.raw] as const), L);

  const resolved = snaps.map((s) => {
    const r = resolvePeriod(s.raw, addr);
    return q.vm === undefined ? r : filterVm(r, q.vm);
  });
  const answer = { status: 'ok' as const, approximate: estimated.length > 0, estimated, periods, periodSeconds: L };
  if (q.type === 'detail') {
    return { ...answer, type: 'detail', detail: resolved.map((r, i) => ({ period: periods[i]!, pairs: toPairs(r, 1) })) };
  }
  const weights = q.type === 'mean' ? periods.map(() => 1) : geometric(n, q.coefficient);
  const total = weights.reduce((a, b) => a + b, 0);
  const sum = new Map<string, Counts>();
  resolved.forEach((r, i) => {
    const w = weights[i]!;
    for (const [k, [m, b]] of r) {
      const c = sum.get(k);
      if (c) { c[0] += w * m; c[1] += w * b; } else sum.set(k, [w * m, w * b]);
    }
  });
  return {
    ...answer, type: q.type, ...(q.type === 'weighted' ? { coefficient: q.coefficient } : {}), pairs: toPairs(sum, total),
  };
}

/**
 * Weights oldest first, each `c` times the one before, scaled so the largest
 * is 1 (the newest when c ≥ 1): 120 periods at c = 10 stay finite.
 */
export function geometric(n: number, c: number): number[] {
  return Array.from({ length: n }, (_, k) => (c >= 1 ? c ** (k - (n - 1)) : c ** k));
}

async function readPeriod(redis: Redis, p: number): Promise<{ reported: Set<string>; raw: Map<string, Counts> }> {
  const out = await redis.multi()
    .smembers(K.reported(p))
    .zrange(K.msgs(p), '0', '-1', 'WITHSCORES')
    .zrange(K.bytes(p), '0', '-1', 'WITHSCORES')
    .exec();
  if (!out) throw new Error(`Redis aborted the read of period ${p}`);
  for (const [err] of out) if (err) throw err;
  const raw = new Map<string, Counts>();
  addScores(raw, out[1]![1] as string[], 0);
  addScores(raw, out[2]![1] as string[], 1);
  return { reported: new Set(out[0]![1] as string[]), raw };
}

/**
 * Adds to each incomplete period, for each host missing from it, that host's
 * own counts from the nearest earlier period it reported (the period before,
 * unless it was missing there too), as the seed estimates a partial period.
 */
async function estimate(redis: Redis, missing: Missing[], raws: (readonly [number, Map<string, Counts>])[], L: number): Promise<Estimated[]> {
  if (!missing.length) return [];
  const tx = redis.pipeline();
  for (const m of missing) for (let k = 1; k <= ESTIMATE_LOOKBACK; k++) tx.sismember(K.reported(m.period - k * L), m.host);
  const seen = ((await tx.exec()) ?? []).map(([err, v]) => { if (err) throw err; return v === 1; });
  const out: Estimated[] = [];
  const reads = redis.pipeline();
  missing.forEach((m, i) => {
    const k = seen.slice(i * ESTIMATE_LOOKBACK, (i + 1) * ESTIMATE_LOOKBACK).indexOf(true);
    const from = k < 0 ? null : m.period - (k + 1) * L;
    out.push({ period: m.period, host: m.host, from });
    if (from !== null) {
      reads.zrange(K.hostMsgs(from, m.host), '0', '-1', 'WITHSCORES');
      reads.zrange(K.hostBytes(from, m.host), '0', '-1', 'WITHSCORES');
    }
  });
  const got = ((await reads.exec()) ?? []).map(([err, v]) => { if (err) throw err; return v as string[]; });
  let j = 0;
  for (const e of out) {
    if (e.from === null) continue;
    const raw = raws.find(([p]) => p === e.period)![1];
    addScores(raw, got[j++]!, 0);
    addScores(raw, got[j++]!, 1);
  }
  return out;
}

function groupMissing(missing: Missing[]): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const m of missing) by.set(m.period, [...(by.get(m.period) ?? []), m.host]);
  return by;
}

function filterVm(r: Map<string, Counts>, vm: string): Map<string, Counts> {
  const out = new Map<string, Counts>();
  for (const [k, c] of r) {
    const [s, d] = splitPair(k);
    if (s === vm || d === vm) out.set(k, c);
  }
  return out;
}

/** Six decimals: a mean per period needs no more, and float noise (1000.0000000000001) would only confuse. */
const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** Divided by `divisor`; most messages first, then most bytes, then by name, so equal runs print the same. */
function toPairs(r: Map<string, Counts>, divisor: number): Pair[] {
  const out: Pair[] = [];
  for (const [k, [m, b]] of r) {
    const [src, dst] = splitPair(k);
    out.push({ src, dst, messages: round6(m / divisor), bytes: round6(b / divisor) });
  }
  return out.sort((a, b) => b.messages - a.messages || b.bytes - a.bytes || (a.src + '>' + a.dst < b.src + '>' + b.dst ? -1 : 1));
}
