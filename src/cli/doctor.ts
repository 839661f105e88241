import { Command } from 'commander';
import { agentConfig } from '../agent/config.js';
import { ConfigError, defaults, loadSettings } from '../config/load.js';
import { secretsOf } from '../config/redact.js';
import type { Config } from '../config/schema.js';
import type { CheckResult } from '../doctor/checks.js';
import { renderDoctor, runDoctor } from '../doctor/doctor.js';
import { routePolicy } from '../manager/trust.js';
import { printJson } from './options.js';
import { configOption, settingFlags, settingOptions } from './settings.js';

export function doctorCommand(): Command {
  return settingOptions(configOption(new Command('doctor')), 'doctor')
    .description('check this host: kernel BPF, bpffs, tc, our filters on every VM tap, libvirt, the hook, Redis (AUTH/TLS), clock, spool; each failure says what to type')
    .option('--hooks-dir <dir>', "libvirt's hook directory", '/etc/libvirt/hooks')
    .option('--manager', "also check, as the manager, every registered host's routes against manager.hostRoutes / hostUris / migrateNetworks (done anyway when those are set)")
    .option('--json', 'print JSON')
    .action(async (o) => {
      const flags = settingFlags(o, 'doctor');
      const first: CheckResult[] = [];
      let config: Config;
      try {
        const loaded = loadSettings({ file: o.config, flags });
        config = loaded.config;
        first.push({ id: 'config', title: 'configuration', status: 'ok', detail: loaded.file ? `${loaded.file} is valid` : 'no configuration file: built-in defaults, environment and options' });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        first.push({
          id: 'config',
          title: 'configuration',
          status: 'fail',
          detail: err.problems.join('; '),
          fix: `${`virt-cohort config check ${err.file ?? ''}`.trim()} lists each problem with its line; the other checks use the built-in defaults`,
        });
        config = (() => {
          try {
            return loadSettings({ file: false, flags }).config;
          } catch {
            return defaults();
          }
        })();
      }
      const agent = agentConfig(config);
      const report = await runDoctor(
        {
          libvirtUri: agent.libvirtUri,
          advertiseUri: agent.advertiseUri,
          hooksDir: o.hooksDir,
          pinRoot: agent.pinRoot,
          socket: agent.socket,
          stateDir: agent.stateDir,
          spoolMax: agent.spoolMax,
          periodSeconds: agent.periodSeconds,
          redisUrl: agent.redis,
          ...(agent.redisAuth ? { redisAuth: agent.redisAuth } : {}),
          sensor: agent.sensor,
          host: agent.host,
          isRoot: process.getuid?.() === 0,
          ...(o.manager || Object.keys(config.manager.hostRoutes).length || config.manager.hostUris.length ? { routes: routePolicy(config.manager) } : {}),
        },
        first,
        secretsOf(config),
      );
      if (o.json) printJson(report);
      else process.stdout.write(renderDoctor(report));
      if (!report.ok) process.exitCode = 1;
    });
}
