import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { K } from '../collector/keys.js';
import { logger } from '../util/log.js';

const log = logger('lock');

// Take the lock if it is free, renew it if it is ours (also when our own SET arrived after we gave up on
// it, during a stall), else fail: another manager holds it.
const ACQUIRE = `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;
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
 */
export class LeaderLock {
  readonly id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private leader = false;
  /** Monotonic time the last successful SET or renewal was sent. */
  private heldSince = -Infinity;
  /** Counts the times this manager became leader: state kept for one term (the hysteresis streak) is not reused in the next. */
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

  start(): void {
    const tick = () =>
      void this.tick().finally(() => {
        this.timer = setTimeout(tick, Math.max(100, this.ttlMs / 3));
      });
    tick();
  }

  async tick(): Promise<boolean> {
    let ok = false;
    const sent = performance.now();
    try {
      ok = await bounded(
        this.redis.eval(ACQUIRE, 1, K.managerLock, this.id, this.ttlMs).then((r) => Number(r) === 1),
        this.validMs / 2,
      );
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot reach Redis for the manager lock');
      ok = false;
    }
    if (ok) this.heldSince = sent;
    if (ok !== this.leader) {
      this.leader = ok;
      if (ok) this.term++;
      if (ok) log.info({ id: this.id, term: this.term }, 'this manager is the leader');
      else log.warn({ id: this.id, holder: await this.holder() }, 'not the leader (standing by)');
      this.onChange(ok);
    }
    return ok;
  }

  async holder(): Promise<string | null> {
    return bounded(this.redis.get(K.managerLock), 2000).catch(() => null);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    if (this.leader) await this.redis.eval(RELEASE, 1, K.managerLock, this.id).catch(() => undefined);
    this.leader = false;
  }
}

/** A lock call that does not answer in time counts as failed (ioredis would queue it while Redis stalls). */
function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${Math.round(ms)} ms`)), ms);
  });
  p.catch(() => undefined); // answered after the deadline: ignored
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
