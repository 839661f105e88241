import { type Command, Option } from 'commander';
import { commandSettings, flagName, type SettingsCommand } from '../config/flags.js';
import type { FlagValue } from '../config/load.js';
import { DEFAULT_CONFIG_FILE, DEFAULT_REDIS_URL } from '../config/schema.js';
import { setting, shownDefault, summary, type Setting } from '../config/settings.js';
import { integer, number } from './options.js';

/** --config / --no-config, for the commands that read the file: a file, none, or the default lookup. */
export const configOption = (c: Command) =>
  c
    .option('--config <file>', `YAML configuration (default: $VIRT_COHORT_CONFIG, else ${DEFAULT_CONFIG_FILE} if it exists); flags override it`)
    .option('--no-config', 'read no configuration file (defaults, environment and flags only)');

/** A flag's help: what the key does (in lower case, as the other options' help), the key, its default and its variable. */
function help(s: Setting): string {
  return `${lowerFirst(summary(s))} (${s.path}; default: ${shownDefault(s)}${s.env ? `; env ${s.env}` : ''})`;
}

/** "The collector's Redis" → "the ...", but "CA bundle" stays. */
const lowerFirst = (t: string) => (/^[A-Z][^A-Z]/.test(t) ? t[0]!.toLowerCase() + t.slice(1) : t);

const list = (v: string) =>
  v
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

function option(s: Setting): Option {
  const flag = flagName(s.path);
  const o = new Option(s.kind === 'bool' ? flag : `${flag} <${s.arg}>`, help(s));
  // No commander default: a flag not given leaves the file and the environment in charge.
  if (s.kind === 'int') o.argParser(integer);
  else if (s.kind === 'number') o.argParser(number);
  else if (s.kind === 'list') o.argParser(list);
  return o;
}

/** The options of every setting `command` takes (src/config/flags.ts). */
export function settingOptions(c: Command, command: SettingsCommand): Command {
  for (const s of commandSettings(command)) c.addOption(option(s));
  return c;
}

/** What the command line gave for those settings, as keys of the configuration (loadSettings' flags). */
export function settingFlags(o: Record<string, unknown>, command: SettingsCommand): FlagValue[] {
  return commandSettings(command).map((s) => {
    const flag = flagName(s.path);
    return { path: s.path, flag, value: o[new Option(flag).attributeName()] };
  });
}

/**
 * --redis for the commands (stats, plan, migrate, ...): the default stands
 * for "the configured Redis" (src/config/redis.ts, commandTarget).
 */
export function redisOption(): Option {
  const url = setting('redis.url');
  return new Option(`${flagName(url.path)} <${url.arg}>`, `${lowerFirst(summary(url))} (env ${url.env})`).default(process.env[url.env!] ?? DEFAULT_REDIS_URL);
}
