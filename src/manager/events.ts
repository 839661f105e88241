import type { Redis } from 'ioredis';
import { K } from '../collector/keys.js';
import { logger } from '../util/log.js';

const log = logger('events');

/**
 * The hosts' hook events (the agents XADD them to vc:{vc}:events:HOST), read as they
 * come (XREAD BLOCK), and judged: a VM started on a host (no `migrate` hook
 * before it there: not arriving by migration) is to be placed now; a VM arriving by a migration is to be checked
 * against the manager's own (an external move is held where it is). Each entry
 * is read once (the stream ids, kept in Redis for the next leader), and each
 * event acted on once (duplicates, and events out of order, are ignored).
 */

export interface HookEntry {
  /** The stream entry id. */
  id: string;
  /** The host whose stream it is in. */
  host: string;
  domain: string;
  operation: string;
  sub: string;
  /** When the hook ran (ms). */
  at: number;
  source: string;
}

export type Reaction = { kind: 'place' | 'arrived'; vm: string; host: string; at: number } | { kind: 'none'; why: string };

/**
 * How long a `migrate` before a `started` on the same host makes it an arrival (ms). Only `migrate`:
 * libvirt runs `prepare` and `start` before every start, and `migrate` only on a migration's destination.
 */
const ARRIVAL_WINDOW_MS = 300_000;
/** A second `started` of the same VM on the same host within this is the same start (ms). */
const SAME_START_MS = 30_000;

/** The judgement, without I/O: what an event asks for, given the events seen before it. */
export class EventJudge {
  /** host\0domain → the operations seen and when. */
  private recent = new Map<string, { op: string; at: number }[]>();
  /** Events already judged (content), and VM starts already acted on: never twice. */
  private seen = new Map<string, number>();

  judge(e: HookEntry): Reaction {
    const content = `${e.host}\u0000${e.domain}\u0000${e.operation}\u0000${e.sub}\u0000${e.at}`;
    if (this.seen.has(content)) return { kind: 'none', why: 'a duplicate of an event already handled' };
    this.remember(content, e.at);
    const key = `${e.host}\u0000${e.domain}`;
    const ops = (this.recent.get(key) ?? []).filter((o) => e.at - o.at < ARRIVAL_WINDOW_MS);
    ops.push({ op: e.operation, at: e.at });
    this.recent.set(key, ops);
    if (e.source !== 'hook' || e.operation !== 'started') return { kind: 'none', why: `${e.operation} needs no reaction` };
    const start = `start\u0000${key}`;
    const before = this.seen.get(start);
    if (before !== undefined && Math.abs(e.at - before) < SAME_START_MS) return { kind: 'none', why: 'this start was handled already' };
    this.remember(start, e.at);
    const arriving = ops.some((o) => o.op === 'migrate' && o.at <= e.at);
    return { kind: arriving ? 'arrived' : 'place', vm: e.domain, host: e.host, at: e.at };
  }

  private remember(k: string, at: number): void {
    this.seen.set(k, at);
    if (this.seen.size > 10_000) {
      // The oldest half goes: events that old are not sent again.
      const cut = [...this.seen.values()].sort((a, b) => a - b)[5_000]!;
      for (const [x, t] of this.seen) if (t < cut) this.seen.delete(x);
    }
  }
}

/** One stream entry's fields as a HookEntry; undefined for an entry that is not a well-formed event. */
export function hookEntry(host: string, id: string, fields: string[]): HookEntry | undefined {
  const o: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
  const at = Number(o.at);
  if (!o.domain || !o.operation || !Number.isFinite(at)) return undefined;
  return { id, host, domain: o.domain, operation: o.operation, sub: o.sub ?? '', at, source: o.source ?? '' };
}

/**
 * Reads the event streams of the registry's hosts with XREAD BLOCK on its own
 * connection (a blocked connection can do nothing else). Starts after what the
 * last leader handled (vc:{vc}:manager:events), or at `since` for a stream it never read.
 */
export class EventReader {
  private offsets?: Map<string, string>;
  private readonly conn: Redis;
  private hosts: string[] = [];
  private hostsAt = 0;

  constructor(
    private readonly redis: Redis,
    private readonly since = Date.now(),
    private readonly blockMs = 1000,
  ) {
    this.conn = redis.duplicate();
  }

  /** The next entries (none after blockMs without any); the offsets reached are kept in Redis by `done`. */
  async next(): Promise<HookEntry[]> {
    if (!this.offsets) this.offsets = new Map(Object.entries(await this.redis.hgetall(K.managerEvents)));
    if (Date.now() - this.hostsAt > 5000) {
      this.hosts = (await this.redis.smembers(K.hosts)).sort();
      this.hostsAt = Date.now();
    }
    if (!this.hosts.length) {
      await new Promise((r) => setTimeout(r, this.blockMs));
      return [];
    }
    const ids = this.hosts.map((h) => this.offsets!.get(h) ?? `${this.since}-0`);
    const res = (await this.conn.xread('COUNT', 200, 'BLOCK', this.blockMs, 'STREAMS', ...this.hosts.map((h) => K.events(h)), ...ids)) as [string, [string, string[]][]][] | null;
    const out: HookEntry[] = [];
    for (const [key, entries] of res ?? []) {
      const host = key.slice(K.events('').length);
      for (const [id, fields] of entries) {
        this.offsets.set(host, id);
        const e = hookEntry(host, id, fields);
        if (e) out.push(e);
        else log.warn({ host, id }, 'an event entry without domain, operation or time: ignored');
      }
    }
    return out;
  }

  /** Drops the offsets reached without acting (a standby): they are read again from Redis, as the leader left them. */
  forget(): void {
    this.offsets = undefined;
  }

  /** Keeps the offsets reached, for the next leader: what is handled is not handled again. */
  async done(): Promise<void> {
    if (this.offsets?.size) await this.redis.hset(K.managerEvents, Object.fromEntries(this.offsets));
  }

  close(): void {
    this.conn.disconnect();
  }
}
