import { Redis } from 'ioredis';
import { redisTrouble, sentinelAddress, sentinelOptions } from './connection.js';
import { DEFAULT_PRIMARY_NAME, type RedisAuth } from './schema.js';

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
