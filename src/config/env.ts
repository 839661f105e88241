import { SETTINGS, type Setting } from './settings.js';

/**
 * Environment variables, between the file and the flags. Each names one key
 * (its `env` in the schema); values are converted to the key's type here so
 * that a bad one is reported by the schema like any other ("environment
 * VIRT_COHORT_X: ...").
 */
export interface EnvVar {
  name: string;
  path: string;
  type: 'string' | 'int' | 'bool' | 'list';
}

const envType = (s: Setting): EnvVar['type'] => (s.kind === 'int' ? 'int' : s.kind === 'bool' ? 'bool' : s.kind === 'list' ? 'list' : 'string');

/** Redis first, then the schema's order: the order `config check` has always listed them in. */
export const ENV_VARS: readonly EnvVar[] = [...SETTINGS]
  .filter((s) => s.env)
  .sort((a, b) => Number(b.path.startsWith('redis.')) - Number(a.path.startsWith('redis.')))
  .map((s) => ({ name: s.env!, path: s.path, type: envType(s) }));

/** The raw string as the key's type when it reads as one; else the string itself, which the schema then refuses by name. */
export function envValue(raw: string, type: EnvVar['type']): unknown {
  const t = raw.trim();
  if (type === 'int') return /^-?\d+$/.test(t) ? Number(t) : raw;
  if (type === 'bool') return /^(1|true|yes|on)$/i.test(t) ? true : /^(0|false|no|off)$/i.test(t) ? false : raw;
  if (type === 'list')
    return t
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  return raw;
}
