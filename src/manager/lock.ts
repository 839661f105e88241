import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { K } from '../collector/keys.js';
import { logger } from '../util/log.js';

const log = logger('lock');

// Renew or release only if the lock is still ours: another manager may hold it after an expiry.
const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;

/**
 * One active manager per cluster: a Redis key with an expiry. The leader
 * renews it every ttl/3; a renewal that fails (Redis lost, or the key taken
 * after an expiry) ends leadership at once, so a manager acts only while it
 * can prove it holds the lock. A standby tries again every ttl/3.
 */
export class LeaderLock {
  readonly id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  private leader = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    readonly ttlMs: number,
    private readonly onChange: (leader: boolean) => void = () => undefined,
  ) {}

  get isLeader(): boolean {
    return this.leader;
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
    try {
      if (this.leader) ok = Number(await this.redis.eval(RENEW, 1, K.managerLock, this.id, this.ttlMs)) === 1;
      else ok = (await this.redis.set(K.managerLock, this.id, 'PX', this.ttlMs, 'NX')) === 'OK';
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot reach Redis for the manager lock');
      ok = false;
    }
    if (ok !== this.leader) {
      this.leader = ok;
      if (ok) log.info({ id: this.id }, 'this manager is the leader');
      else log.warn({ id: this.id, holder: await this.holder() }, 'not the leader (standing by)');
      this.onChange(ok);
    }
    return ok;
  }

  async holder(): Promise<string | null> {
    return this.redis.get(K.managerLock).catch(() => null);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    if (this.leader) await this.redis.eval(RELEASE, 1, K.managerLock, this.id).catch(() => undefined);
    this.leader = false;
  }
}
