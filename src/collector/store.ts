import { Redis } from 'ioredis';
import { UserError } from '../util/errors.js';
import { EVENTS_MAXLEN, K, periodKeys } from './keys.js';
import { reportMeta, type Report } from './report.js';

/**
 * Applies a host's report exactly once. The SADD on the period's `reported`
 * set is the guard: a report re-sent (ioredis replays commands after a
 * reconnect; the agent re-sends its spool after an unanswered write) finds its
 * host already there and adds nothing. The host's own sorted sets are written
 * with DEL + ZADD, which give the same result however often they run.
 * First reporter of a period: COPY. Later ones: ZINCRBY each of their pairs
 * when they are few against the total, ZUNIONSTORE otherwise (both O(what is added)).
 */
const APPLY = `
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[6], ARGV[2], ARGV[2])
for i = 0, 1 do
  local src, dst = KEYS[2 + i], KEYS[4 + i]
  local m = redis.call('ZCARD', src)
  if m > 0 then
    local n = redis.call('ZCARD', dst)
    if n == 0 then
      redis.call('COPY', src, dst, 'REPLACE')
    elseif m * 8 < n then
      local z = redis.call('ZRANGE', src, 0, -1, 'WITHSCORES')
      for j = 1, #z, 2 do redis.call('ZINCRBY', dst, z[j + 1], z[j]) end
    else
      redis.call('ZUNIONSTORE', dst, 2, dst, src)
    end
  end
end
return 1
`;

/** Marks a VM stopped only if the directory still places it on this host (a migration may have moved it already). */
const VM_GONE = `
if redis.call('HGET', KEYS[1], 'host') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'stopped', 'since', ARGV[2])
return 1
`;

const CHUNK = 10_000;

export interface HostRecord {
  site: string;
  uri: string;
  cpus: number;
  memoryKiB: number;
  freeMemoryKiB: number;
  vms: number;
  sensor: string;
  periodSeconds: number;
  /** Where migrations into the host send memory ('' = the libvirt URI's host). */
  migrateUri?: string;
}

export interface VmRecord {
  uuid: string;
  host: string;
  site: string;
  state: 'running' | 'arriving' | 'stopped';
  mac: string;
  addresses: string[];
  memoryKiB: number;
  vcpus: number;
}

export function connectRedis(url: string, opts: { lazy?: boolean } = {}): Redis {
  let redis: Redis;
  try {
    redis = new Redis(url, {
      lazyConnect: opts.lazy ?? false,
      maxRetriesPerRequest: null,
      enableOfflineQueue: true,
      retryStrategy: (n) => Math.min(200 * n, 2000),
    });
  } catch (err) {
    throw new UserError(`bad Redis URL '${url}' (${(err as Error).message}): use redis://HOST:PORT[/DB]`);
  }
  return redis;
}

export class Store {
  constructor(readonly redis: Redis) {
    redis.defineCommand('vcApply', { numberOfKeys: 6, lua: APPLY });
    redis.defineCommand('vcVmGone', { numberOfKeys: 1, lua: VM_GONE });
  }

  /** Returns true when the report was applied now, false when it already had been. */
  async apply(r: Report): Promise<boolean> {
    const hm = K.hostMsgs(r.period, r.host);
    const hb = K.hostBytes(r.period, r.host);
    const tx = this.redis.multi();
    tx.del(hm, hb);
    for (let i = 0; i < r.pairs.length; i += CHUNK) {
      const chunk = r.pairs.slice(i, i + CHUNK);
      tx.zadd(hm, ...chunk.flatMap(([m, msgs]) => [msgs, m]));
      tx.zadd(hb, ...chunk.flatMap(([m, , bytes]) => [bytes, m]));
    }
    tx.hset(K.meta(r.period), r.host, reportMeta(r));
    (tx as unknown as Record<string, (...a: unknown[]) => void>).vcApply!(
      K.reported(r.period), hm, hb, K.msgs(r.period), K.bytes(r.period), K.periods, r.host, r.period);
    const out = await tx.exec();
    if (!out) throw new Error('Redis aborted the report transaction');
    for (const [err] of out) if (err) throw err;
    return out[out.length - 1]![1] === 1;
  }

  /** Keeps the newest `keep` periods (0: keep all, the seed's default). */
  async trim(keep: number): Promise<number> {
    if (keep <= 0) return 0;
    const old = await this.redis.zrange(K.periods, '0', String(-(keep + 1)));
    if (!old.length) return 0;
    const hosts = await this.redis.smembers(K.hosts);
    const tx = this.redis.multi();
    for (const p of old) tx.unlink(...periodKeys(Number(p), hosts));
    tx.zrem(K.periods, ...old);
    await tx.exec();
    return old.length;
  }

  async registerHost(host: string, rec: HostRecord, now = Date.now()): Promise<void> {
    await this.redis.multi()
      .sadd(K.hosts, host)
      .hsetnx(K.host(host), 'firstSeen', String(now))
      .hset(K.host(host), { ...rec, migrateUri: rec.migrateUri ?? '', lastSeen: now })
      .hsetnx(K.settings, 'periodSeconds', String(rec.periodSeconds))
      .exec();
  }

  async putVm(name: string, rec: VmRecord, now = Date.now()): Promise<void> {
    const tx = this.redis.multi().sadd(K.vms, name);
    const cur = await this.redis.hmget(K.vm(name), 'host', 'state');
    const since = cur[0] === rec.host && cur[1] === rec.state ? undefined : now;
    tx.hset(K.vm(name), { ...rec, addresses: rec.addresses.join(','), ...(since ? { since } : {}) });
    if (rec.addresses.length) tx.hset(K.addr, ...rec.addresses.flatMap((a) => [a, name]));
    await tx.exec();
  }

  async vmGone(name: string, host: string, now = Date.now()): Promise<boolean> {
    const r = await (this.redis as unknown as Record<string, (...a: unknown[]) => Promise<number>>).vcVmGone!(K.vm(name), host, now);
    return r === 1;
  }

  /** Address → VM name, for the whole cluster. */
  async addresses(): Promise<Map<string, string>> {
    return new Map(Object.entries(await this.redis.hgetall(K.addr)));
  }

  async event(fields: Record<string, string | number>): Promise<void> {
    await this.redis.xadd(K.events, 'MAXLEN', '~', EVENTS_MAXLEN, '*', ...Object.entries(fields).flat().map(String));
  }
}
