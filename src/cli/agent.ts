import { Command } from 'commander';
import { Agent } from '../agent/agent.js';
import { agentConfig, DEFAULTS } from '../agent/config.js';
import { loadSettings, redactUrl, type FlagValue } from '../config/load.js';
import { DEFAULT_CONFIG_FILE } from '../config/schema.js';
import { startMetricsServer } from '../metrics/server.js';
import { configureLogging, logger } from '../util/log.js';
import { integer } from './options.js';

const log = logger('agent');

/** --config / --no-config, shared by the daemons: a file, none, or the default lookup. */
export const configOption = (c: Command) => c
  .option('--config <file>', `YAML configuration (default: $VIRT_COHORT_CONFIG, else ${DEFAULT_CONFIG_FILE} if it exists); flags override it`)
  .option('--no-config', 'read no configuration file (defaults, environment and flags only)')
  .option('--pretty', 'log readable lines for a person instead of JSON (log.pretty)');

/** The flags given on the command line, as keys of the configuration. */
export function flagValues(o: Record<string, unknown>, map: [string, string, string][]): FlagValue[] {
  return map.map(([opt, path, flag]) => ({ path, flag, value: o[opt] }));
}

const AGENT_FLAGS: [string, string, string][] = [
  ['host', 'agent.host', '--host'], ['site', 'agent.site', '--site'], ['libvirtUri', 'agent.libvirtUri', '--libvirt-uri'],
  ['redis', 'redis.url', '--redis'], ['redisPasswordFile', 'redis.passwordFile', '--redis-password-file'],
  ['period', 'agent.periodSeconds', '--period'], ['reconcile', 'agent.reconcileSeconds', '--reconcile'],
  ['socket', 'agent.socket', '--socket'], ['stateDir', 'agent.stateDir', '--state-dir'], ['spoolMax', 'agent.spoolMax', '--spool-max'],
  ['retention', 'agent.retention', '--retention'], ['sensor', 'agent.sensor', '--sensor'], ['pinRoot', 'agent.pinRoot', '--pin-root'],
  ['migrateUri', 'agent.migrateUri', '--migrate-uri'], ['metrics', 'agent.metricsPort', '--metrics'], ['metricsBind', 'agent.metricsBind', '--metrics-bind'],
  ['pretty', 'log.pretty', '--pretty'],
];

export function agentCommand(): Command {
  return configOption(new Command('agent'))
    .description('run the host agent: count every VM tap, publish each period to Redis, follow VMs through libvirt hooks')
    .option('--host <name>', `this host's name in the registry (default: hostname, ${DEFAULTS.host})`)
    .option('--site <name>', `site of this host (default ${DEFAULTS.site})`)
    .option('--libvirt-uri <uri>', `local libvirt (default ${DEFAULTS.libvirtUri})`)
    .option('--redis <url>', `collector Redis, rediss:// for TLS (default ${DEFAULTS.redis}; env VIRT_COHORT_REDIS)`)
    .option('--redis-password-file <file>', 'file holding the Redis password (redis.passwordFile; env VIRT_COHORT_REDIS_PASSWORD_FILE)')
    .option('--period <s>', `period length in seconds, dividing an hour (default ${DEFAULTS.periodSeconds})`, integer)
    .option('--reconcile <s>', `seconds between reconciles with libvirt (default ${DEFAULTS.reconcileSeconds})`, integer)
    .option('--socket <path>', `hook socket (default ${DEFAULTS.socket})`)
    .option('--state-dir <dir>', `spool and VM id table (default ${DEFAULTS.stateDir})`)
    .option('--spool-max <n>', `reports kept on disk while Redis is down (default ${DEFAULTS.spoolMax})`, integer)
    .option('--retention <n>', 'periods kept in Redis, 0 = all (default 0)', integer)
    .option('--sensor <kind>', 'auto, ebpf or pcap (default auto)')
    .option('--pin-root <dir>', `eBPF pin root (default ${DEFAULTS.pinRoot})`)
    .option('--migrate-uri <uri>', 'where migrations into this host send memory, e.g. tcp://10.0.1.5 (default: the libvirt URI\'s host)')
    .option('--metrics <port>', 'serve Prometheus metrics on this port (agent.metricsPort; default 0: off)', integer)
    .option('--metrics-bind <address>', `address of the metrics endpoint (default ${DEFAULTS.metricsBind})`)
    .action(async (o) => {
      const { config, file } = loadSettings({ file: o.config, flags: flagValues(o, AGENT_FLAGS) });
      // A daemon: JSON lines on stdout for journald (commands keep stderr).
      configureLogging({ to: 'stdout', pretty: config.log.pretty, level: config.log.level });
      const cfg = agentConfig(config);
      if (file) log.info({ file }, 'configuration read');
      const metrics = cfg.metricsPort ? await startMetricsServer(cfg.metricsPort, cfg.metricsBind) : undefined;
      const agent = await Agent.start(cfg);
      log.info({ redis: redactUrl(cfg.redis), auth: cfg.redisAuth?.password || cfg.redisAuth?.passwordFile ? 'password' : 'none', tls: cfg.redis.startsWith('rediss:') }, 'Redis settings');
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'stopping');
          agent.stop().then(() => metrics?.close()).finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
