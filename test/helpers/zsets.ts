// The readable zsets of a period, all hosts together, as a person reads them with redis-cli:
// ZUNION over the hosts of the period's reported set (the zsets are per host: K.hostMsgs).
import type { Cluster, Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';

type Kind = 'msgs' | 'bytes';
const keyOf = (p: number, h: string, kind: Kind) => (kind === 'msgs' ? K.hostMsgs(p, h) : K.hostBytes(p, h));

/** Period p's zsets, every reported host's summed, as ZRANGE ... WITHSCORES gives them (member, score, ...: by score). */
export async function periodZset(redis: Redis | Cluster, p: number, kind: Kind = 'msgs'): Promise<string[]> {
  const hosts = await redis.smembers(K.reported(p));
  if (!hosts.length) return [];
  // ioredis' zunion may give [member, score] pairs: flattened to ZRANGE's shape.
  return ((await redis.zunion(hosts.length, ...hosts.map((h) => keyOf(p, h, kind)), 'AGGREGATE', 'SUM', 'WITHSCORES')) as (string | string[])[]).flat();
}

/** Period p's members, every reported host's. */
export async function periodMembers(redis: Redis | Cluster, p: number, kind: Kind = 'msgs'): Promise<string[]> {
  return (await periodZset(redis, p, kind)).filter((_, i) => i % 2 === 0);
}

/** One member's score in period p, every reported host's summed; null when no host's zset holds it. */
export async function periodScore(redis: Redis | Cluster, p: number, member: string, kind: Kind = 'msgs'): Promise<string | null> {
  const z = await periodZset(redis, p, kind);
  const i = z.findIndex((m, k) => k % 2 === 0 && m === member);
  return i < 0 ? null : z[i + 1]!;
}

/** How many of period p's zsets exist (a :msgs and a :bytes for each reported host that has them). */
export async function periodZsets(redis: Redis | Cluster, p: number): Promise<number> {
  const hosts = await redis.smembers(K.reported(p));
  return hosts.length ? redis.exists(...hosts.flatMap((h) => [K.hostMsgs(p, h), K.hostBytes(p, h)])) : 0;
}
