/**
 * Environment variables, between the file and the flags. Each names one key;
 * values are converted to the key's type here so that a bad one is reported
 * by the schema like any other ("environment VIRT_COHORT_X: ...").
 */
export interface EnvVar {
  name: string;
  path: string;
  type: 'string' | 'int' | 'bool' | 'list';
  what: string;
}

export const ENV_VARS: readonly EnvVar[] = [
  { name: 'VIRT_COHORT_REDIS', path: 'redis.url', type: 'string', what: "the collector's Redis URL" },
  { name: 'VIRT_COHORT_REDIS_USERNAME', path: 'redis.username', type: 'string', what: 'Redis ACL user' },
  { name: 'VIRT_COHORT_REDIS_PASSWORD', path: 'redis.password', type: 'string', what: 'Redis password (prefer the _FILE form)' },
  { name: 'VIRT_COHORT_REDIS_PASSWORD_FILE', path: 'redis.passwordFile', type: 'string', what: 'file holding the Redis password (e.g. $CREDENTIALS_DIRECTORY/redis-password under systemd)' },
  { name: 'VIRT_COHORT_REDIS_TLS_CA', path: 'redis.tls.ca', type: 'string', what: 'CA bundle (PEM) that signed the Redis server certificate' },
  { name: 'VIRT_COHORT_REDIS_TLS_CERT', path: 'redis.tls.cert', type: 'string', what: 'client certificate (PEM) for Redis TLS' },
  { name: 'VIRT_COHORT_REDIS_TLS_KEY', path: 'redis.tls.key', type: 'string', what: 'client key (PEM) for Redis TLS' },
  { name: 'VIRT_COHORT_REDIS_TLS_SERVERNAME', path: 'redis.tls.servername', type: 'string', what: 'name expected in the Redis server certificate' },
  { name: 'VIRT_COHORT_HOST', path: 'agent.host', type: 'string', what: "this host's name in the registry" },
  { name: 'VIRT_COHORT_SITE', path: 'agent.site', type: 'string', what: "this host's site" },
  { name: 'VIRT_COHORT_LIBVIRT_URI', path: 'agent.libvirtUri', type: 'string', what: 'local libvirt URI' },
  { name: 'VIRT_COHORT_STATE_DIR', path: 'agent.stateDir', type: 'string', what: "the agent's spool and VM id table" },
  { name: 'VIRT_COHORT_AGENT_METRICS_PORT', path: 'agent.metricsPort', type: 'int', what: "the agent's Prometheus port (0: off)" },
  { name: 'VIRT_COHORT_MANAGER_METRICS_PORT', path: 'manager.metricsPort', type: 'int', what: "the manager's Prometheus port (0: off)" },
  { name: 'VIRT_COHORT_MANAGER_APPLY', path: 'manager.apply', type: 'bool', what: 'the manager migrates (true) or only plans (false)' },
  { name: 'VIRT_COHORT_LOG_LEVEL', path: 'log.level', type: 'string', what: 'trace, debug, info, warn, error, fatal or silent' },
  { name: 'VIRT_COHORT_LOG_PRETTY', path: 'log.pretty', type: 'bool', what: 'human-readable log lines instead of JSON' },
];

/** The raw string as the key's type when it reads as one; else the string itself, which the schema then refuses by name. */
export function envValue(raw: string, type: EnvVar['type']): unknown {
  const t = raw.trim();
  if (type === 'int') return /^-?\d+$/.test(t) ? Number(t) : raw;
  if (type === 'bool') return /^(1|true|yes|on)$/i.test(t) ? true : /^(0|false|no|off)$/i.test(t) ? false : raw;
  if (type === 'list') return t.split(',').map((s) => s.trim()).filter(Boolean);
  return raw;
}
