import { Command } from 'commander';
import { Agent } from '../agent/agent.js';
import { loadConfig, DEFAULTS } from '../agent/config.js';
import { logger } from '../util/log.js';
import { integer } from './options.js';

const log = logger('agent');

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the host agent: count every VM tap, publish each period to Redis, follow VMs through libvirt hooks')
    .option('--config <file>', 'JSON file with any of the settings below (options override it)')
    .option('--host <name>', `this host's name in the registry (default: hostname, ${DEFAULTS.host})`)
    .option('--site <name>', `site of this host (default ${DEFAULTS.site})`)
    .option('--libvirt-uri <uri>', `local libvirt (default ${DEFAULTS.libvirtUri})`)
    .option('--redis <url>', `collector Redis (default ${DEFAULTS.redis}; env VIRT_COHORT_REDIS)`)
    .option('--period <s>', `period length in seconds, dividing an hour (default ${DEFAULTS.periodSeconds})`, integer)
    .option('--reconcile <s>', `seconds between reconciles with libvirt (default ${DEFAULTS.reconcileSeconds})`, integer)
    .option('--socket <path>', `hook socket (default ${DEFAULTS.socket})`)
    .option('--state-dir <dir>', `spool and VM id table (default ${DEFAULTS.stateDir})`)
    .option('--spool-max <n>', `reports kept on disk while Redis is down (default ${DEFAULTS.spoolMax})`, integer)
    .option('--retention <n>', 'periods kept in Redis, 0 = all (default 0)', integer)
    .option('--sensor <kind>', 'auto, ebpf or pcap (default auto)')
    .option('--pin-root <dir>', `eBPF pin root (default ${DEFAULTS.pinRoot})`)
    .option('--migrate-uri <uri>', 'where migrations into this host send memory, e.g. tcp://10.0.1.5 (default: the libvirt URI\'s host)')
    .action(async (o) => {
      const cfg = loadConfig(o.config, {
        host: o.host, site: o.site, libvirtUri: o.libvirtUri, redis: o.redis ?? process.env.VIRT_COHORT_REDIS,
        periodSeconds: o.period, reconcileSeconds: o.reconcile, socket: o.socket, stateDir: o.stateDir,
        spoolMax: o.spoolMax, retention: o.retention, sensor: o.sensor, pinRoot: o.pinRoot, migrateUri: o.migrateUri,
      });
      const agent = await Agent.start(cfg);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'stopping');
          agent.stop().finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
