import type { Redis } from 'ioredis';
import { NAME_SEGMENT, pairNames } from './dictionary.js';
import { EVENTS_MAXLEN, K, periodKeys } from './keys.js';
import { decodePacked, encodePacked, newEpoch } from './packed.js';
import { reportMeta, type Report } from './report.js';
import type { Counts } from './resolve.js';
import { Registry } from './registry.js';
import { results } from './results.js';
import { defineScripts } from './scripts.js';

/** Default Store options: a report of up to INLINE_PAIRS pairs is written into its zsets inside its guard (tens of ms of Redis at 10k). */
export const INLINE_PAIRS = 10_000;
/** Pairs per materialise script: each blocks Redis for tens of ms at 10k, and other clients go between them. */
export const CHUNK_PAIRS = 10_000;
/** Members looked up per HMGET, and indexed per script. */
const LOOKUP_BATCH = 10_000;
/** New members per id script (each ~10 ms of Redis: no work per member but a copy of its name). */
const NEW_BATCH = 100_000;
/** Applied large reports whose pairs this Store keeps in hand to materialise them without reading them back. */
const RECENT = 4;
/** Default Store option: the newest periods whose zsets (vc:period:{P}:host:H:msgs, :bytes) are kept. */
export const ZSET_PERIODS = 5;
/** Periods read at once when looking for zsets to delete. */
const SWEEP_BATCH = 1000;

export interface StoreOptions {
  /** Reports with at most this many pairs are written into their zsets in the guard's own script; larger ones by materialise(). */
  inlinePairs?: number;
  /** Pairs per materialise script. */
  chunkPairs?: number;
  /** Ids a pair dictionary holds before a new one is started (0: no cap). Default DICTIONARY_CAP. */
  dictionaryCap?: number;
  /**
   * The newest periods (of vc:{vc}:periods) whose zsets are kept, for people and tools: older periods keep only their
   * packed reports, which is all the queries read. 0: no zsets at all. Default ZSET_PERIODS (agent.zsetPeriods).
   */
  zsetPeriods?: number;
  /**
   * The host whose zsets this Store's trim deletes once their period falls out of the newest `zsetPeriods`: an
   * agent's own (its ACL lets it write no other host's). Absent: every host's that reported the period.
   */
  host?: string;
}

/**
 * Ids one pair dictionary holds before the next is started (about 70 B of Redis a pair, so some
 * 140 MiB): far above any one report (a host's flow map holds 131,072 flows), so a report never
 * spans two dictionaries.
 */
export const DICTIONARY_CAP = 2_000_000;

type Triple = readonly [string, number, number];

/** What `recent` files a large report under. */
const recentKey = (period: number, host: string) => `${period}:${host}`;

/** A report's pairs as its zsets take them: each member once (one named twice in a report is summed), in first-seen order. */
interface Columns {
  names: string[];
  msgs: number[];
  bytes: number[];
}

function zsetColumns(names: ArrayLike<string>, msgs: ArrayLike<number>, bytes: ArrayLike<number>): Columns {
  const at = new Map<string, number>();
  const c: Columns = { names: [], msgs: [], bytes: [] };
  for (let i = 0; i < names.length; i++) {
    const k = at.get(names[i]!);
    if (k === undefined) {
      at.set(names[i]!, c.names.length);
      c.names.push(names[i]!);
      c.msgs.push(msgs[i]!);
      c.bytes.push(bytes[i]!);
    } else {
      c.msgs[k]! += msgs[i]!;
      c.bytes[k]! += bytes[i]!;
    }
  }
  return c;
}

/** Columns from..to as the zset scripts take them: (messages, member) for each, then (bytes, member) for each. */
function pushColumns(args: (string | number | Buffer)[], c: Columns, from: number, to: number): void {
  for (let i = from; i < to; i++) args.push(c.msgs[i]!, c.names[i]!);
  for (let i = from; i < to; i++) args.push(c.bytes[i]!, c.names[i]!);
}

export class Store {
  readonly inlinePairs: number;
  readonly chunkPairs: number;
  readonly dictionaryCap: number;
  readonly zsetPeriods: number;
  readonly host: string | undefined;
  /** The dictionary (epoch) and Redis process (run_id) that `ids` came from. */
  private dict: { epoch: string; run: string } | undefined;
  /** member → id for the members of this Store's recent reports: a steady agent asks only for new members. */
  private ids = new Map<string, number>();
  /** pending field → the columns of a large report applied by this Store and not yet materialised. */
  private recent = new Map<string, Columns>();
  /** member, id, member, id...: ids this Store gave and has not yet written into the index. */
  private unindexed: (string | number)[] = [];
  /** For retention: which hosts' keys a period has. */
  private readonly registry: Registry;

  constructor(
    readonly redis: Redis,
    opts: StoreOptions = {},
  ) {
    this.inlinePairs = opts.inlinePairs ?? INLINE_PAIRS;
    this.chunkPairs = Math.max(1, opts.chunkPairs ?? CHUNK_PAIRS);
    this.dictionaryCap = opts.dictionaryCap ?? DICTIONARY_CAP;
    this.zsetPeriods = Math.max(0, opts.zsetPeriods ?? ZSET_PERIODS);
    this.host = opts.host;
    defineScripts(redis);
    this.registry = new Registry(redis);
  }

  /**
   * Returns true when the report was applied now, false when it already had
   * been. Once it returns, the report counts in queries; the host's zsets for
   * the period hold it too when it had at most `inlinePairs` pairs, else after
   * materialise(); neither when the period is not among the newest
   * `zsetPeriods`. Two steps, each in one slot of a Redis Cluster: the
   * period's (APPLY: the guard and the report), then `{vc}`'s (SPAN: the list
   * of periods and the dictionary's span), repeated even when APPLY finds the
   * report applied, since a writer may have died between them.
   */
  async apply(r: Report): Promise<boolean> {
    const zsets = this.zsetPeriods > 0 && (await this.redis.zcount(K.periods, `(${r.period}`, '+inf')) < this.zsetPeriods;
    const cols = zsets
      ? zsetColumns(
          r.pairs.map((p) => p[0]),
          r.pairs.map((p) => p[1]),
          r.pairs.map((p) => p[2]),
        )
      : undefined;
    const inline = cols !== undefined && cols.names.length <= this.inlinePairs;
    let ids = await this.idsOf(r.pairs);
    const args: (string | number | Buffer)[] = [
      K.reported(r.period),
      K.hostPairs(r.period, r.host),
      K.meta(r.period),
      K.pending(r.period),
      K.hostMsgs(r.period, r.host),
      K.hostBytes(r.period, r.host),
      K.zsetsGone(r.period),
      r.host,
      encodePacked(this.dict!.epoch, ids, r.pairs),
      reportMeta(r),
      inline ? cols.names.length : zsets ? -1 : 0,
    ];
    if (inline) pushColumns(args, cols, 0, cols.names.length);
    const [res] = await results(this.redis.multi().vcApply(...args), 'the report transaction');
    const rewrite = () => this.redis.vcRewrite(K.reported(r.period), K.hostPairs(r.period, r.host), r.host, encodePacked(this.dict!.epoch, ids, r.pairs));
    // A re-send: the blob an earlier attempt wrote may name another dictionary; this attempt's is the one SPAN records.
    if (res === 0) await rewrite();
    for (let attempt = 0; ; attempt++) {
      const { epoch, run } = this.dict!;
      if ((await this.redis.vcSpan(K.periods, K.pairDict, epoch, run, r.period)) === 1) break;
      // The ids came from a dictionary no longer kept, or from a Redis process that may have lost them: the
      // report's blob again, with ids read again (the pairs and counts are the same).
      if (attempt >= 3) throw new Error('the pair dictionary (vc:{vc}:pair:dict) or the Redis process changed under every attempt to write this report');
      this.forget();
      ids = await this.idsOf(r.pairs);
      await rewrite();
    }
    if (cols && !inline) {
      this.recent.set(recentKey(r.period, r.host), cols);
      while (this.recent.size > RECENT) this.recent.delete(this.recent.keys().next().value!);
    }
    return res === 1;
  }

  /** Drops the cached ids: the next report asks for all of its members. */
  private forget(): void {
    this.dict = undefined;
    this.ids = new Map();
    this.unindexed = [];
  }

  /**
   * The dictionary ids of the report's members: from the cache; else from the
   * index (vc:{vc}:pair:ids); else new ones. A member a racing Store gave an id
   * before this one indexed it may get a second id: harmless (queries and
   * zsets go by names), and rare (only members new to both at once).
   */
  private async idsOf(pairs: readonly Triple[]): Promise<Uint32Array> {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 3) throw new Error('the pair dictionary (vc:{vc}:pair:dict) or the Redis process changed under every attempt to read pair ids');
      const ids = new Uint32Array(pairs.length);
      const unknown: number[] = []; // positions (a member twice in one report would get two ids: harmless)
      for (let i = 0; i < pairs.length; i++) {
        const id = this.ids.get(pairs[i]![0]);
        if (id !== undefined) ids[i] = id;
        else unknown.push(i);
      }
      if (!unknown.length && this.dict) {
        // Every id in hand: still asked whether the dictionary is the current one of the same Redis process, so
        // that one retired since (or a restart) is seen here, before APPLY, and not only by SPAN after it.
        const [epoch, run] = await this.redis.vcDict(K.pairDict, K.pairNames, K.pairIds, newEpoch());
        if (epoch === this.dict.epoch && run === this.dict.run) return ids;
        this.forget();
        continue;
      }
      const members = unknown.map((i) => pairs[i]![0]);
      // The dictionary and the Redis process, and the index, read together.
      const tx = this.redis.multi().vcDict(K.pairDict, K.pairNames, K.pairIds, newEpoch());
      for (let i = 0; i < members.length; i += LOOKUP_BATCH) tx.hmget(K.pairIds, ...members.slice(i, i + LOOKUP_BATCH));
      const out = await results(tx, 'the pair id lookup');
      const [epoch, run] = out[0] as [string, string];
      if (this.dict && (this.dict.epoch !== epoch || this.dict.run !== run)) {
        this.forget(); // not the dictionary or the Redis process the cached ids came from: every member again
        continue;
      }
      this.dict = { epoch, run };
      const found = out.slice(1).flatMap((v) => v as (string | null)[]);
      const fresh: number[] = []; // indexes into members
      for (let k = 0; k < members.length; k++) {
        if (found[k] === null) fresh.push(k);
        else ids[unknown[k]!] = Number(found[k]);
      }
      if (fresh.length) {
        const nt = this.redis.pipeline();
        for (let i = 0; i < fresh.length; i += NEW_BATCH) {
          nt.vcNewIds(K.pairDict, K.pairNames, K.pairIds, newEpoch(), NAME_SEGMENT, this.dictionaryCap, ...fresh.slice(i, i + NEW_BATCH).map((k) => members[k]!));
        }
        let stale = false;
        let f = 0;
        for (const res of await results(nt, 'the new pair ids')) {
          const [e, rn, first] = res as [string, string, number];
          if (e !== epoch || rn !== run) stale = true;
          const n = Math.min(NEW_BATCH, fresh.length - f);
          for (let j = 0; j < n; j++, f++) ids[unknown[fresh[f]!]!] = first + j;
        }
        if (stale) {
          this.forget();
          continue;
        }
        for (const k of fresh) this.unindexed.push(members[k]!, ids[unknown[k]!]!);
      }
      if (this.ids.size + members.length > 2 * pairs.length + 10_000) {
        // Members of VMs long gone: keep this report's only, so the cache stays the size of a report.
        this.ids = new Map();
        for (let i = 0; i < pairs.length; i++) this.ids.set(pairs[i]![0], ids[i]!);
      } else {
        for (let k = 0; k < members.length; k++) this.ids.set(members[k]!, ids[unknown[k]!]!);
      }
      if (this.unindexed.length > 4_000_000) this.unindexed = []; // materialise() is never called: give up indexing
      return ids;
    }
  }

  /** Writes the ids this Store gave into the index (vc:{vc}:pair:ids), for other Stores and for this one after a restart. */
  private async indexIds(): Promise<void> {
    if (!this.unindexed.length || !this.dict) return;
    const list = this.unindexed;
    this.unindexed = [];
    const tx = this.redis.pipeline();
    for (let i = 0; i < list.length; i += 2 * LOOKUP_BATCH) {
      tx.vcIndexIds(K.pairDict, K.pairIds, this.dict.epoch, this.dict.run, ...list.slice(i, i + 2 * LOOKUP_BATCH));
    }
    try {
      await results(tx, 'the pair index');
    } catch (err) {
      for (const x of list) this.unindexed.push(x);
      throw err;
    }
  }

  /**
   * Writes applied reports that are still `pending` into their hosts' zsets
   * (vc:period:{P}:host:H:msgs and :bytes), chunk by chunk, each chunk once even when
   * several callers run at once or a connection drops. Only those of `host`
   * and/or `period` when given (the agent: its own, including any left by a
   * crash between apply and materialise). Returns how many reports it finished.
   */
  async materialise(only: { host?: string; period?: number } = {}): Promise<number> {
    await this.indexIds();
    if (!this.zsetPeriods) return 0;
    // Only the newest `zsetPeriods` periods can have pending reports: older ones keep no zsets.
    const periods = only.period !== undefined ? [only.period] : (await this.redis.zrange(K.periods, String(-this.zsetPeriods), '-1')).map(Number);
    const pending = await Promise.all(periods.map((p) => this.redis.hgetall(K.pending(p))));
    let done = 0;
    for (const [k, period] of periods.entries()) {
      for (const [host, next] of Object.entries(pending[k]!)) {
        if (only.host !== undefined && host !== only.host) continue;
        if (await this.sumIn(period, host, Number(next))) done++;
      }
    }
    return done;
  }

  private async sumIn(period: number, host: string, from: number): Promise<boolean> {
    const key = recentKey(period, host);
    let cols = this.recent.get(key);
    if (!cols) {
      const buf = await this.redis.getBuffer(K.hostPairs(period, host));
      if (!buf) {
        // trimmed (or deleted by hand): nothing left to write
        await this.redis.hdel(K.pending(period), host);
        return false;
      }
      const packed = decodePacked(buf, K.hostPairs(period, host));
      cols = zsetColumns(await pairNames(this.redis, packed.ids, packed.epoch), packed.msgs, packed.bytes);
    }
    const n = cols.names.length;
    // From where the field says, in chunks; again from where it then says if other callers
    // summed chunks of other sizes meanwhile, until the field is gone.
    for (let at = from; ; ) {
      if (at >= n && n > 0) {
        // cannot be: the last chunk removes the field
        await this.redis.hdel(K.pending(period), host);
        break;
      }
      const tx = this.redis.pipeline();
      for (let c = at; c < n || c === 0; c += this.chunkPairs) {
        const end = Math.min(n, c + this.chunkPairs);
        const args: (string | number)[] = [K.pending(period), K.hostMsgs(period, host), K.hostBytes(period, host), K.zsetsGone(period), host, c, end === n ? 1 : 0, end - c];
        pushColumns(args, cols, c, end);
        tx.vcSum(...args);
        if (n === 0) break;
      }
      await results(tx, `the sums of ${key}`);
      const now = await this.redis.hget(K.pending(period), host);
      if (now === null) break;
      at = Number(now);
    }
    this.recent.delete(key);
    return true;
  }

  /** One host's part of a period, from its packed report: member → [messages, bytes]; empty when it did not report. */
  async hostPart(period: number, host: string): Promise<Map<string, Counts>> {
    return hostPart(this.redis, period, host);
  }

  /** When this Store last forgot stopped VMs (ms): at most once an hour, as it reads the whole directory. */
  private forgotAt = 0;

  /**
   * Keeps the newest `keep` periods (0: keep all, the seed's default), and
   * prunes the pair dictionary by them (PRUNE in scripts.ts: a dictionary that
   * has served reports since before the oldest period kept is retired, and a
   * retired one goes once no period kept can use it). Then, at most once an
   * hour, forgets the VMs stopped before the oldest period kept
   * (Registry.forget): no period kept counts them any more; `forgot` says how
   * many went. Whatever `keep`, deletes the zsets of the periods no longer
   * among the newest `zsetPeriods` (dropZsets). Returns the number of periods
   * removed.
   */
  async trim(keep: number, now = Date.now(), forgot?: (gone: { vms: number; addresses: number; before: number }) => void): Promise<number> {
    const removed = keep > 0 ? await this.dropPeriods(keep, now, forgot) : 0;
    await this.dropZsets();
    return removed;
  }

  private async dropPeriods(keep: number, now: number, forgot?: (gone: { vms: number; addresses: number; before: number }) => void): Promise<number> {
    if (now - this.forgotAt >= 3_600_000) {
      const oldest = Number((await this.redis.zrange(K.periods, String(-keep), String(-keep)))[0] ?? 0);
      if (oldest > 0) {
        this.forgotAt = now;
        const gone = await this.registry.forget(oldest * 1000);
        if (gone.vms || gone.addresses) forgot?.({ ...gone, before: oldest * 1000 });
      }
    }
    const old = await this.redis.zrange(K.periods, '0', String(-(keep + 1)));
    if (!old.length) return 0;
    const oldestKept = Number((await this.redis.zrange(K.periods, String(-keep), String(-keep)))[0] ?? 0);
    await this.dropRetired(oldestKept);
    const hosts = await this.registry.hostNames();
    // Each period's keys are one slot (one MULTI each); the list of periods is `{vc}`'s, so it goes after
    // them: a period listed whose keys are gone is one being trimmed, never the other way round.
    for (const p of old) await results(this.redis.multi().unlink(...periodKeys(Number(p), hosts)), 'the retention transaction');
    await this.redis.zrem(K.periods, ...old);
    if (oldestKept) await this.redis.vcPrune(K.pairDict, K.pairNames, K.pairIds, newEpoch(), oldestKept);
    return old.length;
  }

  /**
   * Deletes the retired pair dictionaries no period kept can use: each was
   * retired at a mark, and every report written with it is for a period
   * before the mark (later writes use the new one).
   */
  private async dropRetired(oldestKept: number): Promise<void> {
    if (!oldestKept) return;
    const dict = await this.redis.hgetall(K.pairDict);
    for (const [field, at] of Object.entries(dict)) {
      if (!field.startsWith('retired:') || Number(at) > oldestKept) continue;
      const epoch = field.slice('retired:'.length);
      await results(this.redis.multi().unlink(K.retiredNames(epoch)).hdel(K.pairDict, field), 'dropping a retired pair dictionary');
    }
  }

  /** Periods from this score on may still have zsets this Store has not deleted: `-inf` until its first dropZsets. */
  private zsetsFrom = '-inf';

  /**
   * Deletes the zsets of the periods older than the newest `zsetPeriods` of
   * vc:{vc}:periods (all of them when 0), this Store's `host`'s (else every
   * host's that reported the period), with the `pending` fields of their large
   * reports, after marking the period `zsetsGone`: no script makes its zsets
   * again; each other host's agent deletes its own in its own trim. A sweep
   * cut short is done again by the next call. So each period is swept once per Store:
   * the first call looks at every older period (zsets of a Redis written
   * before this setting, or by another agent with a larger one), later calls
   * only at those that fell out since.
   */
  private async dropZsets(): Promise<void> {
    const keep = this.zsetPeriods;
    let until = '+inf';
    if (keep > 0) {
      const cut = (await this.redis.zrange(K.periods, String(-keep), String(-keep)))[0];
      if (cut === undefined) return; // fewer periods than that
      until = `(${cut}`;
    }
    for (;;) {
      const batch = await this.redis.zrange(K.periods, this.zsetsFrom, until, 'BYSCORE', 'LIMIT', 0, SWEEP_BATCH);
      if (!batch.length) break;
      await Promise.all(
        batch.map(async (p) => {
          const n = Number(p);
          // The mark first: no script writes the period's zsets after it, so every host that wrote some is in its
          // reported set by now (APPLY adds the host in the same step).
          await this.redis.set(K.zsetsGone(n), '1');
          const hosts = this.host !== undefined ? [this.host] : await this.redis.smembers(K.reported(n));
          const tx = this.redis.multi().unlink(...K.oldZsets(n)); // its own command: its own ACL selector
          if (hosts.length) tx.unlink(...hosts.flatMap((h) => [K.hostMsgs(n, h), K.hostBytes(n, h)])).hdel(K.pending(n), ...hosts);
          await results(tx, 'dropping the zsets of a period');
        }),
      );
      this.zsetsFrom = `(${batch[batch.length - 1]!}`;
      if (batch.length < SWEEP_BATCH) break;
    }
  }

  /** Appends to `host`'s event stream. */
  async event(host: string, fields: Record<string, string | number>): Promise<void> {
    await this.redis.xadd(K.events(host), 'MAXLEN', '~', EVENTS_MAXLEN, '*', ...Object.entries(fields).flat().map(String));
  }
}

/** One host's part of a period (see Store.hostPart), with any connection. */
export async function hostPart(redis: Redis, period: number, host: string): Promise<Map<string, Counts>> {
  const out = new Map<string, Counts>();
  const buf = await redis.getBuffer(K.hostPairs(period, host));
  if (!buf) return out;
  const p = decodePacked(buf, K.hostPairs(period, host));
  const names = await pairNames(redis, p.ids, p.epoch);
  names.forEach((m, i) => {
    const c = out.get(m);
    if (c) {
      c[0] += p.msgs[i]!;
      c[1] += p.bytes[i]!;
    } else out.set(m, [p.msgs[i]!, p.bytes[i]!]);
  });
  return out;
}
