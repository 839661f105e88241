import { Redis } from 'ioredis';
import { UserError } from '../util/errors.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * A connection for a command that asks and exits: unlike the agent's (which
 * retries forever so that nothing is lost), it gives up within `timeoutMs`
 * and says what to do, and no command waits in an offline queue.
 */
export async function connectOnce(url: string, timeoutMs = 3000): Promise<Redis> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UserError(`bad Redis URL '${url}': use redis://HOST:PORT[/DB] (or set VIRT_COHORT_REDIS)`);
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new UserError(`bad Redis URL '${url}': use redis://HOST:PORT[/DB] (or set VIRT_COHORT_REDIS)`);
  }
  const redis = new Redis(url, {
    lazyConnect: true, connectTimeout: timeoutMs, maxRetriesPerRequest: 1,
    enableOfflineQueue: false, retryStrategy: () => null,
  });
  let cause: Error | undefined;
  redis.on('error', (err: Error) => { cause = err; }); // reported by the failed connect() below
  let timeout: NodeJS.Timeout | undefined;
  const timer = new Promise<never>((_, reject) => { timeout = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs); });
  try {
    await Promise.race([redis.connect(), timer]);
    await Promise.race([redis.ping(), timer]);
  } catch (err) {
    if (redis.status !== 'end') redis.disconnect(); // after a refused connect, ioredis would wait 2 s for a close that already happened
    throw new UserError(`cannot reach Redis at ${url} (${(cause ?? err as Error).message}): start it, or point --redis / VIRT_COHORT_REDIS at the collector's Redis`);
  } finally {
    clearTimeout(timeout);
  }
  return redis;
}
