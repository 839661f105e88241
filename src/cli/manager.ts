import { Command } from 'commander';
import { Registry } from '../collector/registry.js';
import { parseDuration } from '../collector/span.js';
import { loadSettings } from '../config/load.js';
import { connectChecked, connectDaemon, connectOnce, withoutCredentials } from '../config/redis.js';
import { CONFIG_DEFAULTS, type Config } from '../config/schema.js';
import { execute } from '../manager/executor.js';
import { readHistory } from '../manager/history.js';
import { LeaderLock } from '../manager/lock.js';
import { managerConfig, type ManagerConfig } from '../manager/config.js';
import { Manager, type Round } from '../manager/manager.js';
import { routePolicy, RouteVetter, trustedRoutes, type RoutePolicy } from '../manager/trust.js';
import { describeHold, whyHeld, type Hold } from '../manager/safety.js';
import { managerMetrics } from '../metrics/registry.js';
import { startMetricsServer } from '../metrics/server.js';
import { readCollector, rulesOf } from '../placement/fromCollector.js';
import { CertWatch } from '../manager/certs.js';
import { drainMoves } from '../manager/decide.js';
import { loadEnvironment, parseEnvironment, type Environment } from '../placement/index.js';
import { moveBreaks } from '../placement/rules.js';
import { UserError } from '../util/errors.js';
import { configureLogging, logger } from '../util/log.js';
import { loadLab } from './labs.js';
import { integer, printJson } from './options.js';
import { configuredRules } from './rules.js';
import { configOption, redisOption, settingFlags, settingOptions } from './settings.js';
import { table } from './table.js';

const labOption = (c: Command) => c.option('--lab <name>', "use this lab's Redis (and, for the manager, its environment)");
const redisOpts = (c: Command) => labOption(c.addOption(redisOption()));

export async function redisUrl(o: { redis: string; lab?: string }): Promise<string> {
  if (!o.lab) return o.redis;
  const { requireLab, labRedisUrl } = await loadLab();
  return labRedisUrl(await requireLab(o.lab));
}

const log = logger('manager');

export function managerCommand(): Command {
  return settingOptions(configOption(labOption(new Command('manager'))), 'manager')
    .description('the closed loop: every few periods, as the single leader, plan from the collector and live-migrate (dry run unless --apply)')
    .option('--once', 'one round now, print it, exit')
    .option('--json', 'print each round as a JSON line')
    .action(async (o) => {
      const loaded = loadSettings({ file: o.config, flags: settingFlags(o, 'manager') });
      const { config } = loaded;
      // A daemon logs to stdout for journald; `--once` is a command and keeps stderr.
      configureLogging({ to: o.once ? 'stderr' : 'stdout', pretty: config.log.pretty, level: config.log.level });
      const cfg = { ...(await managerSettings(config.manager, o.lab)), rules: config.rules, rulesFile: loaded.file ?? 'configuration' };
      const target = o.lab ? { url: await redisUrl(o) } : withoutCredentials(config.redis);
      // The daemon's rounds report Redis trouble themselves and it retries for ever (connectDaemon warns of
      // refused credentials or TLS); --once is a command: it gives up within its bound, saying why.
      const redis = o.once ? await connectChecked(target.url, target.auth) : connectDaemon(target.url, target.auth, log);
      const lock = new LeaderLock(redis, cfg.lockTtlMs);
      managerMetrics.watchLeader(lock);
      managerMetrics.watchRedis(redis);
      const metrics = !o.once && config.manager.metricsPort ? await startMetricsServer(config.manager.metricsPort, config.manager.metricsBind) : undefined;
      const print = (r: Round) => process.stdout.write(o.json ? `${JSON.stringify(roundJson(r))}\n` : renderRound(r));
      const m = new Manager(redis, cfg, lock, print);
      if (o.once) {
        try {
          print(await m.round());
        } finally {
          await lock.stop();
          redis.disconnect();
        }
        return;
      }
      m.start();
      process.stderr.write(`manager ${lock.id}: ${cfg.apply ? 'APPLY: migrations will be made' : 'dry run (add --apply to migrate)'}; a round every ${cfg.everyPeriods} period(s)\n`);
      await new Promise<void>((resolve) => {
        const stop = () =>
          void m
            .stop()
            .then(() => metrics?.close())
            .finally(() => {
              redis.disconnect();
              resolve();
            });
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
      });
    });
}

/** The routes the manager's configuration vouches for (the lab's own with --lab). */
async function managerRoutes(m: Config['manager'], lab?: string): Promise<RoutePolicy> {
  if (typeof lab !== 'string') return routePolicy(m);
  const { requireLab, labRoutes } = await loadLab();
  return labRoutes(await requireLab(lab));
}

/** The same, from the configuration file (`file`: as loadSettings takes it) and the environment. */
export function configuredRoutes(file?: string | false, lab?: string): Promise<RoutePolicy> {
  return managerRoutes(loadSettings({ file }).config.manager, lab);
}

/** The manager's section of the (validated) configuration as the Manager's settings; `lab` supplies the environment when no file does, and the routes. */
export async function managerSettings(m: Config['manager'], lab?: string): Promise<ManagerConfig> {
  let env: Environment | undefined;
  let defaultEnv: Environment | undefined;
  // A file is a one-off override of the environment stored in Redis; a lab's stands in only when none is stored.
  if (m.environment) env = loadEnvironment(m.environment);
  else if (typeof lab === 'string') {
    const { requireLab, labEnvironment } = await loadLab();
    defaultEnv = parseEnvironment(labEnvironment(await requireLab(lab)), `lab ${lab}`);
  }
  return { ...managerConfig({ ...m, ...(await managerRoutes(m, lab)) }, env), ...(env && { envSource: m.environment }), ...(defaultEnv && { defaultEnv }) };
}

function roundJson(r: Round) {
  return {
    round: r.n,
    at: new Date(r.at).toISOString(),
    interSite: r.interSite,
    groups: r.groups,
    note: r.note,
    approximate: r.view?.answer.status === 'ok' ? r.view.answer.approximate : undefined,
    moves: r.moves,
    skipped: r.skipped,
    done: r.done,
    refused: r.refused,
    envVersion: r.envVersion,
    noMove: r.plan?.noMove,
    held: r.plan?.held,
    broken: r.plan?.broken,
  };
}

export function renderRound(r: Round): string {
  const lines = [
    `round ${r.n} at ${new Date(r.at).toISOString()}: inter-site traffic ${(100 * r.interSite).toFixed(1)} %` +
      (r.envVersion !== undefined ? `; environment version ${r.envVersion}` : '') +
      (r.groups.length ? `; groups ${r.groups.map((g) => `{${g.join(' ')}}`).join(' ')}` : ''),
  ];
  for (const m of r.moves) lines.push(`  move ${m.vm}: ${m.from} -> ${m.to}  (${m.reason ?? ''})`);
  for (const h of r.plan?.held ?? []) lines.push(`  held by a rule: ${h}`);
  for (const b of r.plan?.broken ?? []) lines.push(`  RULE NOT KEPT: ${b}`);
  for (const s of r.skipped) lines.push(`  held ${s.vm} -> ${s.to}: ${s.why}`);
  for (const x of r.refused) lines.push(`  host ${x.host} left alone: ${x.why}`);
  for (const d of r.done) {
    lines.push(
      `  ${d.outcome === 'ok' ? 'migrated' : d.outcome.toUpperCase()} ${d.vm} ${d.from} -> ${d.to} in ${d.seconds.toFixed(1)} s` +
        (d.downtimeMs !== undefined ? `, downtime ${d.downtimeMs} ms` : '') +
        (d.error ? `: ${d.error}` : ''),
    );
  }
  if (r.note) lines.push(`  ${r.note}`);
  return `${lines.join('\n')}\n`;
}

export function migrateCommand(): Command {
  return redisOpts(new Command('migrate'))
    .description("live-migrate one VM now, with the manager's safety: capacity, cooldown, timeout and abort, history")
    .argument('<vm>', 'VM (libvirt domain) name, as in the VM directory')
    .argument('<host>', 'destination host, as in the host registry')
    .option('--timeout <duration>', 'abort if still running after this', String(CONFIG_DEFAULTS.manager.timeout))
    .option('--cooldown <duration>', 'cooldown started for the VM', String(CONFIG_DEFAULTS.manager.cooldown))
    .option('--force', 'migrate even if the VM is in its cooldown, or against a prefer or together rule (never against must or apart)')
    .option('--auto-converge', 'let QEMU slow a VM whose memory changes faster than the link copies it')
    .option('--json', 'print the record as JSON')
    .option('--config <file>', 'YAML configuration, for manager.hostRoutes / hostUris / migrateNetworks (default: $VIRT_COHORT_CONFIG, else /etc/virt-cohort/config.yaml if it exists)')
    .action(async (vm: string, host: string, o) => {
      const policy = await configuredRoutes(o.config, o.lab);
      const redis = await connectOnce(await redisUrl(o));
      try {
        const registry = new Registry(redis);
        const [hosts, vms] = await Promise.all([registry.hosts(), registry.vms()]);
        // A manual move goes onto a draining host if asked to; --force passes the cooldown.
        const hold = await whyHeld(redis, { vm, to: host }, { hosts, vms }, { room: true, draining: false, cooldown: !o.force });
        if (hold) throw new UserError(holdMessage(hold));
        const v = vms.find((x) => x.name === vm)!;
        const set = rulesOf({ directory: vms, registry: hosts }, configuredRules(o.config));
        const running = vms.filter((x) => x.state === 'running' || x.state === 'arriving');
        const breaks = moveBreaks(set.rules, new Map(running.map((x) => [x.name, x.host])), new Map(hosts.map((h) => [h.host, h.site])), vm, host);
        const refused = breaks.filter((b) => b.hard || !o.force);
        if (refused.length) {
          throw new UserError(
            `${vm} to ${host} would break ${refused.map((b) => b.text).join('; ')}: ${refused.some((b) => b.hard) ? 'choose another host, or change the rule (virt-cohort rules lists them)' : 'choose another host, or pass --force'}`,
          );
        }
        const trusted = trustedRoutes(hosts, new RouteVetter(policy));
        for (const x of trusted.refused) if (x.host === v.host || x.host === host) throw new UserError(`host ${x.host}: ${x.why}`);
        for (const x of await new CertWatch().refused(new Map([v.host, host].flatMap((h) => (trusted.routes.has(h) ? [[h, trusted.routes.get(h)!]] : []))))) {
          throw new UserError(`host ${x.host}: ${x.why}`);
        }
        const settings = loadSettings({ file: o.config }).config.manager;
        const [rec] = await execute(redis, [{ vm, from: v.host, to: host, reason: 'manual (virt-cohort migrate)' }], trusted.routes, {
          maxPerHost: 1,
          maxConcurrent: 1,
          timeoutMs: parseDuration(o.timeout, '--timeout'),
          autoConverge: Boolean(o.autoConverge),
          encrypt: settings.encrypt,
          live: settings.live,
          assumeSharedStorage: settings.assumeSharedStorage,
          cooldownMs: parseDuration(o.cooldown, '--cooldown'),
          mayAct: () => true,
          manager: 'cli',
          onProgress: (_vm, pct, rate) => {
            if (!o.json) process.stderr.write(`  ${pct.toFixed(0)} % at ${rate.toFixed(0)} MiB/s\n`);
          },
        });
        if (!rec) throw new Error('the executor returned no record');
        if (o.json) printJson(rec);
        else
          process.stdout.write(
            `${rec.vm}: ${rec.from} -> ${rec.to} ${rec.outcome} in ${rec.seconds.toFixed(1)} s${rec.encrypted ? ', memory over TLS' : ', memory in clear (manager.encrypt)'}` +
              (rec.downtimeMs !== undefined ? `, downtime ${rec.downtimeMs} ms` : '') +
              (rec.paused ? ' (paused for the whole copy: manager.live false)' : '') +
              (rec.error ? `: ${rec.error}` : '') +
              '\n',
          );
        if (rec.outcome !== 'ok') process.exitCode = 1;
      } finally {
        redis.disconnect();
      }
    });
}

/** Why `virt-cohort migrate` refuses, with the fix. */
function holdMessage(h: Hold): string {
  switch (h.kind) {
    case 'unknown-vm':
      return `unknown VM '${h.vm}': not in the VM directory (virt-cohort stats --vms lists them)`;
    case 'unknown-host':
      return `unknown host '${h.host}': not in the host registry (known: ${h.known.join(', ') || 'none'})`;
    case 'pinned':
      return `${h.vm} is pinned by its libvirt domain metadata (virt-cohort policy ${h.optOut ? 'count="no"' : 'move="never"'}): remove that to move it`;
    case 'not-running':
      return `${h.vm} is ${h.state}, not running: nothing to migrate`;
    case 'already-there':
      return `${h.vm} already runs on ${h.host}`;
    case 'no-room':
      return `${h.host} has ${Math.floor(h.freeKiB / 1024)} MiB free, ${h.vm} needs ${Math.ceil(h.needKiB / 1024)} MiB: choose another host`;
    case 'cooldown':
      return `${h.vm} is in its cooldown until ${new Date(h.until).toISOString()} (it moved recently): wait, or pass --force`;
    default:
      return describeHold(h);
  }
}

export function historyCommand(): Command {
  return redisOpts(new Command('history'))
    .description('every migration: when, from, to, outcome, duration, downtime, why')
    .option('--vm <name>', 'only this VM')
    .option('--count <n>', 'newest N', integer, 50)
    .option('--json', 'print JSON')
    .action(async (o) => {
      const redis = await connectOnce(await redisUrl(o));
      try {
        const rows = await readHistory(redis, o.count, o.vm);
        if (o.json) return printJson(rows);
        process.stdout.write(
          `${table(
            ['WHEN', 'VM', 'FROM', 'TO', 'OUTCOME', 'SECONDS', 'DOWNTIME MS', 'TLS', 'WHY / ERROR'],
            rows.map((r) => [
              new Date(r.at).toISOString(),
              r.vm,
              r.from,
              r.to,
              r.outcome,
              r.seconds.toFixed(1),
              `${r.downtimeMs ?? '-'}${r.paused ? ' (paused)' : ''}`,
              r.encrypted === undefined ? '-' : r.encrypted ? 'yes' : 'no',
              r.error ?? r.reason ?? '',
            ]),
          )}\n`,
        );
      } finally {
        redis.disconnect();
      }
    });
}

export function hostCommand(): Command {
  const host = new Command('host').description('operate on a host of the registry');
  for (const [name, value, what] of [
    ['drain', '1', 'the manager moves its VMs away (keeping groups together) and plans nothing onto it'],
    ['undrain', '0', 'it takes VMs again'],
  ] as const) {
    redisOpts(host.command(name))
      .description(`mark a host: ${what}`)
      .argument('<host>', 'host name, as in the registry')
      .option('--config <file>', 'YAML configuration, for its rules: (default: $VIRT_COHORT_CONFIG, else /etc/virt-cohort/config.yaml if it exists)')
      .action(async (h: string, o) => {
        const redis = await connectOnce(await redisUrl(o));
        try {
          const registry = new Registry(redis);
          if (!(await registry.setDraining(h, value === '1'))) throw new UserError(`unknown host '${h}' (known: ${(await registry.hostNames()).join(', ') || 'none'})`);
          if (value === '0') return void process.stdout.write(`${h} takes VMs again\n`);
          process.stdout.write(`${h} is draining: the manager (with --apply) evacuates it now, under the rules\n`);
          // What the evacuation would do now, and what a rule or the room keeps there.
          const view = await readCollector(redis, { query: { type: 'weighted', span: 4, coefficient: 2, maxWaitMs: 0, approx: true } });
          const drain = drainMoves(view, new Map([[h, { kind: 'draining', why: `${h} is draining` }]]), [], new Map(), rulesOf(view, configuredRules(o.config)).rules);
          for (const m of drain.moves) process.stdout.write(`  ${m.vm} -> ${m.to}: ${m.reason}\n`);
          for (const vm of drain.stuck) process.stdout.write(`  ${vm} stays: ${drain.why.get(vm)}\n`);
          if (drain.stuck.length) process.exitCode = 1;
        } finally {
          redis.disconnect();
        }
      });
  }
  return host;
}
