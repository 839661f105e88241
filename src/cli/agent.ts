import { Command } from 'commander';
import { Agent } from '../agent/agent.js';
import { agentConfig } from '../agent/config.js';
import { loadSettings } from '../config/load.js';
import { redisLabel, usesTls } from '../config/redis.js';
import { startMetricsServer } from '../metrics/server.js';
import { configureLogging, logger } from '../util/log.js';
import { configOption, settingFlags, settingOptions } from './settings.js';

const log = logger('agent');

export function agentCommand(): Command {
  return settingOptions(configOption(new Command('agent')), 'agent')
    .description('run the host agent: count every VM tap, publish each period to Redis, follow VMs through libvirt hooks')
    .action(async (o) => {
      const { config, file } = loadSettings({ file: o.config, flags: settingFlags(o, 'agent') });
      // A daemon: JSON lines on stdout for journald (commands keep stderr).
      configureLogging({ to: 'stdout', pretty: config.log.pretty, level: config.log.level });
      const cfg = agentConfig(config);
      if (file) log.info({ file }, 'configuration read');
      const metrics = cfg.metricsPort ? await startMetricsServer(cfg.metricsPort, cfg.metricsBind) : undefined;
      const agent = await Agent.start(cfg);
      log.info(
        { redis: redisLabel(cfg.redis, cfg.redisAuth), auth: cfg.redisAuth?.password || cfg.redisAuth?.passwordFile ? 'password' : 'none', tls: usesTls(cfg.redis, cfg.redisAuth) },
        'Redis settings',
      );
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ signal }, 'stopping');
          agent
            .stop()
            .then(() => metrics?.close())
            .finally(resolve);
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      });
    });
}
