import { Redis } from 'ioredis';
import { clusterAddress, nodeOptions, redisLabel, redisTrouble } from './connection.js';
import type { RedisAuth } from './schema.js';

/**
 * Why a Redis Cluster refused a connection, asked of its seed nodes one by one (CLUSTER INFO): ioredis
 * waits for the cluster to be ok before it sends anything, so its own words ("no answer in 5000 ms") do not
 * say that slots have no primary. Falls back on redisTrouble when no seed says more.
 */
export async function clusterTrouble(err: Error, url: string, auth: RedisAuth, timeoutMs = 3000): Promise<{ problem: string; fix: string }> {
  for (const seed of auth.cluster ?? []) {
    const { host, port } = clusterAddress(seed);
    const c = new Redis({ ...nodeOptions(auth), host, port, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null });
    c.on('error', () => {});
    try {
      await c.connect();
      const info = String(await c.call('CLUSTER', 'INFO'));
      const state = /^cluster_state:(\S+)/m.exec(info)?.[1];
      if (state && state !== 'ok') {
        const ok = /^cluster_slots_ok:(\d+)/m.exec(info)?.[1] ?? '?';
        return {
          problem: `the ${redisLabel(url, auth)} is down: ${seed} says cluster_state:${state}, ${ok} of 16384 slots served (some slots have no primary that answers)`,
          fix: `redis-cli --cluster check ${host}:${port} says which slots; start their nodes, or redis-cli --cluster fix ${host}:${port}`,
        };
      }
    } catch {
      // this seed says nothing: ask the next
    } finally {
      c.disconnect();
    }
  }
  return redisTrouble(err, url, auth);
}
