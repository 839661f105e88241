import { Command } from 'commander';
import { agentConfig } from '../agent/config.js';
import { ConfigError, defaults, loadSettings, type FlagValue } from '../config/load.js';
import { secretsOf } from '../config/redact.js';
import { DEFAULT_CONFIG_FILE, type Config } from '../config/schema.js';
import type { CheckResult } from '../doctor/checks.js';
import { renderDoctor, runDoctor } from '../doctor/doctor.js';
import { printJson } from './options.js';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check this host: kernel BPF, bpffs, tc, our filters on every VM tap, libvirt, the hook, Redis (AUTH/TLS), clock, spool; each failure says what to type')
    .option('--config <file>', `YAML configuration (default: $VIRT_COHORT_CONFIG, else ${DEFAULT_CONFIG_FILE} if it exists)`)
    .option('--no-config', 'read no configuration file')
    .option('--libvirt-uri <uri>', 'libvirt to check (default: agent.libvirtUri)')
    .option('--hooks-dir <dir>', "libvirt's hook directory", '/etc/libvirt/hooks')
    .option('--pin-root <dir>', 'eBPF pin root (default: agent.pinRoot)')
    .option('--redis <url>', 'Redis to check (default: redis.url)')
    .option('--state-dir <dir>', "the agent's state directory, for the spool (default: agent.stateDir)")
    .option('--socket <path>', "the agent's hook socket (default: agent.socket)")
    .option('--json', 'print JSON')
    .action(async (o) => {
      const flags: FlagValue[] = [
        { path: 'agent.libvirtUri', flag: '--libvirt-uri', value: o.libvirtUri }, { path: 'agent.pinRoot', flag: '--pin-root', value: o.pinRoot },
        { path: 'redis.url', flag: '--redis', value: o.redis }, { path: 'agent.stateDir', flag: '--state-dir', value: o.stateDir },
        { path: 'agent.socket', flag: '--socket', value: o.socket },
      ];
      const first: CheckResult[] = [];
      let config: Config;
      try {
        const loaded = loadSettings({ file: o.config, flags });
        config = loaded.config;
        first.push({ id: 'config', title: 'configuration', status: 'ok', detail: loaded.file ? `${loaded.file} is valid` : 'no configuration file: built-in defaults, environment and options' });
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        first.push({ id: 'config', title: 'configuration', status: 'fail', detail: err.problems.join('; '), fix: `virt-cohort config check ${err.file ?? ''}`.trim() + ' lists each problem with its line; the other checks use the built-in defaults' });
        config = (() => {
          try {
            return loadSettings({ file: false, flags }).config;
          } catch {
            return defaults();
          }
        })();
      }
      const agent = agentConfig(config);
      const report = await runDoctor({
        libvirtUri: agent.libvirtUri, hooksDir: o.hooksDir, pinRoot: agent.pinRoot, socket: agent.socket, stateDir: agent.stateDir,
        spoolMax: agent.spoolMax, periodSeconds: agent.periodSeconds, redisUrl: agent.redis, ...(agent.redisAuth ? { redisAuth: agent.redisAuth } : {}),
        sensor: agent.sensor, host: agent.host, isRoot: process.getuid?.() === 0,
      }, first, secretsOf(config));
      if (o.json) printJson(report);
      else process.stdout.write(renderDoctor(report));
      if (!report.ok) process.exitCode = 1;
    });
}
