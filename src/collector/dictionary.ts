import type { Redis } from 'ioredis';
import { K } from './keys.js';

/**
 * The cluster's pair dictionary read back: id → pair member. The names live
 * in segments (vc:pair:names field id / NAME_SEGMENT: the names of those ids,
 * in id order, joined by NUL, which no VM name or address holds). Ids never
 * change meaning within one dictionary, so the segments already read are kept
 * per connection and read again only when they lack an id (the newest segment
 * grows). The cache is dropped when the dictionary is not the same one (its
 * epoch changed: deleted and created again) or Redis is not the same process
 * (its run_id changed: a restart may have reloaded an older snapshot, in which
 * recent ids were lost and may since have been given to other members).
 */
export const NAME_SEGMENT = 4096;
export const NAME_SEP = '\0';

interface Cache {
  epoch: string;
  run: string;
  segments: Map<number, string[]>;
}

const caches = new WeakMap<Redis, Cache>();

/** Redis's run_id: a new one after every restart. */
export async function runId(redis: Redis): Promise<string> {
  return /run_id:([0-9a-f]+)/.exec(await redis.info('server'))?.[1] ?? '';
}

/** The current dictionary's epoch, or null when no report was ever written. */
export async function dictionaryEpoch(redis: Redis): Promise<string | null> {
  return redis.hget(K.pairDict, 'epoch');
}

/**
 * The members of `ids`, in the same order, from the dictionary whose epoch is
 * `epoch` (the packed reports' own). Throws when the reports were written
 * against another dictionary, or an id is unknown.
 */
export async function pairNames(redis: Redis, ids: ArrayLike<number>, epoch: string): Promise<string[]> {
  const [current, run] = await Promise.all([dictionaryEpoch(redis), runId(redis)]);
  if (current !== epoch) {
    throw new Error(
      `reports were written with pair dictionary ${epoch}, but vc:pair:dict holds ${current ?? 'none'}: ` +
        'the dictionary was deleted while periods that use it were kept; delete those periods (or wait for retention)',
    );
  }
  let cache = caches.get(redis);
  if (!cache || cache.epoch !== epoch || cache.run !== run) caches.set(redis, (cache = { epoch, run, segments: new Map() }));
  const segments = cache.segments;
  const ask = new Set<number>();
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const seg = Math.floor(id / NAME_SEGMENT);
    if ((segments.get(seg)?.length ?? 0) <= id - seg * NAME_SEGMENT) ask.add(seg);
  }
  if (ask.size) {
    const list = [...ask];
    const got = await redis.hmget(K.pairNames, ...list.map(String));
    list.forEach((seg, k) => segments.set(seg, got[k] === null ? [] : got[k]!.split(NAME_SEP)));
  }
  return Array.from(ids, (id) => {
    const seg = Math.floor(id / NAME_SEGMENT);
    const name = segments.get(seg)![id - seg * NAME_SEGMENT];
    if (name === undefined) throw new Error(`pair id ${id} is not in vc:pair:names (dictionary ${epoch})`);
    return name;
  });
}
