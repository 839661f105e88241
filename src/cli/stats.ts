import { Command } from 'commander';
import type { Redis } from 'ioredis';
import { DEFAULT_PERIOD_SECONDS, periodLabel } from '../util/period.js';
import { connectOnce } from '../config/redis.js';
import { checkQuery, DEFAULT_COEFFICIENT, query, QUERY_TYPES, type Pair, type QueryResult, type QueryType } from '../collector/query.js';
import { Registry, sensorLabel } from '../collector/registry.js';
import { parseDuration } from '../collector/span.js';
import { UserError } from '../util/errors.js';
import { printJson } from './options.js';
import { labTarget } from './labs.js';
import { redisOption } from './settings.js';
import { table } from './table.js';

/** Exit code when the collector hands the query back (reformulate). */
export const EXIT_REFORMULATE = 3;

export function statsCommand(): Command {
  const cmd: Command = new Command('stats')
    .description("the collector's traffic per VM pair over the newest periods (the seed's detail, mean and weighted queries), or its host registry and VM directory")
    .addOption(redisOption())
    .option('--lab <name>', 'use the Redis of this lab (virt-cohort lab up) instead of --redis')
    .option('--type <type>', `${QUERY_TYPES.join('|')}: every period; the plain average; each period counting --coefficient times the one before`, 'mean')
    .option('--coefficient <n>', 'weighted: how many times a period counts the one before it (> 0)', String(DEFAULT_COEFFICIENT))
    .option('--span <n|duration>', 'periods to cover, ending with the newest ended one: a count (10) or a duration (5m, rounded up to whole periods)', '10')
    .option('--wait <duration>', 'how long to wait for hosts that have not reported yet (e.g. 10s; a bare number is seconds)', '0')
    .option('--approx', "if reports are still missing after the wait, estimate them from each host's period before (flagged in the answer)")
    .option('--vm <name>', 'only the pairs with this VM on either side')
    .option('--top <n>', 'print only the first N pairs (of each period with --type detail)')
    .option('--period <s>', `period length in seconds (default: vc:{vc}:settings periodSeconds, else ${DEFAULT_PERIOD_SECONDS})`)
    .option('--grace <duration>', 'a host silent for longer is dead and no longer awaited (default: 2 periods)')
    .option('--hosts', 'print the host registry instead')
    .option('--vms', 'print the VM directory instead')
    .option('--json', 'print JSON, for scripts')
    .addHelpText('after', '\nExit status: 0 answered, 3 handed back (reformulate: the output says when it can be answered), 2 bad input or Redis unreachable.')
    .action(async (o) => {
      // Checked before connecting, and as UserErrors so that every bad input exits 2.
      const coefficient = numeric(o.coefficient, '--coefficient');
      const top = o.top === undefined ? undefined : positive(o.top, '--top');
      const period = o.period === undefined ? undefined : positive(o.period, '--period');
      const maxWaitMs = parseDuration(o.wait, '--wait');
      const graceMs = o.grace === undefined ? undefined : parseDuration(o.grace, '--grace');
      const options = checkQuery({
        type: o.type as QueryType,
        span: o.span,
        coefficient,
        approx: Boolean(o.approx),
        maxWaitMs,
        ...(o.vm !== undefined ? { vm: o.vm } : {}),
        ...(period !== undefined ? { periodSeconds: period } : {}),
        ...(graceMs !== undefined ? { graceMs } : {}),
      });
      const redis = await connectOnce((await labTarget(cmd, o))?.redis ?? o.redis);
      try {
        if (o.hosts) return await printHosts(redis, o.json, graceMs);
        if (o.vms) return await printVms(redis, o.json);
        const result = await query(redis, { ...options, now: Date.now() });
        if (top !== undefined && result.status === 'ok') {
          if (result.type === 'detail') for (const d of result.detail) d.pairs = d.pairs.slice(0, top);
          else result.pairs = result.pairs.slice(0, top);
        }
        if (o.json) printJson(result);
        else process.stdout.write(render(result));
        if (result.status === 'reformulate') process.exitCode = EXIT_REFORMULATE;
      } finally {
        redis.disconnect();
      }
    });
  return cmd;
}

function positive(value: string, what: string): number {
  if (!/^\s*\d+\s*$/.test(value) || Number(value) < 1) throw new UserError(`${what} '${value}' is not a positive whole number`);
  return Number(value);
}

function numeric(value: string, what: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UserError(`${what} '${value}' is not a number`);
  return n;
}

const label = (start: number, length: number) => periodLabel({ start, length });
const time = (start: number, length: number) => label(start, length).slice(11, 19);

/** Whole numbers as they are; means with one decimal. */
export function fmt(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

export function render(r: QueryResult): string {
  const L = r.periodSeconds;
  const n = r.periods.length;
  const from = label(r.periods[0]!, L);
  const to = label(r.periods[n - 1]! + L, L);
  if (r.status === 'reformulate') {
    // Hosts missing: by then each has reported or is counted dead. Too few periods: the earliest the span can exist.
    const when = r.answerableAt === null ? 'not as asked' : `${new Date(r.answerableAt).toISOString()} ${r.missing.length ? 'at the latest' : 'at the earliest'}`;
    return `cannot answer ${r.type} over ${n} period(s) of ${L} s (${from} to ${to}) yet: ${r.reason}\nanswerable: ${when}\n`;
  }
  const what = r.type === 'weighted' ? `weighted (coefficient ${r.coefficient})` : r.type;
  const how = r.approximate
    ? `APPROXIMATE: estimated ${r.estimated.map((e) => `${e.host} in ${time(e.period, L)}` + (e.from === null ? ' as zero (no earlier report)' : ` from ${time(e.from, L)}`)).join(', ')}`
    : 'exact';
  const head = `${what} over ${n} period(s) of ${L} s, ${from} to ${to}, ${how}\n\n`;
  const row = (p: Pair) => [p.src, p.dst, fmt(p.messages), fmt(p.bytes)];
  if (r.type === 'detail') {
    const rows = r.detail.flatMap((d) => d.pairs.map((p) => [time(d.period, L), ...row(p)]));
    return `${head + (rows.length ? table(['PERIOD', 'SRC', 'DST', 'MESSAGES', 'BYTES'], rows) : '(no traffic)')}\n`;
  }
  const unit = r.type === 'mean' ? 'MEAN' : 'WEIGHTED';
  return `${head + (r.pairs.length ? table(['SRC', 'DST', `${unit} MSG/PERIOD`, `${unit} BYTES/PERIOD`], r.pairs.map(row)) : '(no traffic)')}\n`;
}

async function printHosts(redis: Redis, json: boolean, grace: number | undefined): Promise<void> {
  const registry = new Registry(redis);
  const settings = await registry.settings();
  const graceMs = grace ?? 2 * (settings.periodSeconds ?? DEFAULT_PERIOD_SECONDS) * 1000;
  const now = Date.now();
  const hosts = (await registry.hosts()).map((h) => ({ ...h, live: h.lastSeen >= now - graceMs }));
  if (json) return printJson(hosts);
  const age = (ms: number) => (ms ? `${Math.round((now - ms) / 1000)} s ago` : '-');
  process.stdout.write(
    `${
      hosts.length
        ? table(
            ['HOST', 'SITE', 'STATE', 'VMS', 'CPUS', 'MEMORY MiB', 'FREE MiB', 'SENSOR', 'LAST SEEN', 'URI'],
            hosts.map((h) => [h.host, h.site, h.live ? 'live' : 'dead', h.vms, h.cpus, Math.round(h.memoryKiB / 1024), Math.round(h.freeMemoryKiB / 1024), sensorLabel(h), age(h.lastSeen), h.uri]),
          )
        : '(no host has registered)'
    }\n`,
  );
}

async function printVms(redis: Redis, json: boolean): Promise<void> {
  const vms = await new Registry(redis).vms();
  if (json) return printJson(vms);
  process.stdout.write(
    `${
      vms.length
        ? table(
            ['VM', 'HOST', 'SITE', 'STATE', 'VCPUS', 'MEMORY MiB', 'MAC', 'ADDRESSES'],
            vms.map((v) => [v.name, v.host, v.site, v.state, v.vcpus, Math.round(v.memoryKiB / 1024), v.mac, v.addresses.join(',') || '-']),
          )
        : '(no VM in the directory)'
    }\n`,
  );
}
