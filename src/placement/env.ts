import { readFileSync } from 'node:fs';
import { UserError } from '../util/errors.js';

/**
 * The environment model of the seed's "environment analysis": sites, their hosts (capacity,
 * speed, price, how long they stay available) and the links between sites. It comes from a JSON
 * file written by the administrator, merged each round with the agents' live host inventory
 * (see live.ts), so price or capacity changes are picked up at the next round.
 *
 * File format (every key listed; anything else is rejected so that a typo is never ignored):
 * {
 *   "sites":  { "a": { "lanMbit": 10000, "price": PRICE } },        lanMbit default 10000; price = default for its hosts
 *   "hosts":  { "a1": { "site": "a", "vcpus": 8, "memoryGiB": 32,    vcpus/memory optional when the agent reports them
 *                        "speed": 1, "price": PRICE,                 speed relative to 1 (default 1)
 *                        "availableUntil": "2026-12-01T00:00:00Z" } },   grid quota end; default: no end
 *   "links":  [ { "sites": ["a", "b"], "latencyMs": 20, "bandwidthMbit": 1000, "transferPricePerGB": 0.02 } ],
 *   "endpoints": { "10.0.9.5": "a" },                                  where non-VM endpoints (file servers) live
 *   "cpuOvercommit": 1,                                              vCPUs per host CPU allowed (default 1)
 *   "reserveMemoryMiB": 0                                            kept free on every host (default 0)
 * }
 * PRICE = { "perVmHour": 0.05, "perVcpuHour": 0, "perGiBHour": 0,   all default 0, currency is yours
 *           "daily": [ { "hours": "22:00-06:00", "perVmHour": 0.02 } ],                time-of-day rates, UTC
 *           "schedule": [ { "from": "2026-12-01T00:00:00Z", "until": ..., "perVmHour": 0.03, "daily": [...] } ] }   dated entries
 * A host without "price" has its site's; a host's "price" takes the rates it does not give from its
 * site's base rates, but not the site's "daily" or "schedule": its schedule is its own. The price in force at an instant: the dated
 * entry holding then (from its "from" to its "until", else to the next entry's "from"; the last one
 * holds for ever), its keys over the base ones; then the time-of-day rate whose hours hold then, its
 * keys over those (a dated entry without "daily" keeps the base's). See priceAt, averageRates.
 * Every pair of sites needs a link: a missing one is an error, not a guess.
 */
export interface PriceRates {
  perVmHour: number;
  perVcpuHour: number;
  perGiBHour: number;
}

/** A time-of-day rate: during `hours` (UTC) each day, its rates replace the price's. */
export interface DailyRate {
  /** As written: "HH:MM-HH:MM", UTC; the end may be past midnight (22:00-06:00). */
  hours: string;
  /** Minutes after midnight UTC: start inclusive, end exclusive. */
  start: number;
  end: number;
  rates: Partial<PriceRates>;
}

/** A dated entry: from `from` (ms) to `until`, else to the next entry's `from`. */
export interface DatedPrice {
  from: number;
  until?: number;
  rates: Partial<PriceRates>;
  /** Its own time-of-day rates; undefined: the base price's. */
  daily?: readonly DailyRate[];
}

/** The base rates (what holds when no schedule entry does), and the schedule that changes them over time. */
export interface Price extends PriceRates {
  daily?: readonly DailyRate[];
  /** Sorted by `from`, never overlapping. */
  schedule?: readonly DatedPrice[];
}

/** How a write checks a document: with `now`, an end time (until, availableUntil) at or before it is an error. */
export interface ParseOptions {
  now?: number;
}

export interface Site {
  name: string;
  lanMbit: number;
  /** The price its hosts take for what they do not set themselves. */
  price: Price;
}

export interface Host {
  name: string;
  site: string;
  /** Undefined until the file or the agent says; placement refuses hosts without capacity. */
  vcpus: number | undefined;
  memoryKiB: number | undefined;
  /** From the agent: memory free now, VMs already running included in the used part. */
  freeMemoryKiB: number | undefined;
  speed: number;
  price: Price;
  /** ms since the epoch; undefined = no end. */
  availableUntil: number | undefined;
  /** False when live data was given and this host sent none: not a destination this round. */
  reporting: boolean;
}

export interface Link {
  sites: readonly [string, string];
  latencyMs: number;
  bandwidthMbit: number;
  transferPricePerGB: number;
}

export interface Environment {
  readonly sites: readonly Site[];
  readonly hosts: readonly Host[];
  readonly links: readonly Link[];
  readonly endpoints: ReadonlyMap<string, string>;
  readonly cpuOvercommit: number;
  readonly reserveMemoryKiB: number;
}

type Obj = Record<string, unknown>;

export function loadEnvironment(path: string): Environment {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read environment file ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new UserError(`environment file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseEnvironment(raw, path);
}

export function parseEnvironment(raw: unknown, source = 'environment', opts: ParseOptions = {}): Environment {
  const at = (where: string) => `${source}: ${where}`;
  const root = object(raw, at('the top level'));
  keys(root, ['sites', 'hosts', 'links', 'endpoints', 'cpuOvercommit', 'reserveMemoryMiB'], at('the top level'));
  const siteObjs = object(root.sites, at('"sites"'));
  const sitePrice = new Map<string, Price>();
  const sites: Site[] = Object.entries(siteObjs).map(([name, v]) => {
    const o = object(v, at(`sites.${name}`));
    keys(o, ['lanMbit', 'price'], at(`sites.${name}`));
    const p = price(o.price, at(`sites.${name}.price`), zeroPrice, opts);
    sitePrice.set(name, p);
    return { name, lanMbit: num(o.lanMbit, at(`sites.${name}.lanMbit`), 10000, true), price: p };
  });
  if (sites.length === 0) throw new UserError(at('"sites" is empty: define at least one site, e.g. "sites": { "a": {} }'));
  const siteNames = new Set(sites.map((s) => s.name));
  const hosts: Host[] = Object.entries(object(root.hosts ?? {}, at('"hosts"'))).map(([name, v]) => {
    const w = `hosts.${name}`;
    const o = object(v, at(w));
    keys(o, ['site', 'vcpus', 'memoryGiB', 'speed', 'price', 'availableUntil'], at(w));
    if (typeof o.site !== 'string') throw new UserError(at(`${w} is in no site: add "site": one of ${[...siteNames].join(', ')}`));
    if (!siteNames.has(o.site)) throw new UserError(at(`${w}.site is '${o.site}', which is not in "sites": add it there or use one of ${[...siteNames].join(', ')}`));
    if (o.speed !== undefined && !((o.speed as number) > 0)) throw new UserError(at(`${w}.speed must be above 0 (1 = reference speed), got ${JSON.stringify(o.speed)}`));
    const memGiB = o.memoryGiB === undefined ? undefined : num(o.memoryGiB, at(`${w}.memoryGiB`), 0, true);
    return {
      name,
      site: o.site,
      vcpus: o.vcpus === undefined ? undefined : num(o.vcpus, at(`${w}.vcpus`), 0, true),
      memoryKiB: memGiB === undefined ? undefined : memGiB * 1024 * 1024,
      freeMemoryKiB: undefined,
      speed: num(o.speed, at(`${w}.speed`), 1, true),
      price: price(o.price, at(`${w}.price`), sitePrice.get(o.site)!, opts),
      availableUntil: notPast(time(o.availableUntil, at(`${w}.availableUntil`)), at(`${w}.availableUntil`), opts, `remove it (the quota has ended: take the host out, or set a new end)`),
      reporting: true,
    };
  });
  const links = parseLinks(root.links, siteNames, at);
  const endpoints = new Map<string, string>();
  for (const [addr, site] of Object.entries(object(root.endpoints ?? {}, at('"endpoints"')))) {
    if (typeof site !== 'string' || !siteNames.has(site)) {
      throw new UserError(at(`endpoints.${addr} must name a site (${[...siteNames].join(', ')}), got ${JSON.stringify(site)}`));
    }
    endpoints.set(addr, site);
  }
  const overcommit = num(root.cpuOvercommit, at('cpuOvercommit'), 1, true);
  if (overcommit <= 0) throw new UserError(at('cpuOvercommit must be above 0 (1 = one vCPU per host CPU)'));
  return Object.freeze({
    sites: Object.freeze(sites),
    hosts: Object.freeze(hosts),
    links: Object.freeze(links),
    endpoints,
    cpuOvercommit: overcommit,
    reserveMemoryKiB: num(root.reserveMemoryMiB, at('reserveMemoryMiB'), 0, true) * 1024,
  });
}

function parseLinks(raw: unknown, siteNames: Set<string>, at: (w: string) => string): Link[] {
  if (raw !== undefined && !Array.isArray(raw)) throw new UserError(at('"links" must be a list of { "sites": [A, B], "latencyMs", "bandwidthMbit", "transferPricePerGB" }'));
  const links: Link[] = [];
  const seen = new Set<string>();
  ((raw as unknown[] | undefined) ?? []).forEach((v, i) => {
    const w = `links[${i}]`;
    const o = object(v, at(w));
    keys(o, ['sites', 'latencyMs', 'bandwidthMbit', 'transferPricePerGB'], at(w));
    const s = o.sites;
    if (!Array.isArray(s) || s.length !== 2 || s.some((x) => typeof x !== 'string' || !siteNames.has(x)) || s[0] === s[1]) {
      throw new UserError(at(`${w}.sites must be two different sites from "sites" (${[...siteNames].join(', ')}), got ${JSON.stringify(s)}`));
    }
    const key = [...(s as string[])].sort().join('\u0000');
    if (seen.has(key)) throw new UserError(at(`${w} repeats the link ${s[0]}-${s[1]}: keep one`));
    seen.add(key);
    if (o.latencyMs === undefined || o.bandwidthMbit === undefined) throw new UserError(at(`${w} needs "latencyMs" and "bandwidthMbit"`));
    const bandwidthMbit = num(o.bandwidthMbit, at(`${w}.bandwidthMbit`), 0, true);
    if (bandwidthMbit <= 0) throw new UserError(at(`${w}.bandwidthMbit must be above 0`));
    links.push({
      sites: [s[0] as string, s[1] as string],
      latencyMs: num(o.latencyMs, at(`${w}.latencyMs`), 0, true),
      bandwidthMbit,
      transferPricePerGB: num(o.transferPricePerGB, at(`${w}.transferPricePerGB`), 0, true),
    });
  });
  const names = [...siteNames];
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      if (!seen.has([names[i]!, names[j]!].sort().join('\u0000'))) {
        throw new UserError(at(`no link between sites ${names[i]} and ${names[j]}: add { "sites": ["${names[i]}", "${names[j]}"], "latencyMs": ..., "bandwidthMbit": ... } to "links"`));
      }
    }
  }
  return links;
}

const zeroPrice: Price = { perVmHour: 0, perVcpuHour: 0, perGiBHour: 0 };

const RATE_KEYS = ['perVmHour', 'perVcpuHour', 'perGiBHour'] as const;

function price(raw: unknown, where: string, dflt: Price, opts: ParseOptions): Price {
  if (raw === undefined) return dflt;
  const o = object(raw, where);
  keys(o, [...RATE_KEYS, 'daily', 'schedule'], where);
  // A price given replaces the one it defaults to's schedule as a whole: a host's own rate is not overridden by its site's schedule.
  const daily = o.daily === undefined ? undefined : dailyRates(o.daily, `${where}.daily`);
  const schedule = o.schedule === undefined ? undefined : datedPrices(o.schedule, `${where}.schedule`, opts);
  return {
    perVmHour: num(o.perVmHour, `${where}.perVmHour`, dflt.perVmHour, true),
    perVcpuHour: num(o.perVcpuHour, `${where}.perVcpuHour`, dflt.perVcpuHour, true),
    perGiBHour: num(o.perGiBHour, `${where}.perGiBHour`, dflt.perGiBHour, true),
    ...(daily?.length && { daily }),
    ...(schedule?.length && { schedule }),
  };
}

/** The rates an entry gives (the others come from the price it changes). */
function partialRates(o: Obj, where: string): Partial<PriceRates> {
  const out: Partial<PriceRates> = {};
  for (const k of RATE_KEYS) if (o[k] !== undefined) out[k] = num(o[k], `${where}.${k}`, 0, true);
  return out;
}

const HOURS_RE = /^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$/;

function dailyRates(raw: unknown, where: string): DailyRate[] {
  if (!Array.isArray(raw)) throw new UserError(`${where} must be a list of { "hours": "22:00-06:00", "perVmHour": ... } (UTC)`);
  const out = raw.map((v, i): DailyRate => {
    const w = `${where}[${i}]`;
    const o = object(v, w);
    keys(o, ['hours', ...RATE_KEYS], w);
    const m = typeof o.hours === 'string' ? HOURS_RE.exec(o.hours) : null;
    if (!m) throw new UserError(`${w}.hours must be "HH:MM-HH:MM" in UTC, such as "22:00-06:00", got ${JSON.stringify(o.hours)}`);
    const start = Number(m[1]) * 60 + Number(m[2]);
    const end = (Number(m[3]) * 60 + Number(m[4])) % 1440;
    if (end === start) throw new UserError(`${w}.hours "${o.hours}" is empty or the whole day: for all day, set the price itself, not a daily rate`);
    const rates = partialRates(o, w);
    if (!Object.keys(rates).length) throw new UserError(`${w} gives no rate: add "perVmHour", "perVcpuHour" or "perGiBHour"`);
    return { hours: o.hours as string, start, end, rates };
  });
  const other = where.slice(where.lastIndexOf('.') + 1);
  out.forEach((d, i) => {
    if (i > 0 && d.start < out[i - 1]!.start)
      throw new UserError(`${where}[${i}] (${d.hours}) is listed after ${other}[${i - 1}] (${out[i - 1]!.hours}): list the hours in the order they start from 00:00`);
    for (let j = 0; j < i; j++) {
      if (minutesOverlap(out[j]!, d)) throw new UserError(`${where}[${i}] (${d.hours}) overlaps ${other}[${j}] (${out[j]!.hours}): an hour has one rate; shorten one of them`);
    }
  });
  return out;
}

/** The minute ranges [a, b) of a daily window within a day (two when it crosses midnight). */
const ranges = (d: Pick<DailyRate, 'start' | 'end'>): [number, number][] =>
  d.start < d.end
    ? [[d.start, d.end]]
    : [
        [d.start, 1440],
        [0, d.end],
      ];

function minutesOverlap(x: DailyRate, y: DailyRate): boolean {
  return ranges(x).some(([a, b]) => ranges(y).some(([c, e]) => a < e && c < b));
}

function datedPrices(raw: unknown, where: string, opts: ParseOptions): DatedPrice[] {
  if (!Array.isArray(raw)) throw new UserError(`${where} must be a list of { "from": "2026-12-01T00:00:00Z", "perVmHour": ... }, oldest first`);
  const out = raw.map((v, i): DatedPrice => {
    const w = `${where}[${i}]`;
    const o = object(v, w);
    keys(o, ['from', 'until', 'daily', ...RATE_KEYS], w);
    if (o.from === undefined) throw new UserError(`${w} has no "from": give the instant it starts, such as "2026-12-01T00:00:00Z"`);
    const from = time(o.from, `${w}.from`)!;
    const until = notPast(time(o.until, `${w}.until`), `${w}.until`, opts, 'remove the entry or give a later "until"');
    if (until !== undefined && until <= from) throw new UserError(`${w} ends (${iso(until)}) before it starts (${iso(from)}): "until" must be after "from"`);
    const rates = partialRates(o, w);
    const daily = o.daily === undefined ? undefined : dailyRates(o.daily, `${w}.daily`);
    if (!Object.keys(rates).length && daily === undefined) throw new UserError(`${w} changes nothing: add "perVmHour", "perVcpuHour", "perGiBHour" or "daily"`);
    return { from, ...(until !== undefined && { until }), rates, ...(daily && { daily }) };
  });
  const other = where.slice(where.lastIndexOf('.') + 1);
  out.forEach((d, i) => {
    const prev = out[i - 1];
    if (!prev) return;
    if (d.from <= prev.from)
      throw new UserError(`${where}[${i}] (from ${iso(d.from)}) is listed after ${other}[${i - 1}] (from ${iso(prev.from)}): list the entries oldest first, each from a later instant`);
    if (prev.until !== undefined && prev.until > d.from)
      throw new UserError(
        `${where}[${i - 1}] (until ${iso(prev.until)}) overlaps ${other}[${i}] (from ${iso(d.from)}): end it by ${iso(d.from)}, or leave "until" out (an entry holds until the next one starts)`,
      );
  });
  return out;
}

const iso = (ms: number) => new Date(ms).toISOString();

function notPast(t: number | undefined, where: string, opts: ParseOptions, fix: string): number | undefined {
  if (t !== undefined && opts.now !== undefined && t <= opts.now) throw new UserError(`${where} (${iso(t)}) is in the past: ${fix}`);
  return t;
}

/** The dated entry holding at `t`, if any. */
function datedAt(schedule: readonly DatedPrice[] | undefined, t: number): DatedPrice | undefined {
  if (!schedule) return undefined;
  let hit: DatedPrice | undefined;
  for (const d of schedule) if (d.from <= t) hit = d;
  return hit && (hit.until === undefined || t < hit.until) ? hit : undefined;
}

const DAY_MS = 86_400_000;

/** The rates in force at `t` (ms): the base, the dated entry holding then, the time-of-day rate holding then. */
export function priceAt(p: Price, t: number): PriceRates {
  let r: PriceRates = { perVmHour: p.perVmHour, perVcpuHour: p.perVcpuHour, perGiBHour: p.perGiBHour };
  let daily = p.daily;
  const d = datedAt(p.schedule, t);
  if (d) {
    r = { ...r, ...d.rates };
    if (d.daily) daily = d.daily;
  }
  if (daily?.length) {
    const minute = Math.floor((((t % DAY_MS) + DAY_MS) % DAY_MS) / 60_000);
    const w = daily.find((x) => ranges(x).some(([a, b]) => minute >= a && minute < b));
    if (w) r = { ...r, ...w.rates };
  }
  return r;
}

/**
 * The average rates over [from, to) (ms): what a VM hosted there for that whole time pays per hour.
 * Exact: the price is constant between the schedule's instants and the daily rates' edges, so it
 * is summed piece by piece. A price without a schedule is returned as it is.
 */
export function averageRates(p: Price, from: number, to: number): PriceRates {
  if (!p.schedule?.length && !p.daily?.length) return { perVmHour: p.perVmHour, perVcpuHour: p.perVcpuHour, perGiBHour: p.perGiBHour };
  if (!(to > from)) return priceAt(p, from);
  const cuts = new Set<number>([from, to]);
  const add = (t: number) => t > from && t < to && cuts.add(t);
  for (const d of p.schedule ?? []) {
    add(d.from);
    if (d.until !== undefined) add(d.until);
  }
  const lists = [p.daily, ...(p.schedule ?? []).map((d) => d.daily)].filter((l): l is readonly DailyRate[] => !!l?.length);
  if (lists.length) {
    for (let day = Math.floor(from / DAY_MS) * DAY_MS; day < to; day += DAY_MS) {
      for (const l of lists) {
        for (const w of l) {
          for (const [a, b] of ranges(w)) {
            add(day + a * 60_000);
            add(day + b * 60_000);
          }
        }
      }
    }
  }
  const at = [...cuts].sort((a, b) => a - b);
  const sum: PriceRates = { perVmHour: 0, perVcpuHour: 0, perGiBHour: 0 };
  for (let i = 0; i + 1 < at.length; i++) {
    const len = at[i + 1]! - at[i]!;
    const r = priceAt(p, at[i]!);
    for (const k of RATE_KEYS) sum[k] += r[k] * len;
  }
  for (const k of RATE_KEYS) sum[k] /= to - from;
  return sum;
}

function object(raw: unknown, where: string): Obj {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UserError(`${where} must be a JSON object`);
  return raw as Obj;
}

function keys(o: Obj, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new UserError(`${where} has unknown key "${k}": remove it or use one of ${allowed.join(', ')}`);
  }
}

function num(raw: unknown, where: string, dflt: number, nonNegative: boolean): number {
  if (raw === undefined) return dflt;
  if (typeof raw !== 'number' || !Number.isFinite(raw)) throw new UserError(`${where} must be a number, got ${JSON.stringify(raw)}`);
  if (nonNegative && raw < 0) throw new UserError(`${where} is ${raw}: it cannot be negative`);
  return raw;
}

function time(raw: unknown, where: string): number | undefined {
  if (raw === undefined) return undefined;
  const t = typeof raw === 'string' ? Date.parse(raw) : NaN;
  if (!Number.isFinite(t)) throw new UserError(`${where} must be an ISO date such as "2026-12-01T00:00:00Z", got ${JSON.stringify(raw)}`);
  return t;
}

/**
 * An environment in the file format parseEnvironment reads (prices on the hosts): what a trace
 * keeps, so that `parseEnvironment(environmentJson(env))` gives `env` back.
 */
export function environmentJson(env: Environment): object {
  const opt = <T>(v: T | undefined, f: (x: T) => unknown) => (v === undefined ? undefined : f(v));
  return {
    sites: Object.fromEntries(env.sites.map((s) => [s.name, { lanMbit: s.lanMbit, price: priceJson(s.price) }])),
    hosts: Object.fromEntries(
      env.hosts.map((h) => [
        h.name,
        {
          site: h.site,
          vcpus: h.vcpus,
          memoryGiB: opt(h.memoryKiB, (k) => k / 1048576),
          speed: h.speed,
          price: priceJson(h.price),
          availableUntil: opt(h.availableUntil, (t) => new Date(t).toISOString()),
        },
      ]),
    ),
    links: env.links.map((l) => ({ sites: [...l.sites], latencyMs: l.latencyMs, bandwidthMbit: l.bandwidthMbit, transferPricePerGB: l.transferPricePerGB })),
    endpoints: Object.fromEntries(env.endpoints),
    cpuOvercommit: env.cpuOvercommit,
    reserveMemoryMiB: env.reserveMemoryKiB / 1024,
  };
}

/** A price in the file format (the inverse of price()). */
export function priceJson(p: Price): object {
  const daily = (l: readonly DailyRate[]) => l.map((d) => ({ hours: d.hours, ...d.rates }));
  return {
    perVmHour: p.perVmHour,
    perVcpuHour: p.perVcpuHour,
    perGiBHour: p.perGiBHour,
    ...(p.daily && { daily: daily(p.daily) }),
    ...(p.schedule && {
      schedule: p.schedule.map((d) => ({ from: iso(d.from), ...(d.until !== undefined && { until: iso(d.until) }), ...d.rates, ...(d.daily && { daily: daily(d.daily) }) })),
    }),
  };
}
