import { pairMember } from '../collector/keys.js';
import { geometric, round6, type AggregateAnswer, type Pair } from '../collector/query.js';
import type { HostEntry, VmEntry } from '../collector/registry.js';
import { parseEnvironment, type Environment } from '../placement/env.js';
import { inventoryOf, perSecond, type CollectorView, type DefaultLinks } from '../placement/fromCollector.js';
import type { EnvVersion, Trace } from './trace.js';

/**
 * What the manager's round would have read at an instant of a trace: the
 * collector's weighted answer over the span (the same arithmetic as the live
 * query, pair for pair, so the same bits), the registry with each host live as
 * its reports say, the directory with every VM where the replay has put it,
 * and the environment version of that instant; merged as the live round merges
 * them (inventoryOf).
 */

/** Each period's pairs as ids into one list of the trace's distinct pairs: built once, shared by every strategy. */
export interface PairIndex {
  src: Int32Array;
  dst: Int32Array;
  /** Per period, the pair id of each entry. */
  ids: Int32Array[];
  /** Period start (s) → index in trace.periods. */
  at: Map<number, number>;
  /** Each pair's member name (the answer's order breaks ties by it), built when first needed. */
  member: (string | undefined)[];
}

const indexes = new WeakMap<Trace, PairIndex>();

export function pairIndex(tr: Trace): PairIndex {
  const known = indexes.get(tr);
  if (known) return known;
  const n = tr.names.length;
  const byKey = new Map<number, number>();
  const src: number[] = [];
  const dst: number[] = [];
  const ids = tr.periods.map((p) => {
    const out = new Int32Array(p.src.length);
    for (let i = 0; i < out.length; i++) {
      const key = p.src[i]! * n + p.dst[i]!;
      let id = byKey.get(key);
      if (id === undefined) {
        byKey.set(key, (id = src.length));
        src.push(p.src[i]!);
        dst.push(p.dst[i]!);
      }
      out[i] = id;
    }
    return out;
  });
  const idx = { src: Int32Array.from(src), dst: Int32Array.from(dst), ids, at: new Map(tr.periods.map((p, i) => [p.start, i])), member: [] };
  indexes.set(tr, idx);
  return idx;
}

/** The collector's weighted answer at round time `t` (s, a period boundary): the `span` periods that end by t. */
export function weightedAnswer(tr: Trace, t: number, span: number, coefficient: number, scratch: Float64Array[]): AggregateAnswer {
  const L = tr.periodSeconds;
  const idx = pairIndex(tr);
  const periods = Array.from({ length: span }, (_, i) => t - (span - i) * L);
  const weights = geometric(span, coefficient);
  const total = weights.reduce((a, b) => a + b, 0);
  if (!scratch.length) scratch.push(new Float64Array(idx.src.length), new Float64Array(idx.src.length));
  const [m, b] = scratch as [Float64Array, Float64Array];
  const touched: number[] = [];
  const seen = new Uint8Array(idx.src.length);
  const estimated: AggregateAnswer['estimated'] = [];
  periods.forEach((start, i) => {
    const k = idx.at.get(start);
    if (k === undefined) return; // no host reported: an empty period
    const p = tr.periods[k]!;
    for (const host of p.estimated) estimated.push({ period: start, host, from: null });
    const ids = idx.ids[k]!;
    const w = weights[i]!;
    for (let j = 0; j < ids.length; j++) {
      const id = ids[j]!;
      if (!seen[id]) {
        seen[id] = 1;
        touched.push(id);
        m[id] = 0;
        b[id] = 0;
      }
      m[id]! += w * p.messages[j]!;
      b[id]! += w * p.bytes[j]!;
    }
  });
  // The live answer's order (sortPairs), on the ids: no object or name built for a comparison.
  const mm = new Float64Array(touched.length);
  const bb = new Float64Array(touched.length);
  touched.forEach((id, i) => {
    mm[i] = round6(m[id]! / total);
    bb[i] = round6(b[id]! / total);
  });
  const name = (i: number) => {
    const id = touched[i]!;
    return (idx.member[id] ??= pairMember(tr.names[idx.src[id]!]!, tr.names[idx.dst[id]!]!));
  };
  const order = Array.from(touched, (_, i) => i).sort((x, y) => mm[y]! - mm[x]! || bb[y]! - bb[x]! || (name(x) < name(y) ? -1 : 1));
  const pairs: Pair[] = order.map((i) => ({ src: tr.names[idx.src[touched[i]!]!]!, dst: tr.names[idx.dst[touched[i]!]!]!, messages: mm[i]!, bytes: bb[i]! }));
  return { status: 'ok', type: 'weighted', coefficient, approximate: estimated.length > 0, estimated, periods, periodSeconds: L, pairs };
}

/** The environment version in force at `ms`: the newest that starts by then (the oldest before any). */
export function envAt(versions: readonly EnvVersion[], ms: number): EnvVersion {
  let v = versions[0]!;
  for (const x of versions) if (x.at <= ms) v = x;
  return v;
}

const parsed = new WeakMap<EnvVersion, Environment | undefined>();

/** The version's environment file parsed once, or undefined when the manager derived it from the registry. */
export function envOf(v: EnvVersion): Environment | undefined {
  if (!parsed.has(v)) parsed.set(v, v.file === null ? undefined : parseEnvironment(v.file, `the trace's environment (${v.source})`));
  return parsed.get(v);
}

export interface RoundState {
  /** Hosts as recorded, with lastSeen and free memory as the replay has them now. */
  registry: HostEntry[];
  /** The directory, every VM on the host the replay has put it. */
  directory: VmEntry[];
  env: Environment | undefined;
  defaults: DefaultLinks;
}

/** The round's view, built as readCollector builds the live one. */
export function roundView(answer: AggregateAnswer, s: RoundState, now: number): CollectorView {
  const inventory = inventoryOf(s.registry, s.directory, { ...(s.env ? { env: s.env } : { defaults: s.defaults }), now, periodSeconds: answer.periodSeconds });
  return { ...inventory, answer, traffic: perSecond(answer.pairs, answer.periodSeconds) };
}
