import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { loadSettings, redactUrl } from './load.js';
import { DEFAULT_REDIS_URL, type RedisAuth, type RedisSettings } from './schema.js';

export { DEFAULT_REDIS_URL, redactUrl };

/**
 * The URL without its userinfo (safe to log and to store in a config that is
 * logged), and the credentials apart. redis.username / password / passwordFile
 * win over what the URL carries.
 */
export function withoutCredentials(r: RedisSettings): { url: string; auth?: RedisAuth } {
  const u = new URL(r.url);
  const username = r.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
  const fromUrl = u.password ? decodeURIComponent(u.password) : undefined;
  const password = r.password ?? (r.passwordFile ? undefined : fromUrl);
  u.username = '';
  u.password = '';
  const auth: RedisAuth = {
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(r.passwordFile ? { passwordFile: r.passwordFile } : {}),
    ...(r.tls ? { tls: { ...r.tls } } : {}),
  };
  return { url: u.toString().replace(/\/$/, ''), ...(Object.keys(auth).length ? { auth } : {}) };
}

/** ioredis options for a URL and its credentials; reads the password and TLS files now. */
export function connectionOptions(url: string, auth: RedisAuth = {}): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UserError(`bad Redis URL '${redactUrl(url)}': use redis://HOST:PORT[/DB] or rediss:// for TLS (redis.url, --redis or VIRT_COHORT_REDIS)`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new UserError(`bad Redis URL '${redactUrl(url)}': use redis://HOST:PORT[/DB] or rediss:// for TLS (redis.url, --redis or VIRT_COHORT_REDIS)`);
  }
  const db = u.pathname.replace(/^\//, '');
  if (db && !/^\d+$/.test(db)) throw new UserError(`bad Redis URL '${redactUrl(url)}': the path must be a database number (/0)`);
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const opts: RedisOptions = { host, port: Number(u.port || 6379), db: Number(db || 0) };
  const username = auth.username ?? (u.username ? decodeURIComponent(u.username) : undefined);
  if (username) opts.username = username;
  let password = auth.password ?? (u.password ? decodeURIComponent(u.password) : undefined);
  if (auth.passwordFile) password = readSecret(auth.passwordFile, 'redis.passwordFile').replace(/\r?\n$/, '');
  if (password) opts.password = password;
  if (u.protocol === 'rediss:') {
    const t = auth.tls ?? {};
    const servername = t.servername ?? (isIP(host) ? undefined : host);
    opts.tls = {
      ...(t.ca ? { ca: readSecret(t.ca, 'redis.tls.ca') } : {}),
      ...(t.cert ? { cert: readSecret(t.cert, 'redis.tls.cert') } : {}),
      ...(t.key ? { key: readSecret(t.key, 'redis.tls.key') } : {}),
      ...(servername ? { servername } : {}),
    };
  }
  return opts;
}

function readSecret(file: string, key: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UserError(`cannot read ${key} ${file} (${e.code ?? e.message}): ${e.code === 'EACCES' ? 'run as root, or make it readable by this user' : 'create it, or correct the path'}`);
  }
}

/** What went wrong with Redis, and what to type. Never holds a secret. */
export function redisTrouble(err: Error, url: string): { problem: string; fix: string } {
  const at = redactUrl(url);
  const m = (err.message ?? String(err)).split('\n')[0]!;
  if (/WRONGPASS|invalid password|invalid username-password/i.test(m)) {
    return { problem: `NOAUTH/WRONGPASS: Redis at ${at} refused the credentials (${m})`, fix: 'check redis.password / redis.passwordFile (or VIRT_COHORT_REDIS_PASSWORD[_FILE]) and redis.username' };
  }
  if (/NOAUTH|Authentication required/i.test(m)) {
    return { problem: `NOAUTH/WRONGPASS: Redis at ${at} needs a password and none was given`, fix: 'check redis.password / redis.passwordFile (or VIRT_COHORT_REDIS_PASSWORD[_FILE])' };
  }
  if (/certificate|self[- ]signed|UNABLE_TO_VERIFY|SSL|TLS|wrong version number|handshake/i.test(m)) {
    return {
      problem: `TLS with Redis at ${at} failed (${m})`,
      fix: "check redis.tls.ca (the CA that signed the server's certificate), redis.tls.servername, and that the server speaks TLS on this port",
    };
  }
  if (/ECONNREFUSED/.test(m)) return { problem: `nothing listens at ${at} (${m})`, fix: 'start Redis (systemctl start redis-server), or correct redis.url (--redis, VIRT_COHORT_REDIS)' };
  if (/ENOTFOUND|EAI_AGAIN/.test(m)) return { problem: `the host of ${at} does not resolve (${m})`, fix: 'correct redis.url (--redis, VIRT_COHORT_REDIS)' };
  if (/ECONNRESET|Connection is closed|socket hang up/i.test(m) && at.startsWith('redis://')) {
    return { problem: `Redis at ${at} closed the connection (${m})`, fix: 'if it only speaks TLS, write the URL as rediss://' };
  }
  return { problem: `cannot reach Redis at ${at} (${m})`, fix: 'start it, or correct redis.url (--redis, VIRT_COHORT_REDIS)' };
}

export function explainRedisError(err: Error, url: string): string {
  const t = redisTrouble(err, url);
  return `${t.problem}: ${t.fix}`;
}

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

/**
 * A connection for a daemon: retries for ever (nothing is lost meanwhile),
 * and says loudly, once a minute at most, when it is refused for a reason a
 * person must fix (credentials, TLS) instead of crashing into a restart loop.
 */
export function connectDaemon(url: string, auth: RedisAuth | undefined = undefined, log: Logger = logger('redis'), opts: { lazy?: boolean } = {}): Redis {
  const redis = new Redis({
    ...connectionOptions(url, auth),
    lazyConnect: opts.lazy ?? false,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (n) => Math.min(200 * n, 2000),
  });
  const said = new Map<string, number>();
  redis.on('error', (err: Error) => {
    const why = explainRedisError(err, url);
    if (!CREDENTIALS_OR_TLS.test(why)) return void log.debug({ err: err.message }, 'redis');
    const last = said.get(why) ?? 0;
    if (Date.now() - last < 60_000) return;
    said.set(why, Date.now());
    log.warn(`${why}; retrying (the daemon keeps running and keeps its data meanwhile)`);
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
  const redis = new Redis({
    ...connectionOptions(url, auth),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    commandTimeout: commandTimeoutMs(),
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
    const t = redisTrouble(cause ?? (err as Error), url);
    throw new RedisConnectError(t.problem, t.fix);
  } finally {
    clearTimeout(timeout);
  }
  return redis;
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
  const target = url === DEFAULT_REDIS_URL ? configured.url : url;
  const given = new URL(target);
  if (given.password || given.username) return { url: target };
  const auth = url === DEFAULT_REDIS_URL || sameEndpoint(url, configured.url) ? configured.auth : withoutCredentials(loadSettings({ file: false, env }).config.redis).auth;
  return { url: target, ...(auth ? { auth } : {}) };
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
