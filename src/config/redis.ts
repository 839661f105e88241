import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { clusterAddress, connectionOptions, explainRedisError, nodeOptions, redisLabel, redisTrouble, usesTls, withoutCredentials } from './connection.js';
import { loadSettings, redactUrl } from './load.js';
import { DEFAULT_REDIS_URL, type RedisAuth } from './schema.js';
import { clusterTrouble } from './cluster.js';
import { sentinelTrouble } from './sentinel.js';

export { connectionOptions, DEFAULT_REDIS_URL, redactUrl, redisLabel, usesTls, withoutCredentials };

/** A connection refused, with what to type apart (doctor prints them apart). */
export class RedisConnectError extends UserError {
  override name = 'RedisConnectError';
  constructor(
    readonly problem: string,
    readonly fix: string,
  ) {
    super(`${problem}: ${fix}`);
  }
}

const CREDENTIALS_OR_TLS = /^(NOAUTH\/WRONGPASS|TLS with)/;
/** How often a daemon says again the same Redis trouble. */
const SAY_EVERY_MS = 60_000;

/**
 * A client of a Redis Cluster (redis.cluster), typed as one Redis: ioredis' Cluster answers the same commands,
 * scripts, pipelines and transactions, each sent to the shard of its keys; every caller here keeps a pipeline,
 * MULTI or script to one slot (src/collector/keys.ts) and reads a keyless command's answer (INFO, WAIT) only
 * behind a keyed one (replicated). `node`: the options of each node's connection; `cluster`: the client's own.
 */
function clusterClient(auth: RedisAuth, node: RedisOptions, cluster: ClusterOptions): Redis {
  const client = new Cluster(auth.cluster!.map(clusterAddress), {
    ...cluster,
    redisOptions: { ...nodeOptions(auth), ...node },
    // Commands issued in the same tick go to each shard as one pipeline: the queries read many periods side by side.
    enableAutoPipelining: true,
    // Writes and reads go to the primaries only: a replica may not have the newest report yet.
    scaleReads: 'master',
  });
  return client as unknown as Redis;
}

/**
 * A connection for a daemon: retries for ever (nothing is lost meanwhile),
 * and says loudly, once a minute at most, when it is refused for a reason a
 * person must fix (credentials, TLS; with sentinels: none answers, none
 * knows the primary's name, they disagree, no quorum, the primary they name
 * does not answer) instead of crashing into a restart loop.
 */
export function connectDaemon(url: string, auth: RedisAuth | undefined = undefined, log: Logger = logger('redis'), opts: { lazy?: boolean } = {}): Redis {
  const sentinel = Boolean(auth?.sentinels?.length);
  const retry = (n: number) => Math.min(200 * n, 2000);
  if (auth?.cluster?.length) {
    const redis = clusterClient(auth, { maxRetriesPerRequest: null }, { lazyConnect: opts.lazy ?? false, enableOfflineQueue: true, clusterRetryStrategy: retry });
    redis.on('error', (err: Error) => log.warn(`${explainRedisError(err, url, auth)}; retrying (the daemon keeps running and keeps its data meanwhile)`));
    return redis;
  }
  const redis = new Redis({
    ...connectionOptions(url, auth),
    lazyConnect: opts.lazy ?? false,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: retry,
    ...(sentinel
      ? {
          sentinelRetryStrategy: (n: number) => Math.min(200 * n, 2000),
          // Not ioredis' failoverDetector: its disconnect on +switch-master, landing while a reconnection
          // is asking the sentinels, ends the connection for good (status 'end': seen in
          // test/collector/sentinel.test.ts). A dead primary closes the connection by itself, and a
          // demoted one that still answers refuses writes (READONLY): reconnect then, and send the write again.
          reconnectOnError: (err: Error) => (/^READONLY/.test(err.message) ? 2 : false),
        }
      : {}),
  });
  const said = new Map<string, number>();
  const say = (why: string) => {
    const last = said.get(why) ?? 0;
    if (Date.now() - last < SAY_EVERY_MS) return;
    said.set(why, Date.now());
    log.warn(`${why}; retrying (the daemon keeps running and keeps its data meanwhile)`);
  };
  let diagnosing = false;
  let diagnosedAt = -Infinity;
  redis.on('error', (err: Error) => {
    const why = explainRedisError(err, url, auth);
    if (CREDENTIALS_OR_TLS.test(why)) return say(why);
    log.debug({ err: err.message }, 'redis');
    if (!sentinel || diagnosing || Date.now() - diagnosedAt < SAY_EVERY_MS) return;
    // Through sentinels, ioredis' own words ("All sentinels are unreachable") do not say what is wrong: ask them.
    diagnosing = true;
    diagnosedAt = Date.now();
    void sentinelTrouble(err, url, auth!)
      .then((t) => say(`${t.problem}: ${t.fix}`))
      .finally(() => {
        diagnosing = false;
      });
  });
  return redis;
}

/**
 * How long a command waits for one Redis reply before it gives up: a Redis
 * that stops answering must not hang `stats` or `manager --once` for ever.
 * VIRT_COHORT_REDIS_TIMEOUT (seconds) changes it.
 */
export function commandTimeoutMs(env: NodeJS.ProcessEnv = process.env): number {
  const s = Number(env.VIRT_COHORT_REDIS_TIMEOUT ?? 10);
  return Number.isFinite(s) && s > 0 ? Math.round(s * 1000) : 10_000;
}

/**
 * The message for an error of a command whose Redis went away after the
 * connection was made (ioredis' own words), or undefined for other errors.
 */
export function redisGone(err: unknown): string | undefined {
  const m = err instanceof Error ? err.message : '';
  if (!/^(Command timed out|Connection is closed|Stream isn't writeable)|ECONNRESET|EPIPE/.test(m)) return undefined;
  return (
    `Redis stopped answering (${m.replace(/\.$/, '')}, after ${commandTimeoutMs() / 1000} s at most): check that it runs and is not overloaded ` +
    '(redis-cli -u URL ping); VIRT_COHORT_REDIS_TIMEOUT=SECONDS waits longer'
  );
}

/** A connection that asks and exits: connects within `timeoutMs`, each command within commandTimeoutMs(), and says what to do. */
export async function connectChecked(url: string, auth: RedisAuth | undefined, timeoutMs = 3000): Promise<Redis> {
  const sentinel = Boolean(auth?.sentinels?.length);
  const redis = auth?.cluster?.length
    ? clusterClient(
        auth,
        { connectTimeout: timeoutMs, maxRetriesPerRequest: 1, commandTimeout: commandTimeoutMs() },
        { lazyConnect: true, enableOfflineQueue: false, clusterRetryStrategy: () => null },
      )
    : new Redis({
        ...connectionOptions(url, auth),
        lazyConnect: true,
        connectTimeout: timeoutMs,
        maxRetriesPerRequest: 1,
        enableOfflineQueue: false,
        retryStrategy: () => null,
        commandTimeout: commandTimeoutMs(),
        ...(sentinel ? { sentinelRetryStrategy: () => null, sentinelCommandTimeout: timeoutMs } : {}),
      });
  let cause: Error | undefined;
  redis.on('error', (err: Error) => {
    cause ??= err;
  }); // reported by the failed connect() below
  let timeout: NodeJS.Timeout | undefined;
  const timer = new Promise<never>((_, reject) => {
    timeout = setTimeout(() => reject(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([redis.connect(), timer]);
    await Promise.race([redis.ping(), timer]);
  } catch (err) {
    if (redis.status !== 'end') redis.disconnect();
    const e = cause ?? (err as Error);
    const t = sentinel ? await sentinelTrouble(e, url, auth!, timeoutMs) : auth?.cluster?.length ? await clusterTrouble(e, url, auth, timeoutMs) : redisTrouble(e, url, auth);
    throw new RedisConnectError(t.problem, t.fix);
  } finally {
    clearTimeout(timeout);
  }
  return redis;
}

/**
 * Waits until the writes this connection made so far are on a replica, when
 * the Redis it reaches has replicas: `WAIT 1`. Replication is asynchronous,
 * so a write Redis acknowledged can still vanish in a failover (the primary
 * dies before sending it on, and Sentinel promotes a replica that never had
 * it); a write a replica acknowledged survives, as Sentinel promotes the
 * replica with the most data. With no replica connected there is nothing to
 * wait for (and nothing a failover could promote). Returns how many replicas
 * are connected and how many acknowledged within `timeoutMs`. `key`: one the
 * writes touched (in a cluster, WAIT counts the replicas of its shard).
 */
export async function replicated(redis: Redis, timeoutMs: number, key: string): Promise<{ replicas: number; acked: number }> {
  // INFO and WAIT have no key: behind EXISTS `key` in one pipeline, a Redis Cluster sends them to the shard
  // that holds `key` (the one the writes went to); on one Redis the key changes nothing.
  const [, info] = (await redis.pipeline().exists(key).info('replication').exec()) ?? [];
  if (info?.[0]) throw info[0];
  const replicas = Number(/connected_slaves:(\d+)/.exec(String(info?.[1]))?.[1] ?? 0);
  if (!replicas) return { replicas, acked: 0 };
  const [, acked] = (await redis.pipeline().exists(key).wait(1, timeoutMs).exec()) ?? [];
  if (acked?.[0]) throw acked[0];
  return { replicas, acked: Number(acked?.[1]) };
}

/**
 * For commands (stats, migrate, history, ...): `url` is their --redis. The
 * default URL means "the configured Redis" (the file's redis section and the
 * environment). The file's credentials and TLS go with the file's endpoint
 * only, so that they are never sent to another server; credentials from the
 * environment (this shell's choice) go with whatever URL is used.
 */
export function commandTarget(url: string, env: NodeJS.ProcessEnv = process.env): { url: string; auth?: RedisAuth } {
  const configured = withoutCredentials(loadSettings({ env }).config.redis);
  if (url === DEFAULT_REDIS_URL) return configured;
  const given = new URL(url);
  if (given.password || given.username) return { url };
  // Another Redis than the configured one: without the configuration's sentinels.
  const {
    sentinels: _s,
    primaryName: _p,
    sentinelPasswordFile: _f,
    ...data
  } = (!configured.auth?.sentinels?.length && sameEndpoint(url, configured.url) ? configured.auth : withoutCredentials(loadSettings({ file: false, env }).config.redis).auth) ?? {};
  return { url, ...(Object.keys(data).length ? { auth: data } : {}) };
}

function sameEndpoint(a: string, b: string): boolean {
  try {
    const x = new URL(a);
    const y = new URL(b);
    return x.protocol === y.protocol && x.hostname === y.hostname && (x.port || '6379') === (y.port || '6379');
  } catch {
    return false;
  }
}

/** A connection for a command (--redis URL, or the configured Redis), with the configuration's AUTH and TLS. */
export async function connectOnce(url: string, timeoutMs = 3000): Promise<Redis> {
  const t = commandTarget(url);
  return connectChecked(t.url, t.auth, timeoutMs);
}
