import { redactUrl } from './load.js';
import type { Config } from './schema.js';

/** The configuration as it may be printed: passwords as ***, URLs without theirs. */
export function redactConfig(c: Config): Config {
  const copy = structuredClone(c) as Config & { redis: { password?: string } };
  copy.redis.url = redactUrl(copy.redis.url);
  if (copy.redis.password) copy.redis.password = '***';
  return copy;
}

/** Every secret the configuration holds, to scrub from text that may have picked one up (error messages). */
export function secretsOf(c: Config): string[] {
  const out: string[] = [];
  if (c.redis.password) out.push(c.redis.password);
  try {
    const p = new URL(c.redis.url).password;
    if (p) out.push(p, decodeURIComponent(p));
  } catch {
    // not a URL: validation said so already
  }
  return out.filter((s) => s.length >= 3);
}

export function scrub(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join('***');
  return out;
}
