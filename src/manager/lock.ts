import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { K } from '../collector/keys.js';
import { replicated } from '../config/redis.js';
import { withTimeout } from '../util/exec.js';
import { logger } from '../util/log.js';

const log = logger('lock');

// Take the lock if it is free, renew it if it is ours (also when our own SET arrived after we gave up on
// it, during a stall), else fail: another manager holds it. Returns the term (each take raises it: the
// fencing token), 0 when the lock is another's.
const ACQUIRE = `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return tonumber(redis.call('GET', KEYS[2]) or '0') end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return redis.call('INCR', KEYS[2]) end
return 0`;
// Whether the lock is still ours in the same term: checked in Redis right before each migration starts.
const FENCE = `if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then return 1 end
return 0`;
// The streak is written only by the leader of its term: an old leader's late write is refused.
const SAVE_STREAK = `if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1`;
// Release only if the lock is still ours: another manager may hold it after an expiry.
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * One active manager per cluster: a Redis key with an expiry. The leader
 * renews it every ttl/3; a renewal that fails (Redis lost, or the key taken
 * after an expiry) ends leadership at once. A standby tries again every ttl/3.
 *
 * Leadership also ends by itself: a manager is leader only while its last
 * successful renewal is younger than the TTL minus a margin, timed from when
 * the renewal was sent (the key's expiry starts later, at Redis). During a
 * Redis stall the renewals hang (each call is bounded too), the old leader
 * stops acting before its key can expire, and a standby that takes the
 * expired key afterwards never overlaps it.
 *
 * Across a Sentinel failover: a take or renewal counts only once a replica
 * has it (WAIT), so the promoted replica holds every term a leader acted in,
 * and every expiry a leader trusted: terms only grow, and a deposed leader's
 * fence fails on the new primary.
 */
export class LeaderLock {
  readonly id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private leader = false;
  /** Monotonic time the last successful SET or renewal was sent. */
  private heldSince = -Infinity;
  /**
   * The leadership term this manager holds (0: none yet): raised in Redis at
   * each take of the lock, so it orders every leader there ever was. It fences
   * migrations (checked before each starts, written in its mark and record)
   * and the hysteresis streak (reset when the term changes).
   */
  term = 0;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    readonly ttlMs: number,
    private readonly onChange: (leader: boolean) => void = () => undefined,
  ) {}

  /** How long a renewal is trusted: the TTL less a margin for clock drift and the call's own time. */
  get validMs(): number {
    return this.ttlMs - Math.max(500, this.ttlMs / 5);
  }

  get isLeader(): boolean {
    return this.leader && performance.now() - this.heldSince < this.validMs;
  }

  private stopped = false;

  start(): void {
    const tick = () =>
      void this.tick().finally(() => {
        // A tick running when stop() came must not arm the next one (a stopped standby would take the lock).
        if (!this.stopped) this.timer = setTimeout(tick, Math.max(100, this.ttlMs / 3));
      });
    tick();
  }

  async tick(): Promise<boolean> {
    let term = 0;
    const sent = performance.now();
    try {
      term = await withTimeout(
        (async () => {
          const t = Number(await this.redis.eval(ACQUIRE, 2, K.managerLock, K.managerTerm, this.id, this.ttlMs));
          if (t <= 0) return t;
          // The lock and its term count only once on a replica (with replicas: Sentinel). An INCR that Redis
          // acknowledged but had not sent on when it died is gone from the promoted replica: another manager
          // would take the lock there in the same term (a reused fencing token), or our renewal's new expiry
          // would be lost while we go on trusting it. Unreplicated, this tick does not lead; the next renews
          // and waits again.
          const { replicas, acked } = await replicated(this.redis, Math.max(100, Math.round(this.validMs / 4)), K.managerLock);
          if (replicas && !acked) {
            log.warn({ term: t, replicas }, 'no replica acknowledged the manager lock in time: not leading until one does');
            return 0;
          }
          return t;
        })(),
        this.validMs / 2,
        'the manager lock',
      );
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot reach Redis for the manager lock');
    }
    const ok = term > 0;
    if (ok) {
      this.heldSince = sent;
      this.term = term;
    }
    if (ok !== this.leader) {
      this.leader = ok;
      if (ok) log.info({ id: this.id, term: this.term }, 'this manager is the leader');
      else log.warn({ id: this.id, holder: await this.holder() }, 'not the leader (standing by)');
      this.onChange(ok);
    }
    return ok;
  }

  /** Leader now, by its last renewal, and by Redis itself in the same term: asked right before a migration starts. */
  async fenced(): Promise<boolean> {
    if (!this.isLeader) return false;
    const r = await withTimeout(this.redis.eval(FENCE, 2, K.managerLock, K.managerTerm, this.id, String(this.term)), this.validMs / 2, 'the fence').catch(() => 0);
    return Number(r) === 1 && this.isLeader;
  }

  async holder(): Promise<string | null> {
    return withTimeout(this.redis.get(K.managerLock), 2000, 'the lock holder').catch(() => null);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.leader) await this.redis.eval(RELEASE, 1, K.managerLock, this.id).catch(() => undefined);
    this.leader = false;
  }
}

/** The hysteresis streak kept in Redis for `term`; a streak of another term (an earlier leader's) starts over. */
export async function loadStreak(redis: Redis, term: number): Promise<Map<string, number>> {
  const text = await withTimeout(redis.get(K.managerStreak), 5000, 'the streak').catch(() => null);
  try {
    const saved = JSON.parse(text ?? 'null') as { term: number; moves: Record<string, number> } | null;
    if (saved?.term === term) return new Map(Object.entries(saved.moves));
  } catch {
    log.warn('the saved hysteresis streak is not JSON: starting it over');
  }
  return new Map();
}

/** Saves the streak, only while `term` is still the current one. */
export async function saveStreak(redis: Redis, term: number, streak: ReadonlyMap<string, number>): Promise<void> {
  const text = JSON.stringify({ term, moves: Object.fromEntries(streak) });
  await withTimeout(redis.eval(SAVE_STREAK, 2, K.managerStreak, K.managerTerm, String(term), text), 5000, 'saving the streak').catch((err: Error) =>
    log.warn({ err: err.message }, 'cannot save the hysteresis streak: the next round counts from what Redis has'),
  );
}
