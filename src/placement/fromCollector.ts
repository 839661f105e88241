import { CONFIG_DEFAULTS, type Config } from '../config/schema.js';
import type { Redis } from 'ioredis';
import type { PairTraffic } from '../analysis/graph.js';
import { DEFAULT_PERIOD_SECONDS } from '../util/period.js';
import { query, type QueryOptions, type QueryResult } from '../collector/query.js';
import { Registry, type EnvRecord, type HostEntry, type VmEntry } from '../collector/registry.js';
import { IncompleteHostError, NoHostsError, UserError } from '../util/errors.js';
import { parseEnvironment, type Environment, type Host } from './env.js';
import { diffEnvironments, type Change } from './envEdit.js';
import { mergeLive, type HostInfo, type VmInfo } from './live.js';
import { planMoves, type Plan, type PlanOptions } from './plan.js';
import { rulesInForce, type RuleSet } from './rules.js';

/**
 * The adapter between the collector (Redis) and the pure placement library: a collector answer
 * becomes per-second PairTraffic, the VM directory becomes VmInfo, the host registry becomes
 * HostInfo, and an environment (a file, the one stored in Redis, or one derived from the registry)
 * is merged with them. Used by `virt-cohort groups|plan|place|env` and by the manager's rounds.
 */

/** Hosts seen within this many periods are live: they report capacity and may receive VMs. */
export const LIVE_PERIODS = 2;
/** Links of the environment derived from the registry when no file is given. */
export const DEFAULT_LATENCY_MS = 20;
export const DEFAULT_BANDWIDTH_MBIT = 1000;

/** What is assumed without an environment file: the links between the registry's sites, and the hosts' capacity rules. */
export interface DefaultLinks {
  latencyMs: number;
  bandwidthMbit: number;
  /** vCPUs per host CPU (manager.cpuOvercommit). */
  cpuOvercommit?: number;
  /** MiB kept free on every host (manager.reserveMemory). */
  reserveMemoryMiB?: number;
}

export interface CollectorReadOptions {
  /** The collector query; `type` must be 'mean' or 'weighted'. Defaults: weighted, coefficient 2, span 10. */
  query?: Partial<QueryOptions>;
  /** Environment file, already parsed; undefined: derived from the registry (see defaultEnvironment). */
  env?: Environment;
  /** Links of the derived environment. Default 20 ms, 1000 Mbit/s. */
  defaults?: Partial<DefaultLinks>;
  /** Clock (ms). Default Date.now(). */
  now?: number;
}

/** The round's inventory: who runs where, which hosts are live, and the environment built from them. */
export interface Inventory {
  /** Running VMs; a VM arriving by migration or on a silent host is pinned (it cannot be moved now). */
  vms: VmInfo[];
  /** Live hosts' inventory (lastSeen within LIVE_PERIODS periods). */
  hosts: HostInfo[];
  /** The whole registry, live or not, with uris. */
  registry: HostEntry[];
  /** The whole VM directory, as read (stopped VMs too). */
  directory: VmEntry[];
  /** The environment with the live inventory merged in. */
  environment: Environment;
  /** True when no file was given and the environment was derived from the registry. */
  defaultEnvironment: boolean;
  periodSeconds: number;
  /** Things the caller should tell a person (silent hosts, VMs left out). */
  notes: string[];
}

export interface CollectorView extends Inventory {
  /** The collector's answer as given (per period); 'reformulate' leaves `traffic` empty. */
  answer: QueryResult;
  /** Per-second traffic (the answer's per-period counts / period length). */
  traffic: PairTraffic[];
}

/** The rules of the configuration (its `rules:` and manager.exclude, and the file they came from). */
export interface RuleConfig {
  rules: Config['rules'];
  exclude?: readonly string[];
  file?: string | undefined;
}

export interface PlanFromCollectorOptions extends CollectorReadOptions, Omit<PlanOptions, 'now' | 'rules'> {
  /** The configuration's rules; the VMs' metadata rules are read from the directory in any case. */
  ruleConfig?: RuleConfig;
}

export interface PlanFromCollector extends CollectorView {
  /** null when the collector handed the query back (answer.status 'reformulate'). */
  plan: Plan | null;
  /** The rules the plan obeys, and what is wrong with them. */
  rules: RuleSet;
}

/** The rules in force for a view: the configuration's and those of the VMs' domain metadata, checked against the registry. */
export function rulesOf(view: Pick<Inventory, 'directory' | 'registry'>, cfg: RuleConfig = { rules: [] }): RuleSet {
  return rulesInForce(
    cfg,
    view.directory,
    view.registry.map((h) => ({ name: h.host, site: h.site })),
  );
}

/** One planning round over the collector: what `virt-cohort plan` prints and the manager executes. */
export async function planFromCollector(redis: Redis, opts: PlanFromCollectorOptions): Promise<PlanFromCollector> {
  const view = await readCollector(redis, opts);
  const rules = rulesOf(view, opts.ruleConfig);
  if (view.answer.status !== 'ok') return { ...view, plan: null, rules };
  const plan = planMoves(view.traffic, view.vms, view.environment, {
    rules: rules.rules,
    objective: opts.objective,
    now: opts.now ?? Date.now(),
    ...(opts.horizonSeconds !== undefined && { horizonSeconds: opts.horizonSeconds }),
    ...(opts.maxMoves !== undefined && { maxMoves: opts.maxMoves }),
    ...(opts.exclude !== undefined && { exclude: opts.exclude }),
    ...(opts.measure !== undefined && { measure: opts.measure }),
  });
  return { ...view, plan, rules };
}

/** Reads the answer, the directory and the registry once, and builds the round's environment. */
export async function readCollector(redis: Redis, opts: CollectorReadOptions = {}): Promise<CollectorView> {
  const now = opts.now ?? Date.now();
  const q: QueryOptions = { type: 'weighted', span: 10, coefficient: 2, ...opts.query, now };
  if (q.type === 'detail') throw new UserError('groups and plans need one figure per pair: use a mean or weighted query, not detail');
  const answer = await query(redis, q);
  const inventory = await readInventory(redis, { ...opts, now, periodSeconds: answer.periodSeconds });
  const traffic = answer.status === 'ok' && answer.type !== 'detail' ? perSecond(answer.pairs, answer.periodSeconds) : [];
  return { ...inventory, answer, traffic };
}

/** The directory, the registry and the environment, without traffic (initial placement needs no more). */
export async function readInventory(redis: Redis, opts: Omit<CollectorReadOptions, 'query'> & { periodSeconds?: number } = {}): Promise<Inventory> {
  const reg = new Registry(redis);
  const [registry, directory, settings] = await Promise.all([reg.hosts(), reg.vms(), reg.settings()]);
  return inventoryOf(registry, directory, { ...opts, periodSeconds: opts.periodSeconds ?? settings.periodSeconds ?? DEFAULT_PERIOD_SECONDS });
}

/** The round's inventory from a registry and a directory already read (from Redis, or from a trace by a replay). */
export function inventoryOf(registry: HostEntry[], directory: VmEntry[], opts: Omit<CollectorReadOptions, 'query'> & { periodSeconds: number }): Inventory {
  const now = opts.now ?? Date.now();
  if (registry.length === 0) {
    throw new NoHostsError();
  }
  const periodSeconds = opts.periodSeconds;
  const liveSince = now - LIVE_PERIODS * periodSeconds * 1000;
  const hosts = registry.filter((h) => h.lastSeen >= liveSince).map(hostInfo);
  const defaulted = opts.env === undefined;
  const base = opts.env ?? defaultEnvironment(registry, { ...defaultLinks, ...opts.defaults });
  const notes: string[] = registry
    .filter((h) => h.lastSeen < liveSince)
    .map((h) => `host ${h.host} has been silent for over ${LIVE_PERIODS} periods (${LIVE_PERIODS * periodSeconds} s): it receives no VM this round`);
  if (opts.env) notes.push(...differences(opts.env, registry));
  const environment = withSilentHosts(mergeLive(base, hosts, notes), registry, directory, notes);
  const known = new Set(environment.hosts.map((h) => h.name));
  const live = new Set(hosts.map((h) => h.name));
  const vms: VmInfo[] = [];
  for (const v of directory) {
    if (v.state !== 'running' && v.state !== 'arriving') continue;
    if (!known.has(v.host)) {
      notes.push(`VM ${v.name} is left out: its host ${v.host} is neither in the registry nor in the environment file`);
      continue;
    }
    // An arriving VM is mid-migration and a VM on a silent host cannot be reached: both keep their place.
    const pinned = v.pinned || v.optOut || v.state === 'arriving' || !live.has(v.host);
    vms.push({ name: v.name, host: v.host, site: v.site, memoryKiB: v.memoryKiB, vcpus: v.vcpus, ...(pinned && { pinned }) });
  }
  return { vms, hosts, registry, directory, environment, defaultEnvironment: defaulted, periodSeconds, notes };
}

/** Where an environment file and the registry disagree on hosts: listed, so that the command goes on with what is known. */
function differences(env: Environment, registry: readonly HostEntry[]): string[] {
  const inFile = new Map(env.hosts.map((h) => [h.name, h.site]));
  const registered = new Map(registry.map((h) => [h.host, h.site]));
  const out: string[] = [];
  const sites = new Set(env.sites.map((s) => s.name));
  // A host of a site the file does not define is left out by mergeLive, with its own note.
  const unlisted = [...registered.keys()].filter((h) => !inFile.has(h) && sites.has(registered.get(h)!)).sort();
  const unknown = [...inFile.keys()].filter((h) => !registered.has(h)).sort();
  if (unlisted.length) out.push(`the environment file does not list registered host(s) ${unlisted.join(', ')}: each is taken as the registry has it (speed 1, price 0); add it to the file`);
  if (unknown.length) out.push(`the environment file lists host(s) ${unknown.join(', ')} that no agent has registered: they receive no VM until their agent reports`);
  return out;
}

const defaultLinks: DefaultLinks = { latencyMs: DEFAULT_LATENCY_MS, bandwidthMbit: DEFAULT_BANDWIDTH_MBIT };

/** Collector pairs are counts per period; placement works in rates. */
export function perSecond(pairs: readonly PairTraffic[], periodSeconds: number): PairTraffic[] {
  return pairs.map((p) => ({ src: p.src, dst: p.dst, messages: p.messages / periodSeconds, bytes: p.bytes / periodSeconds }));
}

export function hostInfo(h: HostEntry): HostInfo {
  return { name: h.host, site: h.site, cpus: h.cpus, memoryKiB: h.memoryKiB, freeMemoryKiB: h.freeMemoryKiB };
}

/**
 * The environment when no file is given: every site and host of the registry, every pair of sites
 * joined by the same link, prices 0. Capacity comes from the live inventory at merge time.
 */
export function defaultEnvironment(registry: readonly HostEntry[], links: DefaultLinks = defaultLinks): Environment {
  return parseEnvironment(defaultEnvironmentJson(registry, links), 'default environment');
}

export function defaultEnvironmentJson(registry: readonly HostEntry[], links: DefaultLinks = defaultLinks): object {
  const bad = registry.find((h) => h.site === '');
  if (bad) throw new IncompleteHostError(bad.host, 'site');
  const sites = [...new Set(registry.map((h) => h.site))].sort();
  return {
    cpuOvercommit: links.cpuOvercommit ?? CONFIG_DEFAULTS.manager.cpuOvercommit,
    reserveMemoryMiB: links.reserveMemoryMiB ?? CONFIG_DEFAULTS.manager.reserveMemory,
    sites: Object.fromEntries(sites.map((s) => [s, {}])),
    hosts: Object.fromEntries(registry.map((h) => [h.host, { site: h.site }])),
    links: sites.flatMap((a, i) =>
      sites.slice(i + 1).map((b) => ({
        sites: [a, b],
        latencyMs: links.latencyMs,
        bandwidthMbit: links.bandwidthMbit,
        transferPricePerGB: 0,
      })),
    ),
  };
}

/**
 * Hosts that registered once but are silent now and that the file does not list: VMs may still run
 * there, so they are kept as non-destinations in their registered site (if the environment has it).
 */
function withSilentHosts(env: Environment, registry: readonly HostEntry[], directory: readonly VmEntry[], notes: string[]): Environment {
  const known = new Set(env.hosts.map((h) => h.name));
  const sites = new Set(env.sites.map((s) => s.name));
  const used = new Set(directory.filter((v) => v.state === 'running' || v.state === 'arriving').map((v) => v.host));
  const extra: Host[] = [];
  for (const h of registry) {
    if (known.has(h.host) || !used.has(h.host)) continue;
    if (!sites.has(h.site)) continue; // its VMs are then left out, with a note
    notes.push(`host ${h.host} is silent and not in the environment file: its VMs stay where they are this round`);
    extra.push({
      name: h.host,
      site: h.site,
      vcpus: h.cpus,
      memoryKiB: h.memoryKiB,
      freeMemoryKiB: h.freeMemoryKiB,
      speed: 1,
      price: { perVmHour: 0, perVcpuHour: 0, perGiBHour: 0 },
      availableUntil: undefined,
      reporting: false,
    });
  }
  return extra.length ? Object.freeze({ ...env, hosts: Object.freeze([...env.hosts, ...extra]) }) : env;
}

/** A version of the environment stored in Redis, parsed. */
export interface StoredEnvironment extends EnvRecord {
  env: Environment;
}

/** The environment stored in Redis (`version`, default the one in force), validated; undefined when none is stored. */
export async function storedEnvironment(redis: Redis, version?: number): Promise<StoredEnvironment | undefined> {
  const rec = await new Registry(redis).environment(version);
  if (!rec) return undefined;
  return { ...rec, env: parseEnvironment(rec.file, `the environment stored in Redis, version ${rec.version}`) };
}

/** What changeEnvironment did. */
export interface EnvironmentChange {
  /** The version in force now: the new one, or the one before when nothing changed. */
  version: number;
  /** The version the change was made from (0: none was stored). */
  previous: number;
  changes: Change[];
  file: object;
  env: Environment;
  /** How many times another writer got in first and the edit was made again. */
  retries: number;
}

export interface ChangeMeta {
  /** What writes it (`env apply FILE`, `env set EXPR`) and who (user@host). */
  source: string;
  by: string;
  /** The document an edit starts from when none is stored (the environment derived from the registry, or a lab's). */
  base?: object;
  /** Clock (ms): end times at or before it are refused. Default Date.now(). */
  now?: number;
  /** What the new document is called in its errors (a file's path). Default: the new environment. */
  what?: string;
}

/**
 * Writes a new version of the environment: `edit` turns the version in force (or `meta.base` when
 * none is stored) into the new document, which is validated as a file is, end times in the past
 * refused. The write is a compare-and-set on the version: when another writer got in first, the
 * edit is made again on its version, so concurrent changes are applied one after the other and
 * none is lost. Nothing is written when the document is invalid (the version in force stays) or
 * when it changes nothing. `changes` are against the document the edit started from.
 */
export async function changeEnvironment(redis: Redis, edit: (current: object | undefined) => object, meta: ChangeMeta): Promise<EnvironmentChange> {
  const reg = new Registry(redis);
  for (let retries = 0; retries < 100; retries++) {
    const cur = await reg.environment();
    const previous = cur?.version ?? (await reg.environmentVersion());
    const start = cur?.file ?? meta.base;
    const file = edit(start && structuredClone(start));
    const now = meta.now ?? Date.now();
    const env = parseEnvironment(file, meta.what ?? 'the new environment', { now });
    const changes = diffEnvironments(start, file);
    if (!changes.length && cur) return { version: previous, previous, changes, file, env, retries };
    const put = await reg.putEnvironment(previous, { at: now, source: meta.source, by: meta.by, file });
    if (put.written) return { version: put.version, previous, changes, file, env, retries };
    // Another writer got in first: a short random pause, then the edit again on its version.
    await new Promise((r) => setTimeout(r, Math.random() * 20));
  }
  throw new UserError('the environment kept changing under this change (100 tries): try again');
}
