import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import { UserError } from '../util/errors.js';
import { logger } from '../util/log.js';
import { loadSettings, redactUrl } from './load.js';
import { DEFAULT_PRIMARY_NAME, DEFAULT_REDIS_URL, HOST_PORT_RE, type RedisAuth, type RedisSettings } from './schema.js';

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
    ...(r.sentinels.length ? { sentinels: [...r.sentinels], primaryName: r.primaryName, ...(r.sentinelPasswordFile ? { sentinelPasswordFile: r.sentinelPasswordFile } : {}) } : {}),
  };
  return { url: u.toString().replace(/\/$/, ''), ...(Object.keys(auth).length ? { auth } : {}) };
}

/** Where a connection goes, for messages and logs (never a secret): the URL, or the sentinels and the primary's name. */
export function redisLabel(url: string, auth?: RedisAuth): string {
  if (auth?.sentinels?.length) return `primary '${auth.primaryName ?? DEFAULT_PRIMARY_NAME}' of sentinels ${auth.sentinels.join(',')}`;
  return redactUrl(url);
}

/** Whether the data nodes are reached over TLS: a rediss:// URL, or a tls section with sentinels. */
export function usesTls(url: string, auth?: RedisAuth): boolean {
  return auth?.sentinels?.length ? Boolean(auth.tls) : url.startsWith('rediss:');
}

/** A sentinel's HOST:PORT (26379 if none). */
export function sentinelAddress(s: string): { host: string; port: number } {
  const m = HOST_PORT_RE.exec(s.trim());
  if (!m) throw new UserError(`bad sentinel '${s}': write HOST:PORT (redis.sentinels, --redis-sentinels or VIRT_COHORT_REDIS_SENTINELS)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]?.slice(1) ?? 26379) };
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
function sentinelOptions(auth: RedisAuth): RedisOptions {
  const opts: RedisOptions = {
    sentinels: auth.sentinels!.map(sentinelAddress),
    name: auth.primaryName ?? DEFAULT_PRIMARY_NAME,
    role: 'master',
    db: 0,
  };
  if (auth.username) opts.username = auth.username;
  const password = auth.passwordFile ? readSecret(auth.passwordFile, 'redis.passwordFile').replace(/\r?\n$/, '') : auth.password;
  if (password) opts.password = password;
  if (auth.sentinelPasswordFile) opts.sentinelPassword = readSecret(auth.sentinelPasswordFile, 'redis.sentinelPasswordFile').replace(/\r?\n$/, '');
  if (auth.tls) {
    opts.tls = tlsOptions(auth.tls);
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
  const where = auth?.sentinels?.length ? 'redis.sentinels and redis.primaryName (--redis-sentinels, --redis-primary)' : 'redis.url (--redis, VIRT_COHORT_REDIS)';
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

// ---- Sentinel ------------------------------------------------------------

/** What one sentinel says of the primary (SENTINEL commands), or why it said nothing. */
export interface SentinelAnswer {
  /** HOST:PORT as configured. */
  sentinel: string;
  /** It did not answer, or refused (its words). */
  error?: string;
  /** The primary it names (HOST:PORT); undefined when it knows no primary by that name. */
  primary?: string;
  /** The primaries it monitors, when it does not know ours. */
  names?: string[];
  /** SENTINEL CKQUORUM: whether enough sentinels run to fail over, in its words. */
  quorum?: { ok: boolean; text: string };
  /** The primary's replicas it knows, and how many of them are up. */
  replicas?: { total: number; up: number };
  /** The other sentinels it knows for this primary. */
  peers?: number;
}

const fields = (flat: unknown): Record<string, string> => {
  const a = Array.isArray(flat) ? (flat as string[]) : [];
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < a.length; i += 2) o[a[i]!] = a[i + 1]!;
  return o;
};

/** Asks every configured sentinel, at once, what it knows of the primary `auth.primaryName`. */
export async function inspectSentinels(auth: RedisAuth, timeoutMs = 3000): Promise<SentinelAnswer[]> {
  const name = auth.primaryName ?? DEFAULT_PRIMARY_NAME;
  const base = sentinelOptions(auth);
  return Promise.all(
    (auth.sentinels ?? []).map(async (sentinel): Promise<SentinelAnswer> => {
      const { host, port } = sentinelAddress(sentinel);
      const c = new Redis({
        host,
        port,
        ...(base.sentinelPassword ? { password: base.sentinelPassword } : {}),
        ...(base.sentinelTLS ? { tls: base.sentinelTLS } : {}),
        lazyConnect: true,
        connectTimeout: timeoutMs,
        commandTimeout: timeoutMs,
        retryStrategy: () => null,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        enableReadyCheck: false,
      });
      let first: Error | undefined;
      c.on('error', (err: Error) => {
        first ??= err;
      }); // said below, with the failed call
      try {
        await c.connect();
        const addr = (await c.call('SENTINEL', 'get-master-addr-by-name', name)) as [string, string] | null;
        if (!addr) {
          const masters = (await c.call('SENTINEL', 'masters')) as unknown[];
          return { sentinel, names: masters.map((m) => fields(m).name ?? '?') };
        }
        const quorum = await c.call('SENTINEL', 'ckquorum', name).then(
          (t) => ({ ok: true, text: String(t) }),
          (err: Error) => ({ ok: false, text: err.message }),
        );
        const replicas = ((await c.call('SENTINEL', 'replicas', name)) as unknown[]).map(fields);
        const peers = ((await c.call('SENTINEL', 'sentinels', name)) as unknown[]).length;
        const up = replicas.filter((r) => !/s_down|o_down|disconnected/.test(r.flags ?? '')).length;
        return { sentinel, primary: `${addr[0]}:${addr[1]}`, quorum, replicas: { total: replicas.length, up }, peers };
      } catch (err) {
        // A refused connection fails connect() with "Connection is closed."; the error event had the cause.
        return { sentinel, error: (first ?? (err as Error)).message.split('\n')[0]! };
      } finally {
        c.disconnect();
      }
    }),
  );
}

/** The sentinels' problems, worst first: none answer, none knows the name, they disagree, no quorum. Each with what to type. */
export function sentinelProblems(answers: SentinelAnswer[], name: string): { problem: string; fix: string }[] {
  const out: { problem: string; fix: string }[] = [];
  const answered = answers.filter((a) => !a.error);
  const failed = answers.filter((a) => a.error);
  const why = failed.map((a) => `${a.sentinel}: ${a.error}`).join('; ');
  if (!answered.length) {
    const auth = failed.some((a) => /NOAUTH|WRONGPASS|Authentication required|invalid password/i.test(a.error!));
    out.push({
      problem: `no sentinel answers (${why})`,
      fix: auth
        ? "check redis.sentinelPasswordFile (VIRT_COHORT_REDIS_SENTINEL_PASSWORD_FILE): the sentinels' requirepass"
        : 'start redis-sentinel on them (systemctl start redis-sentinel), or correct redis.sentinels (--redis-sentinels, VIRT_COHORT_REDIS_SENTINELS)',
    });
    return out;
  }
  const knowing = answered.filter((a) => a.primary);
  if (!knowing.length) {
    const names = [...new Set(answered.flatMap((a) => a.names ?? []))];
    out.push({
      problem: `no sentinel knows a primary named '${name}' (they monitor: ${names.join(', ') || 'nothing'})`,
      fix: `set redis.primaryName (--redis-primary, VIRT_COHORT_REDIS_PRIMARY) to the name of their 'sentinel monitor NAME HOST PORT QUORUM' line${names.length === 1 ? `: ${names[0]}` : ''}`,
    });
    return out;
  }
  const says = new Map<string, string[]>();
  for (const a of knowing) says.set(a.primary!, [...(says.get(a.primary!) ?? []), a.sentinel]);
  if (says.size > 1 || knowing.length < answered.length) {
    const parts = [...says].map(([p, ss]) => `${ss.join(', ')} ${ss.length > 1 ? 'say' : 'says'} ${p}`);
    const unaware = answered.filter((a) => !a.primary).map((a) => a.sentinel);
    if (unaware.length) parts.push(`${unaware.join(', ')} ${unaware.length > 1 ? 'know' : 'knows'} no '${name}'`);
    out.push({
      problem: `the sentinels disagree on the primary of '${name}': ${parts.join('; ')}`,
      fix: "a failover may be under way: wait a few seconds; if it lasts, the sentinels do not all monitor the same Redis under this name, or do not reach each other: check each one's 'sentinel monitor' line and SENTINEL SENTINELS",
    });
  }
  const noQuorum = knowing.find((a) => a.quorum && !a.quorum.ok);
  if (noQuorum) {
    out.push({
      problem: `the sentinels cannot fail over '${name}' (${noQuorum.sentinel}: ${noQuorum.quorum!.text})`,
      fix: `start the sentinels that are down so that a majority of them run${failed.length ? ` (not answering: ${failed.map((a) => a.sentinel).join(', ')})` : ''}; or lower the quorum in 'sentinel monitor ${name} HOST PORT QUORUM'`,
    });
  }
  return out;
}

/** Why a connection through the sentinels failed, in the sentinels' words when they explain it; else ioredis'. */
export async function sentinelTrouble(err: Error, url: string, auth: RedisAuth, timeoutMs = 3000): Promise<{ problem: string; fix: string }> {
  const name = auth.primaryName ?? DEFAULT_PRIMARY_NAME;
  const answers = await inspectSentinels(auth, timeoutMs).catch(() => []);
  const [first] = sentinelProblems(answers, name);
  if (first) return first;
  const primary = answers.find((a) => a.primary)?.primary;
  const t = redisTrouble(err, url, auth);
  if (!primary || /^(NOAUTH\/WRONGPASS|TLS with)/.test(t.problem)) return t;
  return {
    problem: `the sentinels name ${primary} as the primary of '${name}', and it does not answer (${(err.message ?? '').split('\n')[0]})`,
    fix: 'start Redis there; if it is gone for good, the sentinels promote a replica within their down-after-milliseconds and failover (a majority of them must run)',
  };
}

const CREDENTIALS_OR_TLS = /^(NOAUTH\/WRONGPASS|TLS with)/;
/** How often a daemon says again the same Redis trouble. */
const SAY_EVERY_MS = 60_000;

/**
 * A connection for a daemon: retries for ever (nothing is lost meanwhile),
 * and says loudly, once a minute at most, when it is refused for a reason a
 * person must fix (credentials, TLS; with sentinels: none answers, none
 * knows the primary's name, they disagree, no quorum, the primary they name
 * does not answer) instead of crashing into a restart loop.
 */
export function connectDaemon(url: string, auth: RedisAuth | undefined = undefined, log: Logger = logger('redis'), opts: { lazy?: boolean } = {}): Redis {
  const sentinel = Boolean(auth?.sentinels?.length);
  const redis = new Redis({
    ...connectionOptions(url, auth),
    lazyConnect: opts.lazy ?? false,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: (n) => Math.min(200 * n, 2000),
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
  const redis = new Redis({
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
    const t = sentinel ? await sentinelTrouble(e, url, auth!, timeoutMs) : redisTrouble(e, url, auth);
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
 * are connected and how many acknowledged within `timeoutMs`.
 */
export async function replicated(redis: Redis, timeoutMs: number): Promise<{ replicas: number; acked: number }> {
  const replicas = Number(/connected_slaves:(\d+)/.exec(await redis.info('replication'))?.[1] ?? 0);
  if (!replicas) return { replicas, acked: 0 };
  return { replicas, acked: Number(await redis.wait(1, timeoutMs)) };
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
