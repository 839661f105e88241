import { loadSettings, type FlagValue } from '../config/load.js';
import { withoutCredentials } from '../config/redis.js';
import { CONFIG_DEFAULTS, type Config, type RedisAuth } from '../config/schema.js';

export type { RedisAuth };

/** Everything the agent reads from its configuration (src/config/schema.ts documents each key), validated once and frozen. */
export type AgentConfig = Config['agent'] & {
  /** Redis of the collector, without credentials (they are in redisAuth, so that this can be logged). */
  redis: string;
  /** Credentials and TLS for `redis` (src/config/redis.ts); none by default. */
  redisAuth?: RedisAuth;
};

export const DEFAULTS: AgentConfig = Object.freeze({ ...CONFIG_DEFAULTS.agent, redis: CONFIG_DEFAULTS.redis.url });

/**
 * Node flags the agent runs with (lab, packaged service). A small young
 * generation: the agent allocates little per period, and V8's default 16 MB
 * semi-spaces alone put 1,000 taps over 100 MB (docs/measurements.md).
 */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=1'];

/** The agent's part of the configuration: its section, and the Redis section with the credentials kept apart from the URL. */
export function agentConfig(c: Config): AgentConfig {
  const { url, auth } = withoutCredentials(c.redis);
  return Object.freeze({ ...c.agent, redis: url, ...(auth ? { redisAuth: Object.freeze(auth) } : {}) });
}

/**
 * Defaults, then the configuration file (src/config), the environment, then
 * `overrides` as if given on the command line (keys of AgentConfig; `redis`
 * is the URL). Kept for callers that build an agent without the CLI.
 */
export function loadConfig(file: string | false | undefined, overrides: Partial<Record<keyof AgentConfig, unknown>>): AgentConfig {
  const flags: FlagValue[] = Object.entries(overrides).map(([k, value]) => ({
    path: k === 'redis' ? 'redis.url' : `agent.${k}`,
    flag: k,
    value,
  }));
  return agentConfig(loadSettings({ file, flags }).config);
}
