import { PLAN_METHODS, OBJECTIVES } from '../config/schema.js';
import { parseDuration } from '../collector/span.js';
import { UserError } from '../util/errors.js';
import { replay, type ReplayOptions, type ReplayResult, type ReplaySettings } from './replay.js';
import type { Trace } from './trace.js';

/**
 * Strategies side by side: each option of `virt-cohort replay` may list
 * several values (`--method cohesive,louvain,seed --confirm-rounds 1,2`), and
 * every combination is replayed over the same trace, with the others at the
 * manager's settings.
 */
export interface Variation {
  objective?: string[];
  method?: string[];
  confirmRounds?: string[];
  horizon?: string[];
  cooldown?: string[];
  maxMoves?: string[];
  coefficient?: string[];
  span?: string[];
  everyPeriods?: string[];
}

export interface Strategy {
  /** The values that differ from one strategy to the next, in words (`cohesive, confirm 2`). */
  name: string;
  settings: ReplaySettings;
}

const positiveInt = (what: string) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new UserError(`${what} '${v}' is not a whole number of 1 or more`);
  return Number(v);
};
const oneOf =
  <T extends string>(what: string, allowed: readonly T[]) =>
  (v: string) => {
    if (!allowed.includes(v as T)) throw new UserError(`${what} '${v}' is not one of ${allowed.join(', ')}`);
    return v as T;
  };

/** Each option: its key in the settings, how a value reads, and how it is named in a strategy. */
const AXES: { key: keyof Variation; set: (s: ReplaySettings, v: string) => ReplaySettings; label: (v: string) => string }[] = [
  { key: 'method', set: (s, v) => ({ ...s, method: oneOf('--method', PLAN_METHODS)(v) }), label: (v) => v },
  { key: 'objective', set: (s, v) => ({ ...s, objective: oneOf('--objective', OBJECTIVES)(v) }), label: (v) => v },
  { key: 'confirmRounds', set: (s, v) => ({ ...s, confirmRounds: positiveInt('--confirm-rounds')(v) }), label: (v) => `confirm ${v}` },
  { key: 'horizon', set: (s, v) => ({ ...s, horizonSeconds: parseDuration(v, '--horizon') / 1000 }), label: (v) => `horizon ${v}` },
  { key: 'cooldown', set: (s, v) => ({ ...s, cooldownMs: parseDuration(v, '--cooldown') }), label: (v) => `cooldown ${v}` },
  { key: 'maxMoves', set: (s, v) => ({ ...s, maxMoves: positiveInt('--max-moves')(v) }), label: (v) => `max ${v} moves` },
  {
    key: 'coefficient',
    set: (s, v) => {
      const c = Number(v);
      if (!(c > 0) || !Number.isFinite(c)) throw new UserError(`--coefficient '${v}' is not a number above 0`);
      return { ...s, coefficient: c };
    },
    label: (v) => `coefficient ${v}`,
  },
  { key: 'span', set: (s, v) => ({ ...s, span: positiveInt('--span')(v) }), label: (v) => `span ${v}` },
  { key: 'everyPeriods', set: (s, v) => ({ ...s, everyPeriods: positiveInt('--every')(v) }), label: (v) => `every ${v}` },
];

/** Every combination of the values given, on top of `base`; named by the options that were given more than one value (or by all given, when none was). */
export function strategies(base: ReplaySettings, v: Variation): Strategy[] {
  let out: { settings: ReplaySettings; name: string[] }[] = [{ settings: base, name: [] }];
  const given = AXES.filter((a) => v[a.key]?.length);
  const named = given.some((a) => v[a.key]!.length > 1) ? given.filter((a) => v[a.key]!.length > 1) : given;
  for (const a of given) {
    const values = [...new Set(v[a.key]!)];
    out = out.flatMap((s) => values.map((x) => ({ settings: a.set(s.settings, x), name: named.includes(a) ? [...s.name, a.label(x)] : s.name })));
  }
  if (out.length > 64) throw new UserError(`${out.length} strategies: give fewer values (at most 64 combinations)`);
  return out.map((s) => ({ name: s.name.join(', ') || 'the manager as configured', settings: s.settings }));
}

export interface Row {
  strategy: string;
  interSiteBytes: number;
  /** Share of the known bytes that crossed sites. */
  interSiteShare: number;
  moves: number;
  gibMigrated: number;
  pingPong: number;
  cost: number;
  costs: ReplayResult['costs'];
  splitSeconds: number;
  traceSeconds: number;
  rounds: number;
  skippedRounds: number;
  /** Wall time of this replay (not part of the comparison: it varies run to run). */
  replaySeconds: number;
  result: ReplayResult;
}

export function compare(tr: Trace, list: Strategy[], o: ReplayOptions = {}): Row[] {
  return list.map((s) => {
    const t0 = performance.now();
    const r = replay(tr, s.settings, o);
    const c = r.costs;
    return {
      strategy: s.name,
      interSiteBytes: c.interSiteBytes,
      interSiteShare: c.knownBytes ? c.interSiteBytes / c.knownBytes : 0,
      moves: r.moves.length,
      gibMigrated: r.gibMigrated,
      pingPong: r.pingPong,
      cost: c.traffic + c.migration + c.hosting,
      costs: c,
      splitSeconds: r.splitSeconds,
      traceSeconds: r.seconds,
      rounds: r.rounds,
      skippedRounds: r.skippedRounds,
      replaySeconds: (performance.now() - t0) / 1000,
      result: r,
    };
  });
}

/** Bytes in powers of 1000, three significant digits. */
export function fmtBytes(b: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (b >= 1000 && i < units.length - 1) {
    b /= 1000;
    i++;
  }
  return `${Number(b.toPrecision(3))} ${units[i]}`;
}

/** A duration as h:mm. */
export const fmtHours = (s: number) => `${Math.floor(s / 3600)}:${String(Math.round((s % 3600) / 60)).padStart(2, '0')}`;

/** The table's cells, strategies side by side (one row each). */
export function rowCells(r: Row): string[] {
  return [
    r.strategy,
    `${fmtBytes(r.interSiteBytes)} (${(100 * r.interSiteShare).toFixed(1)} %)`,
    String(r.moves),
    r.gibMigrated.toFixed(1),
    String(r.pingPong),
    r.cost.toFixed(2),
    `${fmtHours(r.splitSeconds)} of ${fmtHours(r.traceSeconds)}`,
  ];
}

export const HEADER = ['STRATEGY', 'INTER-SITE', 'MOVES', 'GIB MIGRATED', 'PING-PONG', 'COST', 'TIME SPLIT'];
