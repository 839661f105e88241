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
 * PRICE = { "perVmHour": 0.05, "perVcpuHour": 0, "perGiBHour": 0 }   all default 0, currency is yours.
 * Every pair of sites needs a link: a missing one is an error, not a guess.
 */
export interface Price {
  perVmHour: number;
  perVcpuHour: number;
  perGiBHour: number;
}

export interface Site {
  name: string;
  lanMbit: number;
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

export function parseEnvironment(raw: unknown, source = 'environment'): Environment {
  const at = (where: string) => `${source}: ${where}`;
  const root = object(raw, at('the top level'));
  keys(root, ['sites', 'hosts', 'links', 'endpoints', 'cpuOvercommit', 'reserveMemoryMiB'], at('the top level'));
  const siteObjs = object(root.sites, at('"sites"'));
  const sitePrice = new Map<string, Price>();
  const sites: Site[] = Object.entries(siteObjs).map(([name, v]) => {
    const o = object(v, at(`sites.${name}`));
    keys(o, ['lanMbit', 'price'], at(`sites.${name}`));
    sitePrice.set(name, price(o.price, at(`sites.${name}.price`), zeroPrice));
    return { name, lanMbit: num(o.lanMbit, at(`sites.${name}.lanMbit`), 10000, true) };
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
      price: price(o.price, at(`${w}.price`), sitePrice.get(o.site)!),
      availableUntil: time(o.availableUntil, at(`${w}.availableUntil`)),
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

function price(raw: unknown, where: string, dflt: Price): Price {
  if (raw === undefined) return dflt;
  const o = object(raw, where);
  keys(o, ['perVmHour', 'perVcpuHour', 'perGiBHour'], where);
  return {
    perVmHour: num(o.perVmHour, `${where}.perVmHour`, dflt.perVmHour, true),
    perVcpuHour: num(o.perVcpuHour, `${where}.perVcpuHour`, dflt.perVcpuHour, true),
    perGiBHour: num(o.perGiBHour, `${where}.perGiBHour`, dflt.perGiBHour, true),
  };
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
    sites: Object.fromEntries(env.sites.map((s) => [s.name, { lanMbit: s.lanMbit }])),
    hosts: Object.fromEntries(
      env.hosts.map((h) => [
        h.name,
        {
          site: h.site,
          vcpus: h.vcpus,
          memoryGiB: opt(h.memoryKiB, (k) => k / 1048576),
          speed: h.speed,
          price: { ...h.price },
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
