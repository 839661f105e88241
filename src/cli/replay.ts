import { stat, writeFile } from 'node:fs/promises';
import { Command } from 'commander';
import { loadSettings } from '../config/load.js';
import { connectChecked, redisLabel, withoutCredentials } from '../config/redis.js';
import { loadEnvironment } from '../placement/index.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS } from '../placement/fromCollector.js';
import { compare, HEADER, rowCells, strategies, type Row, type Variation } from '../replay/compare.js';
import { readTrace } from '../replay/read.js';
import { recordTrace } from '../replay/record.js';
import { DEFAULT_PING_PONG_ROUNDS } from '../replay/replay.js';
import { interSiteSvg } from '../replay/svg.js';
import { writeTrace, type Trace } from '../replay/trace.js';
import { UserError } from '../util/errors.js';
import { periodLabel } from '../util/period.js';
import { loadLab } from './labs.js';
import { managerSettings } from './manager.js';
import { integer } from './options.js';
import { configOption } from './settings.js';
import { table } from './table.js';

const time = (v: string, what: string) => {
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new UserError(`${what} '${v}' is not a time: write e.g. 2026-11-30T08:00:00Z`);
  return t;
};

export function recordCommand(): Command {
  return configOption(new Command('record'))
    .description("record the collector's periods, the VM directory, the host registry, the environment and the migrations into one trace file, to replay (virt-cohort replay)")
    .requiredOption('--out <file>', "the trace to write (gzip'd JSON lines)")
    .option('--span <n|duration>', 'periods to record, ending with the newest ended one: a count (2880) or a duration (1d, 6h)', '1d')
    .option('--from <time>', 'record the periods from this instant instead (ISO, e.g. 2026-11-30T00:00:00Z)')
    .option('--to <time>', 'with --from: up to this instant (default: now)')
    .option('--redis <url>', "the collector's Redis (default: the configuration's)")
    .option('--lab <name>', "this lab's Redis and environment")
    .action(async (o) => {
      if (o.to && !o.from) throw new UserError('--to needs --from: give the start of the range too, or use --span');
      const { config } = loadSettings({ file: o.config });
      const cfg = await managerSettings(config.manager, o.lab);
      let target = withoutCredentials(config.redis);
      if (o.lab) {
        const { requireLab, labRedisUrl } = await loadLab();
        target = { url: labRedisUrl(await requireLab(o.lab)) };
      } else if (o.redis) {
        // Another Redis than the configured one: its credentials and TLS, not the configuration's sentinels.
        const { sentinels: _s, primaryName: _p, sentinelPasswordFile: _f, ...data } = target.auth ?? {};
        target = { url: o.redis, ...(Object.keys(data).length && { auth: data }) };
      }
      const redis = await connectChecked(target.url, target.auth);
      let tr: Trace;
      try {
        tr = await recordTrace(redis, {
          ...(o.from ? { from: time(o.from, '--from'), ...(o.to && { to: time(o.to, '--to') }) } : { span: o.span }),
          ...(cfg.env && { env: cfg.env, envSource: config.manager.environment }),
          ...(cfg.defaultEnv && { defaultEnv: cfg.defaultEnv, defaultEnvSource: `lab ${o.lab}` }),
          defaults: { latencyMs: DEFAULT_LATENCY_MS, bandwidthMbit: DEFAULT_BANDWIDTH_MBIT, cpuOvercommit: cfg.cpuOvercommit, reserveMemoryMiB: cfg.reserveMemory },
          source: o.lab ? `lab ${o.lab}` : redisLabel(target.url, target.auth),
        });
      } finally {
        redis.disconnect();
      }
      await writeTrace(o.out, tr);
      const L = tr.periodSeconds;
      process.stderr.write(
        `recorded ${tr.periods.length} period(s) of ${L} s, ${periodLabel({ start: tr.periods[0]!.start, length: L })} to ${periodLabel({ start: tr.periods.at(-1)!.start + L, length: L })}: ` +
          `${tr.vms.length} VM(s), ${tr.hosts.length} host(s), ${tr.migrations.length} migration(s), ${tr.names.length} endpoint name(s), environment: ${tr.environments.map((e) => e.source).join('; then ')}; ${o.out} (${((await stat(o.out)).size / 1e6).toFixed(2)} MB)\n`,
      );
    });
}

const list = (v: string, prev: string[] = []) => [
  ...prev,
  ...v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
];

export function replayCommand(): Command {
  return configOption(new Command('replay'))
    .description("run the manager's decisions over a recorded trace, migrations simulated, and compare strategies and settings side by side (each option takes several values: a,b)")
    .argument('<trace>', 'a file written by virt-cohort record')
    .option('--method <list>', 'groups the planner starts from: cohesive (ours), louvain, seed', list)
    .option('--objective <list>', 'time, cost, resources', list)
    .option('--confirm-rounds <list>', 'rounds a move must be proposed in a row', list)
    .option('--horizon <list>', 'payback horizons (30m, 1h)', list)
    .option('--cooldown <list>', 'first cooldown after a move (10m)', list)
    .option('--max-moves <list>', 'migrations per round at most', list)
    .option('--coefficient <list>', "weight of a period against the one before it, in the rounds' reading", list)
    .option('--span <list>', 'periods each round reads', list)
    .option('--every <list>', 'a round every N periods', list)
    .option('--env <file>', 'judge the trace under this environment file instead of the one recorded (VMs on hosts it lacks become fixed endpoints)')
    .option('--ping-pong-rounds <n>', 'a move back to a host the VM left within this many rounds is a ping-pong move', integer, DEFAULT_PING_PONG_ROUNDS)
    .option('--svg <file>', 'draw the inter-site traffic over time, one line per strategy')
    .option('--json', 'print JSON, for scripts')
    .action(async (file: string, o) => {
      const loaded = loadSettings({ file: o.config });
      const { config } = loaded;
      // The configuration's rules, as the live manager takes them (the VMs' metadata rules come with the trace).
      const base = { ...(await managerSettings({ ...config.manager, environment: '' })), rules: config.rules, rulesFile: loaded.file ?? 'configuration' };
      const variation: Variation = {
        method: o.method,
        objective: o.objective,
        confirmRounds: o.confirmRounds,
        horizon: o.horizon,
        cooldown: o.cooldown,
        maxMoves: o.maxMoves,
        coefficient: o.coefficient,
        span: o.span,
        everyPeriods: o.every,
      };
      const list = strategies(base, variation);
      const env = o.env ? loadEnvironment(o.env) : undefined;
      const tr = await readTrace(file);
      const rows = compare(tr, list, { ...(env && { env }), pingPongRounds: o.pingPongRounds });
      if (o.svg)
        await writeFile(
          o.svg,
          interSiteSvg(
            rows.map((r) => ({ name: r.strategy, series: r.result.series, moves: r.result.moves.map((m) => m.at) })),
            tr.periodSeconds,
          ),
        );
      process.stdout.write(o.json ? `${JSON.stringify(json(tr, file, rows), null, 2)}\n` : render(tr, file, rows));
      for (const n of new Set(rows.flatMap((r) => r.result.notes))) process.stderr.write(`virt-cohort: ${n}\n`);
    });
}

function traceLine(tr: Trace, file: string): string {
  const L = tr.periodSeconds;
  const first = tr.periods[0];
  const span = first ? `${periodLabel({ start: first.start, length: L })} to ${periodLabel({ start: tr.periods.at(-1)!.start + L, length: L })}` : 'no period';
  return `${file}: ${tr.periods.length} period(s) of ${L} s, ${span}; ${tr.vms.length} VM(s) on ${tr.hosts.length} host(s); recorded from ${tr.source}`;
}

function render(tr: Trace, file: string, rows: Row[]): string {
  const lines = [traceLine(tr, file), ''];
  lines.push(table(HEADER, rows.map(rowCells)));
  lines.push(
    '',
    `INTER-SITE: bytes that crossed sites over the trace (share of the bytes whose sites are known); PING-PONG: moves back to a host left within the last N rounds; ` +
      `COST: inter-site transfer + migrations + hosting, in the environment's prices; TIME SPLIT: time a significant group spanned sites.`,
  );
  return `${lines.join('\n')}\n`;
}

function json(tr: Trace, file: string, rows: Row[]) {
  return {
    trace: { file, periods: tr.periods.length, periodSeconds: tr.periodSeconds, from: tr.periods[0]?.start, vms: tr.vms.length, hosts: tr.hosts.length, source: tr.source },
    strategies: rows.map(({ result, replaySeconds: _, ...r }) => ({ ...r, moves: r.moves, movesMade: result.moves, notes: result.notes })),
  };
}
