import { SETTINGS, setting, type Setting } from './settings.js';

/**
 * Which settings each command takes on its command line, and under which
 * flag. A flag is the key in kebab case (agent.stateDir: --state-dir) unless
 * named below; src/cli/settings.ts turns these into commander options.
 */

/** Flags whose name is not the key's (kept as users and scripts know them). */
const FLAG_NAMES: Readonly<Record<string, string>> = {
  'agent.periodSeconds': '--period',
  'agent.reconcileSeconds': '--reconcile',
  'agent.metricsPort': '--metrics',
  'manager.everyPeriods': '--every',
  'manager.confirmRounds': '--confirm',
  'manager.environment': '--env',
  'manager.metricsPort': '--metrics',
  'redis.url': '--redis',
  'redis.passwordFile': '--redis-password-file',
  'redis.sentinels': '--redis-sentinels',
  'redis.cluster': '--redis-cluster',
  'redis.primaryName': '--redis-primary',
  'log.pretty': '--pretty',
};

/** 'agent.*': every key of the section, except those whose schema says flag: false. */
export const COMMAND_SETTINGS = {
  agent: ['agent.*', 'redis.url', 'redis.passwordFile', 'redis.sentinels', 'redis.primaryName', 'redis.cluster', 'log.pretty'],
  manager: ['manager.*', 'redis.url', 'redis.sentinels', 'redis.primaryName', 'redis.cluster', 'log.pretty'],
  doctor: ['agent.libvirtUri', 'agent.pinRoot', 'redis.url', 'redis.sentinels', 'redis.primaryName', 'redis.cluster', 'agent.stateDir', 'agent.socket'],
} as const satisfies Record<string, readonly string[]>;

export type SettingsCommand = keyof typeof COMMAND_SETTINGS;

export function flagName(path: string): string {
  return (
    FLAG_NAMES[path] ??
    `--${path
      .split('.')
      .pop()!
      .replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
  );
}

/** The settings `command` takes as flags, in the order of its help. */
export function commandSettings(command: SettingsCommand): Setting[] {
  return COMMAND_SETTINGS[command].flatMap((p: string) => (p.endsWith('.*') ? SETTINGS.filter((s) => s.path.startsWith(p.slice(0, -1)) && s.flag !== false) : [setting(p)]));
}

/** The commands that take a flag for `path` (for the reference). */
export function commandsFor(path: string): SettingsCommand[] {
  return (Object.keys(COMMAND_SETTINGS) as SettingsCommand[]).filter((c) => commandSettings(c).some((s) => s.path === path));
}
