import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { RedisOptions } from 'ioredis';
import { UserError } from '../util/errors.js';
import { redactUrl } from './load.js';
import { DEFAULT_PRIMARY_NAME, HOST_PORT_RE, type RedisAuth, type RedisSettings } from './schema.js';

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
    ...(r.sentinels.length ? { sentinels: [...r.sentinels], primaryName: r.primaryName, ...(r.sentinelPasswordFile ? { sentinelPasswordFile: r.sentinelPasswordFile } : {}) } : {}),
    ...(r.cluster.length ? { cluster: [...r.cluster] } : {}),
  };
  return { url: u.toString().replace(/\/$/, ''), ...(Object.keys(auth).length ? { auth } : {}) };
}

/** Where a connection goes, for messages and logs (never a secret): the URL, or the sentinels and the primary's name. */
export function redisLabel(url: string, auth?: RedisAuth): string {
  if (auth?.cluster?.length) return `Redis Cluster of nodes ${auth.cluster.join(',')}`;
  if (auth?.sentinels?.length) return `primary '${auth.primaryName ?? DEFAULT_PRIMARY_NAME}' of sentinels ${auth.sentinels.join(',')}`;
  return redactUrl(url);
}

/** Whether the data nodes are reached over TLS: a rediss:// URL, or a tls section with sentinels or a cluster. */
export function usesTls(url: string, auth?: RedisAuth): boolean {
  return auth?.sentinels?.length || auth?.cluster?.length ? Boolean(auth.tls) : url.startsWith('rediss:');
}

/** A sentinel's HOST:PORT (26379 if none). */
export function sentinelAddress(s: string): { host: string; port: number } {
  const m = HOST_PORT_RE.exec(s.trim());
  if (!m) throw new UserError(`bad sentinel '${s}': write HOST:PORT (redis.sentinels, --redis-sentinels or VIRT_COHORT_REDIS_SENTINELS)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]?.slice(1) ?? 26379) };
}

/** A cluster node's HOST:PORT (6379 if none). */
export function clusterAddress(s: string): { host: string; port: number } {
  const m = HOST_PORT_RE.exec(s.trim());
  if (!m) throw new UserError(`bad cluster node '${s}': write HOST:PORT (redis.cluster, --redis-cluster or VIRT_COHORT_REDIS_CLUSTER)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]?.slice(1) ?? 6379) };
}

/** What every data node gets, through sentinels or in a cluster (ioredis' `redisOptions`): the username, the password (read now), TLS. */
export function nodeOptions(auth: RedisAuth): RedisOptions {
  const opts: RedisOptions = {};
  if (auth.username) opts.username = auth.username;
  const password = auth.passwordFile ? readSecret(auth.passwordFile, 'redis.passwordFile').replace(/\r?\n$/, '') : auth.password;
  if (password) opts.password = password;
  if (auth.tls) opts.tls = tlsOptions(auth.tls);
  return opts;
}

function tlsOptions(t: NonNullable<RedisAuth['tls']>, host?: string): ConnectionOptions {
  const servername = t.servername ?? (host && !isIP(host) ? host : undefined);
  return {
    ...(t.ca ? { ca: readSecret(t.ca, 'redis.tls.ca') } : {}),
    ...(t.cert ? { cert: readSecret(t.cert, 'redis.tls.cert') } : {}),
    ...(t.key ? { key: readSecret(t.key, 'redis.tls.key') } : {}),
    ...(servername ? { servername } : {}),
  };
}

/**
 * ioredis options for Sentinel: ioredis asks the sentinels, in turn, where the
 * primary is, checks that the node it reaches is a primary (role), and asks
 * again after each disconnection. The data nodes get the configured username,
 * password and TLS; the sentinels only their own password (sentinelPasswordFile)
 * and the same TLS.
 */
export function sentinelOptions(auth: RedisAuth): RedisOptions {
  const opts: RedisOptions = {
    sentinels: auth.sentinels!.map(sentinelAddress),
    name: auth.primaryName ?? DEFAULT_PRIMARY_NAME,
    role: 'master',
    db: 0,
    ...nodeOptions(auth),
  };
  if (auth.sentinelPasswordFile) opts.sentinelPassword = readSecret(auth.sentinelPasswordFile, 'redis.sentinelPasswordFile').replace(/\r?\n$/, '');
  if (auth.tls) {
    opts.sentinelTLS = tlsOptions(auth.tls);
    opts.enableTLSForSentinelMode = true;
  }
  return opts;
}

/** ioredis options for a URL and its credentials (or for the sentinels that `auth` lists); reads the password and TLS files now. */
export function connectionOptions(url: string, auth: RedisAuth = {}): RedisOptions {
  if (auth.sentinels?.length) return sentinelOptions(auth);
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
  if (u.protocol === 'rediss:') opts.tls = tlsOptions(auth.tls ?? {}, host);
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

/** What went wrong with Redis, and what to type. Never holds a secret. `auth`: with sentinels, the messages name them. */
export function redisTrouble(err: Error, url: string, auth?: RedisAuth): { problem: string; fix: string } {
  const at = redisLabel(url, auth);
  const where = auth?.sentinels?.length
    ? 'redis.sentinels and redis.primaryName (--redis-sentinels, --redis-primary)'
    : auth?.cluster?.length
      ? 'redis.cluster (--redis-cluster, VIRT_COHORT_REDIS_CLUSTER)'
      : 'redis.url (--redis, VIRT_COHORT_REDIS)';
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
  if (/Failed to refresh slots cache|None of startup nodes is available/i.test(m)) {
    return { problem: `no node of the ${at} answers (${m})`, fix: `start the cluster's nodes, or correct ${where}` };
  }
  if (/CLUSTERDOWN/.test(m)) {
    return { problem: `the ${at} is down (${m})`, fix: 'some hash slots have no primary: redis-cli --cluster check HOST:PORT says which, and redis-cli --cluster fix covers them' };
  }
  if (/ECONNREFUSED/.test(m)) return { problem: `nothing listens at ${at} (${m})`, fix: `start Redis (systemctl start redis-server), or correct ${where}` };
  if (/ENOTFOUND|EAI_AGAIN/.test(m)) return { problem: `the host of ${at} does not resolve (${m})`, fix: `correct ${where}` };
  if (/ECONNRESET|Connection is closed|socket hang up/i.test(m) && at.startsWith('redis://')) {
    return { problem: `Redis at ${at} closed the connection (${m})`, fix: 'if it only speaks TLS, write the URL as rediss://' };
  }
  return { problem: `cannot reach Redis at ${at} (${m})`, fix: `start it, or correct ${where}` };
}

export function explainRedisError(err: Error, url: string, auth?: RedisAuth): string {
  const t = redisTrouble(err, url, auth);
  return `${t.problem}: ${t.fix}`;
}
