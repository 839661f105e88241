import { CONFIG_DEFAULTS, durationMs, type Config } from '../config/schema.js';
import type { Environment } from '../placement/env.js';

type Section = Config['manager'];

/**
 * Every setting of the manager, in the units it runs with: the manager
 * section of the configuration (src/config/schema.ts documents each key)
 * with its durations in ms (the horizon in s), and the environment read.
 */
export type ManagerConfig = Omit<
  Section,
  'horizon' | 'cooldown' | 'externalHold' | 'evacuateSilent' | 'quotaMargin' | 'timeout' | 'maxWait' | 'settle' | 'lockTtl' | 'environment' | 'metricsPort' | 'metricsBind'
> & {
  horizonSeconds: number;
  cooldownMs: number;
  externalHoldMs: number;
  /** A host silent this long is evacuated (0: never). */
  evacuateSilentMs: number;
  /** Spare time before a quota's end, beyond its VMs' estimated migrations (manager/decide.ts quotaDeadlines). */
  quotaMarginMs: number;
  timeoutMs: number;
  maxWaitMs: number;
  /** Wait after a boundary before a round, for the hosts' reports to arrive. */
  settleMs: number;
  lockTtlMs: number;
  /** An environment file (manager.environment): a one-off override of the environment stored in Redis. */
  env?: Environment;
  /** Where `env` came from, for the log. */
  envSource?: string;
  /** The environment used when neither a file nor Redis holds one (a lab's); undefined: derived from the registry. */
  defaultEnv?: Environment;
  /** The configuration's rules: section, and the file it came from (the VMs' metadata rules are read each round). */
  rules?: Config['rules'];
  rulesFile?: string;
};

/** The manager's section as the Manager's settings; `env` is the environment file read (manager.environment), if any. */
export function managerConfig(m: Section, env?: Environment): ManagerConfig {
  // The metrics endpoint is the command's, not the Manager's.
  const { horizon, cooldown, externalHold, evacuateSilent, quotaMargin, timeout, maxWait, settle, lockTtl, environment, metricsPort, metricsBind, ...same } = m;
  return Object.freeze({
    ...same,
    exclude: [...m.exclude],
    horizonSeconds: durationMs(horizon) / 1000,
    cooldownMs: durationMs(cooldown),
    externalHoldMs: durationMs(externalHold),
    evacuateSilentMs: durationMs(evacuateSilent),
    quotaMarginMs: durationMs(quotaMargin),
    timeoutMs: durationMs(timeout),
    maxWaitMs: durationMs(maxWait),
    settleMs: durationMs(settle),
    lockTtlMs: durationMs(lockTtl),
    ...(env ? { env } : {}),
  });
}

export const DEFAULT_MANAGER: ManagerConfig = managerConfig(CONFIG_DEFAULTS.manager);
