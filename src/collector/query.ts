import type { Redis } from 'ioredis';
import { checkPeriodLength, DEFAULT_PERIOD_SECONDS, periodLabel } from '../util/period.js';
import { UnknownVmError, UserError } from '../util/errors.js';
import { completeness, waitComplete, type Missing } from './complete.js';
import { namesOf, oneIdSpace } from './dictionary.js';
import { K, pairMember } from './keys.js';
import { decodePacked, type Packed } from './packed.js';
import { Registry } from './registry.js';
import { results } from './results.js';
import { resolveMember } from './resolve.js';
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
  /** Period length in seconds. Default: vc:{vc}:settings periodSeconds, else 30. */
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
  if (o.vm !== undefined && o.vm.trim() === '') throw new UnknownVmError(o.vm);
  return Object.freeze({
    type: o.type,
    span: o.span,
    coefficient,
    maxWaitMs,
    approx: o.approx ?? false,
    vm: o.vm,
    now: o.now ?? Date.now(),
    periodSeconds: o.periodSeconds,
    graceMs: o.graceMs,
    pollMs: o.pollMs ?? DEFAULT_POLL_MS,
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
  const registry = new Registry(redis);
  const settings = await registry.settings();
  const L = periodLength(q.periodSeconds ?? settings.periodSeconds ?? DEFAULT_PERIOD_SECONDS);
  const n = spanPeriods(q.span, L);
  const periods = spanStarts(n, L, q.now);
  const graceMs = q.graceMs ?? 2 * L * 1000;
  if (q.vm !== undefined && !(await registry.hasVm(q.vm))) {
    throw new UnknownVmError(q.vm);
  }
  const base = { type: q.type, periods, periodSeconds: L };
  const newest = periods[n - 1]!;

  const first = await redis.zrange(K.periods, '0', '0');
  const firstPeriod = first.length ? Number(first[0]) : undefined;
  if (firstPeriod === undefined || firstPeriod > periods[0]!) {
    const available = firstPeriod === undefined || firstPeriod > newest ? 0 : (newest - firstPeriod) / L + 1;
    const never = settings.retention !== undefined && settings.retention > 0 && n > settings.retention;
    const reason =
      firstPeriod === undefined
        ? `no period has been reported yet: the span asks for ${n} period(s)`
        : `the span asks for ${n} period(s) from ${periodLabel({ start: periods[0]!, length: L })}, but the collector holds ${available} period(s) up to then (the oldest starts ${periodLabel({ start: firstPeriod, length: L })})` +
          (never ? `; retention keeps ${settings.retention}: ask for at most ${settings.retention}` : `: ask for at most ${available}`);
    return {
      status: 'reformulate',
      ...base,
      reason,
      missing: [],
      periodsAvailable: available,
      answerableAt: never || firstPeriod === undefined ? null : (firstPeriod + n * L) * 1000,
    };
  }

  const t0 = Date.now();
  const clock = () => q.now + (Date.now() - t0);
  const waited = q.maxWaitMs > 0 ? await waitComplete(redis, periods, L, graceMs, clock, q.now + q.maxWaitMs, q.pollMs) : await completeness(redis, periods, L, graceMs, q.now);
  if (waited.missing.length && !q.approx) {
    const byPeriod = groupMissing(waited.missing);
    const reason =
      `${byPeriod.size} period(s) incomplete: ` +
      [...byPeriod].map(([p, hs]) => `${periodLabel({ start: p, length: L })} lacks ${hs.join(', ')}`).join('; ') +
      (q.maxWaitMs > 0 ? ` (waited ${(Date.now() - t0) / 1000} s)` : '') +
      ': wait longer, allow an approximate answer, or ask again later';
    return {
      status: 'reformulate',
      ...base,
      reason,
      missing: waited.missing,
      periodsAvailable: (newest - firstPeriod) / L + 1,
      answerableAt: waited.answerableAt,
    };
  }

  // Each period's reported set, then the packed reports of those hosts. A report is written in the same
  // script as its host's SADD and never changed after, so the set read decides which reports count: one
  // landing now is either in both (not estimated) or in neither (estimated).
  const [addr, snaps] = await Promise.all([registry.addresses(), readPeriods(redis, periods)]);
  const missing = waited.missing.filter((m) => !snaps[periods.indexOf(m.period)]!.reported.has(m.host));
  const estimated = await estimate(redis, missing, periods, snaps, L);
  const span = await sumSpan(redis, snaps, addr, q.vm);

  const answer = { status: 'ok' as const, approximate: estimated.length > 0, estimated, periods, periodSeconds: L };
  if (q.type === 'detail') {
    return { ...answer, type: 'detail', detail: span.per.map((s, i) => ({ period: periods[i]!, pairs: toPairs(span, s, 1) })) };
  }
  const weights = q.type === 'mean' ? periods.map(() => 1) : geometric(n, q.coefficient);
  const total = weights.reduce((a, b) => a + b, 0);
  const R = span.src.length;
  const sum: PeriodSums = { r: new Int32Array(R), m: new Float64Array(R), b: new Float64Array(R) };
  const seen = new Uint8Array(R);
  span.per.forEach((s, i) => {
    const w = weights[i]!;
    for (let k = 0; k < s.r.length; k++) {
      const r = s.r[k]!;
      seen[r] = 1;
      sum.m[r]! += w * s.m[k]!;
      sum.b[r]! += w * s.b[k]!;
    }
  });
  let k = 0;
  for (let r = 0; r < R; r++) {
    if (!seen[r]) continue;
    sum.r[k] = r;
    sum.m[k] = sum.m[r]!; // k <= r: in place
    sum.b[k] = sum.b[r]!;
    k++;
  }
  const pairs = toPairs(span, { r: sum.r.subarray(0, k), m: sum.m.subarray(0, k), b: sum.b.subarray(0, k) }, total);
  return { ...answer, type: q.type, ...(q.type === 'weighted' ? { coefficient: q.coefficient } : {}), pairs };
}

/**
 * Weights oldest first, each `c` times the one before, scaled so the largest
 * is 1 (the newest when c ≥ 1): 120 periods at c = 10 stay finite.
 */
export function geometric(n: number, c: number): number[] {
  return Array.from({ length: n }, (_, k) => (c >= 1 ? c ** (k - (n - 1)) : c ** k));
}

/** One period as read: who reported, and the packed reports that count in it (estimates added). */
interface Snapshot {
  reported: Set<string>;
  blobs: Packed[];
}

/**
 * Each period's reads go in one pipeline of their own: a period's keys share one slot (keys.ts), so in a Redis
 * Cluster each pipeline goes to the shard that holds its period, and the periods are read side by side.
 */
async function readPeriods(redis: Redis, periods: number[]): Promise<Snapshot[]> {
  const reported = await Promise.all(periods.map((p) => redis.smembers(K.reported(p))));
  const perPeriod = await Promise.all(
    periods.map((p, i) => {
      const reads = redis.pipeline();
      for (const h of reported[i]!) reads.getBuffer(K.hostPairs(p, h));
      return results(reads, 'the packed reports') as Promise<(Buffer | null)[]>;
    }),
  );
  const got = perPeriod.flat();
  let j = 0;
  return periods.map((p, i) => {
    const blobs: Packed[] = [];
    for (const h of reported[i]!) {
      const buf = got[j++];
      if (buf) blobs.push(decodePacked(buf, K.hostPairs(p, h))); // null: trimmed meanwhile
    }
    return { reported: new Set(reported[i]!), blobs };
  });
}

/**
 * Adds to each incomplete period, for each host missing from it, that host's
 * own report from the nearest earlier period it reported (the period before,
 * unless it was missing there too), as the seed estimates a partial period.
 */
async function estimate(redis: Redis, missing: Missing[], periods: number[], snaps: Snapshot[], L: number): Promise<Estimated[]> {
  if (!missing.length) return [];
  // One command each, side by side: these keys are of several periods (several slots in a Redis Cluster).
  const seen = (await Promise.all(missing.flatMap((m) => Array.from({ length: ESTIMATE_LOOKBACK }, (_, k) => redis.sismember(K.reported(m.period - (k + 1) * L), m.host))))).map((v) => v === 1);
  const out: Estimated[] = [];
  const reads: Promise<Buffer | null>[] = [];
  missing.forEach((m, i) => {
    const k = seen.slice(i * ESTIMATE_LOOKBACK, (i + 1) * ESTIMATE_LOOKBACK).indexOf(true);
    const from = k < 0 ? null : m.period - (k + 1) * L;
    out.push({ period: m.period, host: m.host, from });
    if (from !== null) reads.push(redis.getBuffer(K.hostPairs(from, m.host)));
  });
  const got = await Promise.all(reads);
  let j = 0;
  for (const e of out) {
    if (e.from === null) continue;
    const buf = got[j++];
    if (buf) snaps[periods.indexOf(e.period)]!.blobs.push(decodePacked(buf, K.hostPairs(e.from, e.host)));
  }
  return out;
}

/** One period's (or the span's) resolved pairs: index into Span's src/dst, messages, bytes. */
interface PeriodSums {
  r: Int32Array;
  m: Float64Array;
  b: Float64Array;
}

interface Span {
  src: string[];
  dst: string[];
  /** Each resolved pair's name (pairMember): the last key of the answer's order. */
  keys: string[];
  per: PeriodSums[];
}

/**
 * Sums the span's packed reports per resolved pair, per period, with no
 * string per count: each distinct dictionary id is named and resolved once
 * (resolveMember), to an index into typed arrays; then each count is two
 * array reads and an addition. Receiver-side counts (`received`) are kept
 * apart and used only for pairs the sender's side did not report that period.
 */
async function sumSpan(redis: Redis, snaps: Snapshot[], addr: Map<string, string>, vm: string | undefined): Promise<Span> {
  const blobs = snaps.flatMap((s) => s.blobs);
  const base = oneIdSpace(blobs);
  let max = -1;
  for (const p of blobs) for (let j = 0; j < p.ids.length; j++) if (p.ids[j]! > max) max = p.ids[j]!;
  const rid = new Int32Array(max + 1).fill(-2); // -2: not in the span; -1: left out (vm filter)
  const distinct: number[] = [];
  for (const p of blobs) {
    for (let j = 0; j < p.ids.length; j++) {
      const id = p.ids[j]!;
      if (rid[id] === -2) {
        rid[id] = -1;
        distinct.push(id);
      }
    }
  }
  const names = await namesOf(redis, distinct, base);
  const received = new Uint8Array(max + 1);
  const index = new Map<string, number>();
  const src: string[] = [];
  const dst: string[] = [];
  const keys: string[] = [];
  distinct.forEach((id, k) => {
    const m = resolveMember(names[k]!, addr);
    if (vm !== undefined && m.src !== vm && m.dst !== vm) return;
    // A member no address renamed is already its pair's name (pairMember wrote it).
    const key = m.renamed ? pairMember(m.src, m.dst) : names[k]!;
    let r = index.get(key);
    if (r === undefined) {
      index.set(key, (r = src.length));
      src.push(m.src);
      dst.push(m.dst);
      keys.push(key);
    }
    rid[id] = r;
    received[id] = m.received ? 1 : 0;
  });
  const R = src.length;
  const sm = new Float64Array(R),
    sb = new Float64Array(R),
    rm = new Float64Array(R),
    rb = new Float64Array(R);
  const sentAt = new Int32Array(R).fill(-1),
    recvAt = new Int32Array(R).fill(-1);
  const touched = new Int32Array(R);
  const per = snaps.map((s, i) => {
    let t = 0;
    for (const p of s.blobs) {
      const { ids, msgs, bytes } = p;
      for (let j = 0; j < ids.length; j++) {
        const id = ids[j]!;
        const r = rid[id]!;
        if (r < 0) continue;
        if (received[id]) {
          if (recvAt[r] !== i) {
            if (sentAt[r] !== i) touched[t++] = r;
            recvAt[r] = i;
            rm[r] = 0;
            rb[r] = 0;
          }
          rm[r]! += msgs[j]!;
          rb[r]! += bytes[j]!;
        } else {
          if (sentAt[r] !== i) {
            if (recvAt[r] !== i) touched[t++] = r;
            sentAt[r] = i;
            sm[r] = 0;
            sb[r] = 0;
          }
          sm[r]! += msgs[j]!;
          sb[r]! += bytes[j]!;
        }
      }
    }
    const out: PeriodSums = { r: touched.slice(0, t), m: new Float64Array(t), b: new Float64Array(t) };
    for (let k = 0; k < t; k++) {
      const r = out.r[k]!;
      const sent = sentAt[r] === i;
      out.m[k] = sent ? sm[r]! : rm[r]!;
      out.b[k] = sent ? sb[r]! : rb[r]!;
    }
    return out;
  });
  return { src, dst, keys, per };
}

function groupMissing(missing: Missing[]): Map<number, string[]> {
  const by = new Map<number, string[]>();
  for (const m of missing) by.set(m.period, [...(by.get(m.period) ?? []), m.host]);
  return by;
}

/** Six decimals: a mean per period needs no more, and float noise (1000.0000000000001) would only confuse. */
export const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * Divided by `divisor`, in the answer's order: most messages first, then most
 * bytes, then by the pair's name, so equal runs print the same (a replay,
 * src/replay/view.ts, sorts its answers the same). The order is found on
 * indices into typed arrays, with the names the span already built: a million
 * pairs sort without a Pair object or a name made for a comparison.
 */
function toPairs(span: Span, s: PeriodSums, divisor: number): Pair[] {
  const n = s.r.length;
  const m = new Float64Array(n);
  const b = new Float64Array(n);
  for (let k = 0; k < n; k++) {
    m[k] = round6(s.m[k]! / divisor);
    b[k] = round6(s.b[k]! / divisor);
  }
  const key = (k: number) => span.keys[s.r[k]!]!;
  const order = Array.from({ length: n }, (_, k) => k).sort((x, y) => m[y]! - m[x]! || b[y]! - b[x]! || (key(x) < key(y) ? -1 : 1));
  return order.map((k) => ({ src: span.src[s.r[k]!]!, dst: span.dst[s.r[k]!]!, messages: m[k]!, bytes: b[k]! }));
}
