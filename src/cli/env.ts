import { readFileSync } from 'node:fs';
import { hostname, userInfo } from 'node:os';
import { resolve } from 'node:path';
import { Command } from 'commander';
import type { Redis } from 'ioredis';
import { Registry, type EnvRecord } from '../collector/registry.js';
import { loadSettings } from '../config/load.js';
import { connectOnce } from '../config/redis.js';
import { parseEnvironment, priceAt, type DailyRate, type Environment, type Price, type PriceRates } from '../placement/env.js';
import { changeLine, diffEnvironments, setPath, splitAssignment } from '../placement/envEdit.js';
import { changeEnvironment, DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS, defaultEnvironmentJson, storedEnvironment, type EnvironmentChange } from '../placement/fromCollector.js';
import { UserError } from '../util/errors.js';
import { labTarget, loadLab } from './labs.js';
import { integer, printJson } from './options.js';
import { configOption, redisOption } from './settings.js';
import { table } from './table.js';

/**
 * `virt-cohort env`: the one environment of the cluster (sites, hosts, prices and their schedules,
 * links), kept in the collector's Redis with every version. Every command and the manager use it
 * unless given a file (--env, manager.environment) for themselves. Writing needs the manager's Redis
 * user (vc-manager), as the operator's other writes do (host drain, migrate).
 */
export function envCommand(): Command {
  const env = new Command('env').description(
    "the environment (sites, hosts, prices and their schedules, links) kept in the collector's Redis, versioned: the manager and every command use it (--env FILE overrides it for one command)",
  );
  const show = env.command('show');
  const apply = env.command('apply');
  const set = env.command('set');
  const history = env.command('history');
  target(configOption(show))
    .description('the environment in force, for a person (--json: the file itself)')
    .option('--at <version>', 'an earlier version, by its number (virt-cohort env history lists them)', integer)
    .option('--json', 'print the environment file (JSON), for env apply or --env')
    .action(async (o) =>
      withTarget(o, show, async (redis, lab) => {
        const stored = await storedEnvironment(redis, o.at);
        if (o.at !== undefined && !stored) throw new UserError(`there is no version ${o.at} (virt-cohort env history lists them)`);
        if (!stored) {
          const base = await baseEnvironment(redis, o, lab);
          process.stderr.write(
            `virt-cohort: no environment is stored in Redis: ${base ? `the one in use is ${base.what}` : 'no host is registered either'}; store one with virt-cohort env apply FILE\n`,
          );
          if (!base) return;
          if (o.json) return printJson(base.file);
          return void process.stdout.write(describe(parseEnvironment(base.file, base.what), Date.now()));
        }
        if (o.json) return printJson(stored.file);
        const head = `environment version ${stored.version} of ${new Date(stored.at).toISOString()}, by ${stored.by}: ${stored.source}`;
        const current = o.at === undefined ? '' : ` (the version in force is ${await new Registry(redis).environmentVersion()})`;
        process.stdout.write(`${head}${current}\n\n${describe(stored.env, Date.now())}`);
      }),
    );
  target(apply)
    .description('replace the environment with a file (validated as --env is, end times in the past refused); prints what changed')
    .argument('<file>', 'environment file, JSON (docs/placement.md, "Environment model")')
    .option('--json', 'print the new version and its changes as JSON')
    .action(async (file: string, o) =>
      withTarget(o, apply, async (redis) => {
        const raw = readJson(file);
        const r = await changeEnvironment(redis, () => raw, { source: `env apply ${resolve(file)}`, by: who(), what: file });
        await tellChange(redis, r, o.json);
      }),
    );
  target(configOption(set))
    .description('change one value by its path in the file format, e.g. sites.b.price.perVmHour=0.02 (null removes it); prints the change')
    .argument('<path=value>', 'PATH=VALUE: sites.NAME..., hosts.NAME..., links.A-B..., endpoints.ADDRESS, cpuOvercommit, reserveMemoryMiB; [N] for a list entry; VALUE is JSON, or text')
    .option('--json', 'print the new version and its changes as JSON')
    .action(async (expr: string, o) =>
      withTarget(o, set, async (redis, lab) => {
        const { path, value } = splitAssignment(expr);
        const base = (await new Registry(redis).environmentVersion()) ? undefined : await baseEnvironment(redis, o, lab);
        if (base) process.stderr.write(`virt-cohort: no environment is stored in Redis yet: this first version starts from ${base.what}\n`);
        const r = await changeEnvironment(
          redis,
          (cur) => {
            if (!cur) throw new UserError('no environment is stored in Redis and no host is registered to derive one from: give a whole one first (virt-cohort env apply FILE)');
            return setPath(cur, path, value).doc;
          },
          {
            source: `env set ${expr}`,
            by: who(),
            what: `the environment after ${path}=${JSON.stringify(value)}`,
            ...(base && { base: base.file }),
          },
        );
        await tellChange(redis, r, o.json);
      }),
    );
  target(history)
    .description('every version of the environment: when, by whom, from what, how many values changed')
    .option('--json', 'print every version, with its file, as JSON')
    .action(async (o) =>
      withTarget(o, history, async (redis) => {
        const reg = new Registry(redis);
        const [all, current] = await Promise.all([reg.environmentHistory(), reg.environmentVersion()]);
        if (o.json) return printJson(all);
        if (!all.length)
          return void process.stdout.write('no environment is stored in Redis: the commands and the manager derive one from the host registry (virt-cohort env apply FILE stores one)\n');
        process.stdout.write(
          `${table(
            ['VERSION', 'AT', 'BY', 'CHANGES', 'SOURCE'],
            all.map((v, i) => [`${v.version}${v.version === current ? ' *' : ''}`, new Date(v.at).toISOString(), v.by, changesSince(all[i - 1], v), v.source]),
          )}\n* in force\n`,
        );
      }),
    );
  return env;
}

const target = (c: Command) => c.addOption(redisOption()).option('--lab <name>', 'use the Redis of this lab (virt-cohort lab up) instead of --redis');

async function withTarget(o: { redis: string; lab?: string }, cmd: Command, fn: (redis: Redis, lab?: string) => Promise<void>): Promise<void> {
  const lab = await labTarget(cmd, o);
  const redis = await connectOnce(lab?.redis ?? o.redis);
  try {
    await fn(redis, o.lab);
  } finally {
    redis.disconnect();
  }
}

/** Who writes: the user who ran the command (through sudo: the one who ran sudo), at this host. */
function who(): string {
  return `${process.env.SUDO_USER || userInfo().username}@${hostname()}`;
}

function readJson(file: string): object {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UserError(`cannot read environment file ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as object;
  } catch (err) {
    throw new UserError(`environment file ${file} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The environment in use when none is stored: the lab's with --lab, else the one derived from the registry (as the commands derive it). */
async function baseEnvironment(redis: Redis, o: { config?: string | false }, lab?: string): Promise<{ file: object; what: string } | undefined> {
  if (lab) {
    const { requireLab, labEnvironment } = await loadLab();
    return { file: labEnvironment(await requireLab(lab)) as object, what: `the environment of lab '${lab}' (virt-cohort lab env)` };
  }
  const hosts = await new Registry(redis).hosts();
  if (!hosts.length) return undefined;
  const m = loadSettings({ file: o.config }).config.manager;
  return {
    file: defaultEnvironmentJson(hosts, { latencyMs: DEFAULT_LATENCY_MS, bandwidthMbit: DEFAULT_BANDWIDTH_MBIT, cpuOvercommit: m.cpuOvercommit, reserveMemoryMiB: m.reserveMemory }),
    what: `the one derived from the host registry (${DEFAULT_LATENCY_MS} ms and ${DEFAULT_BANDWIDTH_MBIT} Mbit/s between sites, prices 0)`,
  };
}

async function tellChange(redis: Redis, r: EnvironmentChange, json: boolean | undefined): Promise<void> {
  const known = new Set(await new Registry(redis).hostNames());
  const unregistered = r.env.hosts.map((h) => h.name).filter((h) => !known.has(h));
  if (json) return printJson({ version: r.version, previous: r.previous, changes: r.changes });
  if (r.version === r.previous) return void process.stdout.write(`no change: version ${r.version} stays in force\n`);
  process.stdout.write(`environment version ${r.version} in force (was ${r.previous || 'none stored'}); ${r.changes.length} change(s):\n${r.changes.map((c) => `  ${changeLine(c)}\n`).join('')}`);
  if (r.retries) process.stdout.write(`(made again on top of ${r.retries} change(s) written meanwhile by others)\n`);
  if (unregistered.length) process.stderr.write(`virt-cohort: host(s) ${unregistered.join(', ')} of the environment have no agent registered yet: they receive no VM until theirs reports\n`);
}

function changesSince(prev: EnvRecord | undefined, v: EnvRecord): string {
  return String(diffEnvironments(prev?.file, v.file).length);
}

const n = (x: number) => String(Math.round(x * 1e6) / 1e6);

/** Rates for a person: `0.05/VM-h + 0.01/GiB-h`; `0` when all are. */
function fmtRates(r: Partial<PriceRates>): string {
  const parts = [
    r.perVmHour !== undefined && (r.perVmHour || Object.keys(r).length === 1) ? `${n(r.perVmHour)}/VM-h` : '',
    r.perVcpuHour ? `${n(r.perVcpuHour)}/vCPU-h` : '',
    r.perGiBHour ? `${n(r.perGiBHour)}/GiB-h` : '',
  ].filter(Boolean);
  return parts.join(' + ') || '0';
}

const fmtDaily = (l: readonly DailyRate[]) => l.map((d) => `${d.hours} UTC ${fmtRates(d.rates)}`).join(', ');

/** A price's schedule in one line, or '-'. */
function fmtSchedule(p: Price): string {
  const out: string[] = [];
  if (p.daily) out.push(`daily ${fmtDaily(p.daily)}`);
  for (const d of p.schedule ?? []) {
    out.push(
      `from ${new Date(d.from).toISOString()}${d.until !== undefined ? ` until ${new Date(d.until).toISOString()}` : ''}: ${Object.keys(d.rates).length ? fmtRates(d.rates) : 'base rates'}${d.daily ? `, daily ${fmtDaily(d.daily)}` : ''}`,
    );
  }
  return out.join('; ') || '-';
}

/** The environment for a person: sites, hosts, links, endpoints, capacity rules; prices as they are at `now`. */
export function describe(env: Environment, now: number): string {
  const blocks = [
    table(
      ['SITE', 'LAN MBIT', 'PRICE NOW', 'SCHEDULE'],
      env.sites.map((s) => [s.name, s.lanMbit, fmtRates(priceAt(s.price, now)), fmtSchedule(s.price)]),
    ),
    env.hosts.length
      ? table(
          ['HOST', 'SITE', 'VCPUS', 'MEMORY GIB', 'SPEED', 'PRICE NOW', 'SCHEDULE', 'AVAILABLE UNTIL'],
          env.hosts.map((h) => {
            const site = env.sites.find((s) => s.name === h.site);
            const own = site?.price !== h.price;
            return [
              h.name,
              h.site,
              h.vcpus ?? '(agent)',
              h.memoryKiB === undefined ? '(agent)' : n(h.memoryKiB / 1048576),
              h.speed,
              fmtRates(priceAt(h.price, now)),
              own ? fmtSchedule(h.price) : "(the site's)",
              h.availableUntil === undefined ? '-' : new Date(h.availableUntil).toISOString(),
            ];
          }),
        )
      : 'no host listed: each registered host counts in its site, at speed 1 and price 0',
    env.links.length
      ? table(
          ['LINK', 'LATENCY MS', 'BANDWIDTH MBIT', 'TRANSFER PRICE/GB'],
          env.links.map((l) => [`${l.sites[0]}-${l.sites[1]}`, l.latencyMs, l.bandwidthMbit, n(l.transferPricePerGB)]),
        )
      : '',
    env.endpoints.size ? `endpoints: ${[...env.endpoints].map(([a, s]) => `${a} at ${s}`).join(', ')}` : '',
    `cpuOvercommit ${env.cpuOvercommit} vCPUs per host CPU; reserveMemoryMiB ${env.reserveMemoryKiB / 1024} kept free per host; prices per hour, in the environment's currency; schedule times UTC`,
  ];
  return `${blocks.filter(Boolean).join('\n\n')}\n`;
}
