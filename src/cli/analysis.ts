import { Command } from 'commander';
import type { Redis } from 'ioredis';
import { checkCohesive, COHESIVE_DEFAULTS, GROUP_METHODS, type Group } from '../analysis/index.js';
import { clusterGroups } from '../placement/view.js';
import type { TrafficMeasure } from '../analysis/graph.js';
import { connectOnce } from '../config/redis.js';
import { CONFIG_DEFAULTS, OBJECTIVES } from '../config/schema.js';
import { checkQuery, QUERY_TYPES, type QueryOptions, type QueryType } from '../collector/query.js';
import { parseDuration } from '../collector/span.js';
import { largestHost, loadEnvironment, type Environment } from '../placement/index.js';
import { fmtBytesRate, fmtSeconds } from '../placement/explain.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS, planFromCollector, readCollector, storedEnvironment, type CollectorView, type DefaultLinks } from '../placement/fromCollector.js';
import { Registry } from '../collector/registry.js';
import { UserError } from '../util/errors.js';
import { printJson } from './options.js';
import { labTarget } from './labs.js';
import { configuredRules, sayIssues } from './rules.js';
import { configOption, redisOption } from './settings.js';
import { EXIT_REFORMULATE, render } from './stats.js';
import { table } from './table.js';

const MEASURES: readonly TrafficMeasure[] = ['bytes', 'messages'];

/** Options every command that reads the collector and the environment shares (groups, plan, place). */
export function environmentOptions(cmd: Command, json = true): Command {
  cmd
    .addOption(redisOption())
    .option('--lab <name>', 'use the Redis of this lab (virt-cohort lab up) instead of --redis, and without --env its environment (virt-cohort lab env)')
    .option(
      '--env <file>',
      'environment file, JSON (sites, hosts, links, prices: see docs/placement.md), for this command only; default: the one stored in Redis (virt-cohort env), else every site and host of the registry, joined by --default-latency-ms and --default-bandwidth-mbit links, prices 0',
    )
    .option('--default-latency-ms <ms>', 'without --env: latency between two sites, ms', String(DEFAULT_LATENCY_MS))
    .option('--default-bandwidth-mbit <mbit>', 'without --env: bandwidth between two sites, Mbit/s', String(DEFAULT_BANDWIDTH_MBIT))
    .option('--cpu-overcommit <ratio>', 'without --env: vCPUs allowed per host CPU (as manager.cpuOvercommit)', String(CONFIG_DEFAULTS.manager.cpuOvercommit))
    .option('--reserve-memory <MiB>', 'without --env: memory kept free on every host, MiB (as manager.reserveMemory)', String(CONFIG_DEFAULTS.manager.reserveMemory));
  return json ? cmd.option('--json', 'print JSON, for scripts') : cmd;
}

/** The traffic query options (as `virt-cohort stats`, but weighted by default and without detail). */
function queryOptions(cmd: Command): Command {
  return cmd
    .option('--type <type>', 'mean|weighted: the plain average over the span, or each period counting --coefficient times the one before', 'weighted')
    .option('--coefficient <n>', 'weighted: how many times a period counts the one before it (> 0)', '2')
    .option('--span <n|duration>', 'periods of traffic to use, ending with the newest ended one: a count (10) or a duration (5m)', '10')
    .option('--wait <duration>', 'how long to wait for hosts that have not reported yet (e.g. 10s)', '0')
    .option('--approx', "if reports are still missing after the wait, estimate them from each host's period before");
}

export interface EnvironmentArgs {
  redis: string;
  /** The environment to use: --env FILE (a one-off override) as given; after inForce, the one in force. */
  env: Environment | undefined;
  /** The --env file's path, when one was given. */
  envFile?: string;
  defaults: DefaultLinks;
  /** With --lab: the lab's environment (its sites and shaped links), used when none is stored in Redis. */
  lab?: { env: Environment; note: string };
  /** After inForce: which environment is in use, for stderr. */
  note?: string;
  /** After inForce: the stored version in use (undefined: a file, a lab's or the registry's). */
  version?: number;
}

/** Checks the shared options before anything is connected, so that bad input exits 2 at once. */
export async function environmentArgs(cmd: Command, o: Record<string, string | boolean | undefined>): Promise<EnvironmentArgs> {
  const defaults: DefaultLinks = {
    latencyMs: nonNegative(String(o.defaultLatencyMs), '--default-latency-ms'),
    bandwidthMbit: nonNegative(String(o.defaultBandwidthMbit), '--default-bandwidth-mbit'),
    cpuOvercommit: nonNegative(String(o.cpuOvercommit), '--cpu-overcommit'),
    reserveMemoryMiB: nonNegative(String(o.reserveMemory), '--reserve-memory'),
  };
  if (!(defaults.bandwidthMbit > 0)) throw new UserError('--default-bandwidth-mbit must be above 0');
  if (!(defaults.cpuOvercommit! > 0 && defaults.cpuOvercommit! <= 64)) throw new UserError(`--cpu-overcommit '${o.cpuOvercommit}' must be above 0 and at most 64 (1 = one vCPU per host CPU)`);
  const env = typeof o.env === 'string' ? loadEnvironment(o.env) : undefined;
  const file = typeof o.env === 'string' ? { envFile: o.env } : {};
  const lab = await labTarget(cmd, o);
  if (!lab) return { redis: String(o.redis), env, defaults, ...file };
  // The lab knows its real delay and rate: better than the registry's defaults (a stored environment or an --env file wins).
  return { redis: lab.redis, env, defaults, ...file, lab: { env: lab.env, note: lab.note } };
}

/**
 * The environment in force for this command: an --env file (a one-off override, and the note says
 * of what), else the one stored in Redis (virt-cohort env), else the lab's with --lab, else none
 * (derived from the registry: tell says so).
 */
export async function inForce(redis: Redis, args: EnvironmentArgs): Promise<EnvironmentArgs> {
  if (args.env) {
    const v = await new Registry(redis).environmentVersion();
    const of = v ? `the environment stored in Redis (version ${v}, virt-cohort env show)` : 'the registry-derived environment (none is stored in Redis)';
    return { ...args, note: `--env ${args.envFile}: used for this command only, a one-off override of ${of}` };
  }
  const stored = await storedEnvironment(redis);
  if (stored) {
    const note = `using the environment stored in Redis: version ${stored.version} of ${new Date(stored.at).toISOString()} (${stored.source}; virt-cohort env show)`;
    return { ...args, env: stored.env, note, version: stored.version };
  }
  if (args.lab) return { ...args, env: args.lab.env, note: `no --env given and none stored in Redis: using the environment of ${args.lab.note} (virt-cohort lab env)` };
  return args;
}

function checkedQuery(o: Record<string, string | boolean | undefined>): QueryOptions {
  const type = String(o.type) as QueryType;
  if (type === 'detail' || !QUERY_TYPES.includes(type)) throw new UserError(`--type '${type}' is not usable here: use mean or weighted`);
  const coefficient = Number(o.coefficient);
  if (String(o.coefficient).trim() === '' || !Number.isFinite(coefficient)) throw new UserError(`--coefficient '${o.coefficient}' is not a number`);
  const q = { type, span: String(o.span), coefficient, approx: Boolean(o.approx), maxWaitMs: parseDuration(String(o.wait), '--wait') };
  checkQuery(q);
  return q;
}

export function nonNegative(value: string, what: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new UserError(`${what} '${value}' must be a number, 0 or more`);
  return n;
}

function oneOf<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value as T)) throw new UserError(`${what} '${value}' is not known: use one of ${allowed.join(', ')}`);
  return value as T;
}

/** Says on stderr what the reader should know about the environment that was used. */
export function tell(view: Pick<CollectorView, 'defaultEnvironment' | 'notes' | 'environment'>, args: EnvironmentArgs): void {
  const defaults = args.defaults;
  if (args.note) process.stderr.write(`virt-cohort: ${args.note}\n`);
  if (view.defaultEnvironment) {
    process.stderr.write(
      `virt-cohort: no --env given and none stored in Redis (virt-cohort env apply): using the registry's ${view.environment.sites.length} site(s) and ${view.environment.hosts.length} host(s), ` +
        `links of ${defaults.latencyMs} ms and ${defaults.bandwidthMbit} Mbit/s between sites, prices 0, ` +
        `${view.environment.cpuOvercommit} vCPUs per host CPU and ${view.environment.reserveMemoryKiB / 1024} MiB kept free per host\n`,
    );
  }
  for (const n of view.notes) process.stderr.write(`virt-cohort: ${n}\n`);
}

export async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = await connectOnce(url);
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

const exitNote = '\nExit status: 0 answered, 3 the collector handed the query back (the output says when it can be answered), 2 bad input or Redis unreachable.';

export function groupsCommand(): Command {
  const cmd = new Command('groups').description("communication groups of the running VMs, from the collector's traffic: members, traffic inside vs. out of each group");
  queryOptions(environmentOptions(cmd))
    .option('--method <m>', "cohesive: groups that no cheap split separates (see docs/groups.md); louvain: modularity, split to fit the largest host; seed: the seed's greedy algorithm", 'cohesive')
    .option('--measure <m>', 'bytes|messages: the traffic that defines a group', 'bytes')
    .option('--max-cut <share>', "cohesive: a set splits only where the traffic across is below this share of its boundary VMs' traffic", String(COHESIVE_DEFAULTS.maxCut))
    .option('--noise <share>', "cohesive: a pair below this share of either VM's strongest pair is noise", String(COHESIVE_DEFAULTS.noise))
    .option('--horizon <duration>', "a group is significant when its traffic over this time is at least its smallest member's memory (what one move sends)", '1h')
    .option('--floor <bytes/s>', 'a group is significant from this traffic inside it (bytes/s), instead of the --horizon rule')
    .option('--depth <n>', 'levels of splits shown below each group with --json (the text shows the first)', '1')
    .addHelpText('after', exitNote)
    .action(async (o) => {
      const method = oneOf(o.method, GROUP_METHODS, '--method');
      const measure = oneOf(o.measure, MEASURES, '--measure');
      const cohesive = { maxCut: Number(o.maxCut), noise: Number(o.noise), depth: wholeNumber(o.depth, '--depth') };
      checkCohesive(cohesive);
      const horizonSeconds = parseDuration(o.horizon, '--horizon') / 1000;
      if (!(horizonSeconds > 0)) throw new UserError(`--horizon '${o.horizon}' must be above 0 (e.g. 1h)`);
      const minBytes = o.floor === undefined ? undefined : nonNegative(String(o.floor), '--floor');
      const q = checkedQuery(o);
      let args = await environmentArgs(cmd, o);
      await withRedis(args.redis, async (redis) => {
        args = await inForce(redis, args);
        const view = await readCollector(redis, { query: q, env: args.env, defaults: args.defaults });
        tell(view, args);
        if (view.answer.status !== 'ok') return handBack(view, o.json);
        const limit = largestHost(view.environment);
        const out = clusterGroups(view, { method, measure, cohesive, horizonSeconds, ...(minBytes !== undefined && { minBytes }) });
        if (o.json)
          return printJson({
            method,
            measure,
            unit: measure === 'bytes' ? 'bytes/s' : 'messages/s',
            criterion: method === 'cohesive' ? { ...COHESIVE_DEFAULTS, ...cohesive } : undefined,
            answer: summary(view),
            groups: out,
          });
        const rate = (x: number) => (measure === 'bytes' ? fmtBytesRate(x) : `${x.toFixed(x < 10 ? 1 : 0)} msg/s`);
        const real = out.filter((grp) => grp.significant);
        const faint = out.filter((grp) => grp.members.length > 1 && !grp.significant);
        const alone = out.filter((grp) => grp.members.length === 1);
        process.stdout.write(`${view.vms.length} running VM(s), ${method} groups by ${measure}; traffic: ${describe(view)}\n\n`);
        if (!out.length) return void process.stdout.write('(no running VM in the directory)\n');
        process.stdout.write(
          real.length
            ? `${table(
                ['GROUP', 'VMS', 'INTERNAL', 'EXTERNAL', 'INSIDE', 'SPLIT COST', 'SITES', 'MEMBERS'],
                real.map((grp, i) => [
                  i + 1,
                  grp.members.length,
                  rate(grp.internal),
                  rate(grp.external),
                  pct(share(grp)),
                  grp.split ? pct(grp.split.share) : '-',
                  grp.sites.join(','),
                  grp.members.join(','),
                ]),
              )}\n`
            : 'no significant group\n',
        );
        process.stdout.write(`\ncapacity: ${capacityLine(view.environment)}\n`);
        const demand = new Map(view.vms.map((v) => [v.name, v]));
        for (const [i, grp] of real.entries()) {
          const line = method === 'cohesive' ? verdict(grp, cohesive.maxCut, rate) : '';
          const cpus = grp.members.reduce((x, m) => x + (demand.get(m)?.vcpus ?? 0), 0);
          const mem = grp.members.reduce((x, m) => x + (demand.get(m)?.memoryKiB ?? 0), 0);
          const big =
            cpus > limit.vcpus || mem > limit.memoryKiB
              ? ` Too big for one host: its ${grp.members.length} VMs need ${cpus} vCPUs and ${fmtGiB(mem)} GiB; ${method === 'louvain' ? 'louvain has split it into the groups shown' : `the planner splits it where it must, along its cheapest split${grp.split ? ` ({${grp.split.parts[0].members.join(' ')}} | {${grp.split.parts[1].members.join(' ')}})` : ''}`}.`
              : '';
          if (line || big) process.stdout.write(`  ${i + 1}: ${line}${big}\n`);
        }
        if (faint.length)
          process.stdout.write(
            `\n${faint.length} set(s) of VMs exchange too little to count as groups (below the floor: ${o.floor === undefined ? `split over the slowest link, they would lose less run time over ${o.horizon} than moving their smallest VM takes` : `${fmtBytesRate(minBytes!)} inside`}): ${faint.map((grp) => `{${grp.members.join(' ')}} ${rate(grp.internal)}`).join(', ')}\n`,
          );
        if (alone.length) process.stdout.write(`${alone.length} VM(s) in no group: ${alone.map((grp) => grp.members[0]).join(', ')}\n`);
      });
    });
  return cmd;
}

/** What one host can take, as groups and plan say it. */
function capacityLine(env: Environment): string {
  const limit = largestHost(env);
  return `the largest host offers ${fmtCpus(limit.vcpus)} vCPUs (${fmtCpus(limit.vcpus / env.cpuOvercommit)} CPUs x overcommit ${env.cpuOvercommit}) and ${fmtGiB(limit.memoryKiB)} GiB (after ${env.reserveMemoryKiB / 1024} MiB kept free)`;
}

const fmtCpus = (x: number) => (Number.isFinite(x) ? String(Math.round(x * 10) / 10) : 'unlimited');
const fmtGiB = (kib: number) => (Number.isFinite(kib) ? (kib / 1048576).toFixed(kib < 10 * 1048576 ? 2 : 0) : 'unlimited');
const pct = (x: number) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)} %`;
const share = (grp: Group) => (grp.internal + grp.external > 0 ? grp.internal / (grp.internal + grp.external) : 0);

/** Why a group is one: its cheapest split cuts too much of the traffic on the cut; and what ties it to the rest. */
function verdict(grp: Group, maxCut: number, rate: (x: number) => number | string): string {
  const inside =
    grp.members.length === 2
      ? `one pair: splitting it would cut all its ${rate(grp.internal)}`
      : grp.split
        ? `one group: its cheapest split ({${grp.split.parts[0].members.join(' ')}} | {${grp.split.parts[1].members.join(' ')}}) would cut ${rate(grp.split.cut)}, ${pct(grp.split.boundary)} of the traffic of the VMs on the cut (a set splits below ${pct(maxCut)})`
        : 'one group';
  const outside = grp.external > 0 ? `; what it exchanges with the rest (${rate(grp.external)}) is noise, or below ${pct(maxCut)} at every boundary` : '; it exchanges nothing with the rest';
  return `${inside + outside}.`;
}

function wholeNumber(v: string, what: string): number {
  if (!/^\s*\d+\s*$/.test(v)) throw new UserError(`${what} '${v}' is not a whole number, 0 or more`);
  return Number(v);
}

export function planCommand(): Command {
  const cmd = new Command('plan').description('the ordered migrations that bring communicating VMs together for an objective, each explained; or why nothing should move');
  configOption(queryOptions(environmentOptions(cmd)))
    .option('--objective <o>', 'time: run time lost to latency/bandwidth and slow hosts; cost: hosting + transfer prices; resources: hosts and links kept busy', 'time')
    .option('--horizon <duration>', 'a move is proposed only if the plan up to it pays back within this time (e.g. 30m, 1h)', '1h')
    .option('--max-moves <n>', 'at most this many migrations', '5')
    .option('--exclude <vm,...>', 'VMs that must not move (comma-separated)')
    .option('--measure <m>', 'bytes|messages: the traffic the group detectors seed the search with', 'bytes')
    .addHelpText('after', exitNote)
    .action(async (o) => {
      const objective = oneOf(o.objective, OBJECTIVES, '--objective');
      const measure = oneOf(o.measure, MEASURES, '--measure');
      const horizonSeconds = parseDuration(o.horizon, '--horizon') / 1000;
      if (!(horizonSeconds > 0)) throw new UserError(`--horizon '${o.horizon}' must be above 0 (e.g. 1h)`);
      if (!/^\s*\d+\s*$/.test(o.maxMoves)) throw new UserError(`--max-moves '${o.maxMoves}' is not a whole number, 0 or more`);
      const exclude: string[] =
        typeof o.exclude === 'string'
          ? o.exclude
              .split(',')
              .map((s: string) => s.trim())
              .filter(Boolean)
          : [];
      const q = checkedQuery(o);
      let args = await environmentArgs(cmd, o);
      const ruleConfig = configuredRules(o.config);
      await withRedis(args.redis, async (redis) => {
        args = await inForce(redis, args);
        const r = await planFromCollector(redis, {
          ruleConfig,
          query: q,
          env: args.env,
          defaults: args.defaults,
          objective,
          horizonSeconds,
          maxMoves: Number(o.maxMoves),
          exclude,
          measure,
        });
        tell(r, args);
        sayIssues(r.rules);
        const unknown = exclude.filter((x) => !r.vms.some((v) => v.name === x));
        if (unknown.length) process.stderr.write(`virt-cohort: --exclude names no running VM: ${unknown.join(', ')} (see virt-cohort stats --vms)\n`);
        if (!r.plan) return handBack(r, o.json);
        const p = r.plan;
        if (o.json) return printJson({ answer: summary(r), vms: r.vms.length, hosts: r.hosts.length, ...p });
        process.stdout.write(
          `plan for the ${p.objective} objective (${p.unit}), horizon ${fmtSeconds(p.horizonSeconds)}, at most ${o.maxMoves} move(s); ` +
            `${r.vms.length} running VM(s) on ${r.hosts.length} live host(s); traffic: ${describe(r)}\n`,
        );
        process.stdout.write(
          `inter-site traffic: ${fmtBytesRate(p.before.interSiteBytes)} now, ${fmtBytesRate(p.after.interSiteBytes)} after the plan; ` +
            `objective ${p.before.rate.toPrecision(3)} -> ${p.after.rate.toPrecision(3)}; hosts in use ${p.before.hostsUsed} -> ${p.after.hostsUsed}\n`,
        );
        process.stdout.write(`capacity: ${capacityLine(r.environment)}\n\n`);
        const rules = [...p.held.map((h) => `held by a rule: ${h}`), ...p.broken.map((b) => `RULE NOT KEPT: ${b}`)];
        if (p.moves.length === 0) {
          process.stdout.write(`no move: ${p.noMove}\n${rules.map((l) => `${l}\n`).join('')}`);
          return;
        }
        process.stdout.write(
          `${table(
            ['#', 'VM', 'FROM', 'TO', 'GAIN', 'MIGRATION', 'PAYBACK'],
            p.moves.map((m, i) => [i + 1, m.vm, `${m.from} (${m.fromSite})`, `${m.to} (${m.toSite})`, m.gain.toPrecision(3), fmtSeconds(m.migrationSeconds), fmtSeconds(m.paybackSeconds)]),
          )}\n\n`,
        );
        process.stdout.write(`${p.moves.map((m, i) => `${i + 1}. ${m.reason}`).join('\n')}\n`);
        if (rules.length) process.stdout.write(`\n${rules.join('\n')}\n`);
      });
    });
  return cmd;
}

function handBack(view: CollectorView, json: boolean | undefined): void {
  if (json) printJson(view.answer);
  else process.stdout.write(render(view.answer));
  process.exitCode = EXIT_REFORMULATE;
}

/** What traffic the result rests on, for the JSON output (the pairs themselves are in `virt-cohort stats`). */
function summary(view: CollectorView) {
  const a = view.answer;
  return {
    type: a.type,
    periods: a.periods,
    periodSeconds: a.periodSeconds,
    ...(a.status === 'ok' && { approximate: a.approximate, estimated: a.estimated, ...(a.type !== 'detail' && { pairs: a.pairs.length }) }),
    ...(a.type === 'weighted' && a.status === 'ok' && { coefficient: (a as { coefficient?: number }).coefficient }),
  };
}

function describe(view: CollectorView): string {
  const a = view.answer;
  if (a.status !== 'ok') return 'none';
  const what = a.type === 'weighted' ? `weighted (coefficient ${a.coefficient})` : a.type;
  const pairs = a.type === 'detail' ? 0 : a.pairs.length;
  return `${what} over ${a.periods.length} period(s) of ${a.periodSeconds} s, ${pairs} pair(s)${a.approximate ? ', APPROXIMATE' : ''}`;
}
