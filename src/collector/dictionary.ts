import type { Redis } from 'ioredis';
import { K } from './keys.js';
import type { Packed } from './packed.js';
import { results } from './results.js';

/**
 * The cluster's pair dictionary read back: id → pair member. The names live
 * in segments (vc:{vc}:pair:names field id / NAME_SEGMENT: the names of those ids,
 * in id order, joined by NUL, which no VM name or address holds). Ids never
 * change meaning within one dictionary, so the segments already read are kept
 * per connection and read again only when they lack an id (the newest segment
 * grows). Each dictionary (epoch) has its own cache, dropped when Redis is not the same process
 * (its run_id changed: a restart may have reloaded an older snapshot, in which
 * recent ids were lost and may since have been given to other members).
 */
export const NAME_SEGMENT = 4096;
export const NAME_SEP = '\0';

interface Cache {
  run: string;
  segments: Map<number, string[]>;
}

/** Per connection, per dictionary epoch: the name segments read so far. */
const caches = new WeakMap<Redis, Map<string, Cache>>();

/** The run_id of the Redis process holding the pair dictionary: a new one after every restart or failover. */
export async function runId(redis: Redis): Promise<string> {
  // INFO has no key: in a pipeline behind one that has, a Redis Cluster sends it to that key's shard.
  const [, info] = await results(redis.pipeline().exists(K.pairDict).info('server'), 'the run_id');
  return /run_id:([0-9a-f]+)/.exec(info as string)?.[1] ?? '';
}

/** The current dictionary's epoch, or null when no report was ever written. */
export async function dictionaryEpoch(redis: Redis): Promise<string | null> {
  return redis.hget(K.pairDict, 'epoch');
}

/**
 * The members of `ids`, in the same order, from the dictionary whose epoch is
 * `epoch` (the packed reports' own): the current one, or a retired one still
 * kept for the periods that use it. Throws when neither, or an id is unknown.
 */
export async function pairNames(redis: Redis, ids: ArrayLike<number>, epoch: string): Promise<string[]> {
  const [[current, retired], run] = await Promise.all([redis.hmget(K.pairDict, 'epoch', `retired:${epoch}`), runId(redis)]);
  if (current !== epoch && retired === null) {
    throw new Error(
      `reports were written with pair dictionary ${epoch}, but vc:{vc}:pair:dict holds ${current ?? 'none'} and has not kept it: ` +
        'the dictionary was deleted while periods that use it were kept; delete those periods (or wait for retention)',
    );
  }
  const key = current === epoch ? K.pairNames : K.retiredNames(epoch);
  let byEpoch = caches.get(redis);
  if (!byEpoch) caches.set(redis, (byEpoch = new Map()));
  let cache = byEpoch.get(epoch);
  if (!cache || cache.run !== run) {
    if (!cache && byEpoch.size >= 4) byEpoch.delete(byEpoch.keys().next().value!); // a few dictionaries at most are read at once
    byEpoch.set(epoch, (cache = { run, segments: new Map() }));
  }
  const segments = cache.segments;
  const ask = new Set<number>();
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const seg = Math.floor(id / NAME_SEGMENT);
    if ((segments.get(seg)?.length ?? 0) <= id - seg * NAME_SEGMENT) ask.add(seg);
  }
  if (ask.size) {
    const list = [...ask];
    const got = await redis.hmget(key, ...list.map(String));
    list.forEach((seg, k) => segments.set(seg, got[k] === null ? [] : got[k]!.split(NAME_SEP)));
  }
  return Array.from(ids, (id) => {
    const seg = Math.floor(id / NAME_SEGMENT);
    const name = segments.get(seg)![id - seg * NAME_SEGMENT];
    if (name === undefined) throw new Error(`pair id ${id} is not in ${key} (dictionary ${epoch})`);
    return name;
  });
}

/**
 * Reports of a span may come from two pair dictionaries (a new one began in
 * it, the old one kept until retention drops it): their ids are moved into one
 * space, each dictionary's after the one before (in place: the blobs were
 * decoded for this query). Returns each dictionary's first id there.
 */
export function oneIdSpace(blobs: Packed[]): Map<string, number> {
  const top = new Map<string, number>();
  for (const p of blobs) {
    let m = top.get(p.epoch) ?? -1;
    for (let j = 0; j < p.ids.length; j++) if (p.ids[j]! > m) m = p.ids[j]!;
    top.set(p.epoch, m);
  }
  const base = new Map<string, number>();
  let next = 0;
  for (const [e, m] of top) {
    base.set(e, next);
    next += m + 1;
  }
  for (const p of blobs) {
    const b = base.get(p.epoch)!;
    if (b) p.ids = Uint32Array.from(p.ids, (id) => id + b);
  }
  return base;
}

/** The members of `ids` (in the space oneIdSpace made), each asked of its own dictionary. */
export async function namesOf(redis: Redis, ids: number[], base: Map<string, number>): Promise<string[]> {
  const out = new Array<string>(ids.length);
  const bounds = [...base].sort((a, b) => a[1] - b[1]);
  for (const [i, [epoch, from]] of bounds.entries()) {
    const to = bounds[i + 1]?.[1] ?? Infinity;
    const at = ids.flatMap((id, k) => (id >= from && id < to ? [k] : []));
    const names = await pairNames(
      redis,
      at.map((k) => ids[k]! - from),
      epoch,
    );
    at.forEach((k, j) => {
      out[k] = names[j]!;
    });
  }
  return out;
}
