import type { Redis } from 'ioredis';
import { K } from '../collector/keys.js';
import { Registry } from '../collector/registry.js';

export type Outcome = 'ok' | 'failed' | 'aborted';

export interface MigrationRecord {
  vm: string;
  from: string;
  to: string;
  outcome: Outcome;
  /** When it started, ms. */
  at: number;
  seconds: number;
  downtimeMs?: number;
  dataMiB?: number;
  reason?: string;
  error?: string;
  manager?: string;
  /** The leader's fencing token (its term) when it started the migration. */
  term?: number;
  /** Whether its memory went over TLS (manager.encrypt); absent in records older than the setting. */
  encrypted?: boolean;
  /** True when the VM was paused for the whole copy (manager.live false): its downtime is the copy's. Absent: live. */
  paused?: boolean;
  /** The version of the environment stored in Redis that the decision used (absent: a file's, a lab's or the registry's). */
  envVersion?: number;
}

const MAXLEN = 100_000;

export async function recordMigration(redis: Redis, r: MigrationRecord): Promise<void> {
  const fields = Object.entries(r)
    .filter(([, v]) => v !== undefined)
    .flatMap(([k, v]) => [k, String(v)]);
  await redis.xadd(K.migrations, 'MAXLEN', '~', MAXLEN, '*', ...fields);
}

export async function readHistory(redis: Redis, count = 50, vm?: string): Promise<MigrationRecord[]> {
  const rows = await redis.xrevrange(K.migrations, '+', '-', 'COUNT', vm ? 10_000 : count);
  const out: MigrationRecord[] = [];
  for (const [, f] of rows) {
    const o: Record<string, string> = {};
    for (let i = 0; i + 1 < f.length; i += 2) o[f[i]!] = f[i + 1]!;
    if (vm && o.vm !== vm) continue;
    out.push({
      vm: o.vm!,
      from: o.from!,
      to: o.to!,
      outcome: o.outcome as Outcome,
      at: Number(o.at),
      seconds: Number(o.seconds),
      ...(o.downtimeMs ? { downtimeMs: Number(o.downtimeMs) } : {}),
      ...(o.dataMiB ? { dataMiB: Number(o.dataMiB) } : {}),
      ...(o.reason ? { reason: o.reason } : {}),
      ...(o.error ? { error: o.error } : {}),
      ...(o.manager ? { manager: o.manager } : {}),
      ...(o.term ? { term: Number(o.term) } : {}),
      ...(o.envVersion ? { envVersion: Number(o.envVersion) } : {}),
      ...(o.encrypted ? { encrypted: o.encrypted === 'true' } : {}),
      ...(o.paused === 'true' ? { paused: true } : {}),
    });
    if (out.length >= count) break;
  }
  return out;
}

/** A VM's cooldown: how many moves in a row, and when it ends (ms). */
export interface Cooldown {
  count: number;
  until: number;
}

/** The cooldown after a move at `now` (what startCooldown stores; a replay keeps it in memory). */
export function nextCooldown(cur: Cooldown, baseMs: number, now: number): Cooldown {
  const quiet = now - cur.until > 86_400_000;
  const count = quiet ? 1 : cur.count + 1;
  return { count, until: now + Math.min(86_400_000, baseMs * 2 ** (count - 1)) };
}

/**
 * Per-VM cooldown that doubles with each migration (base, 2×base, 4×base …,
 * at most a day); it starts over once the VM has stayed put for a day.
 */
export async function cooldownUntil(redis: Redis, vm: string): Promise<number> {
  return Number((await redis.hget(K.cooldown(vm), 'until')) ?? 0);
}

/** cooldownUntil for many VMs in one round trip: VM → end of its cooldown (0: none). */
export async function cooldowns(redis: Redis, vms: readonly string[]): Promise<Map<string, number>> {
  const p = redis.pipeline();
  for (const vm of vms) p.hget(K.cooldown(vm), 'until');
  const res = (await p.exec()) ?? [];
  return new Map(vms.map((vm, i) => [vm, Number(res[i]?.[1] ?? 0)]));
}

export async function startCooldown(redis: Redis, vm: string, baseMs: number, now = Date.now()): Promise<number> {
  const cur = await redis.hgetall(K.cooldown(vm));
  const { count, until } = nextCooldown({ count: Number(cur.count ?? 0), until: Number(cur.until ?? 0) }, baseMs, now);
  // Kept a day past its end (after a quiet day the count starts over anyway), then gone: VMs long
  // deleted leave no key behind.
  await redis.hset(K.cooldown(vm), { count, until });
  await redis.pexpireat(K.cooldown(vm), until + 86_400_000);
  return until;
}

/** Holds a VM where it is until `until` (an external move): its cooldown ends no earlier, and its count is left as it was. */
export async function holdUntil(redis: Redis, vm: string, until: number): Promise<void> {
  const cur = await cooldownUntil(redis, vm);
  if (cur >= until) return;
  await redis.hset(K.cooldown(vm), 'until', until);
  await redis.pexpireat(K.cooldown(vm), until + 86_400_000);
}

/** A migration under way, as marked in Redis before virsh starts: a manager that dies leaves it for the next leader. */
export interface Running {
  vm: string;
  from: string;
  to: string;
  at: number;
  manager?: string;
  /** The fencing token of the leader that started it. */
  term?: number;
  reason?: string;
}

export async function markRunning(redis: Redis, r: Running): Promise<void> {
  await redis.hset(K.migrating, r.vm, JSON.stringify(r));
}

/** Removes the mark; 1 if this call removed it, 0 if it was already gone. */
export async function clearRunning(redis: Redis, vm: string): Promise<number> {
  return redis.hdel(K.migrating, vm);
}

export async function readRunning(redis: Redis): Promise<Running[]> {
  const all = await redis.hgetall(K.migrating);
  return Object.values(all).flatMap((v) => {
    try {
      return [JSON.parse(v) as Running];
    } catch {
      return [];
    }
  });
}

/**
 * A VM arrived by a migration: unless this manager made it (running, or in the recent history), held
 * where it is for `holdMs` and recorded as external. The end of the hold; undefined when the move was ours.
 */
export async function holdExternal(redis: Redis, r: { vm: string; host: string; at: number }, holdMs: number): Promise<number | undefined> {
  const [running, recent, from] = await Promise.all([readRunning(redis), readHistory(redis, 20, r.vm), new Registry(redis).vmHost(r.vm)]);
  if (running.some((x) => x.vm === r.vm) || recent.some((h) => h.to === r.host && h.at > r.at - 600_000)) return undefined;
  const until = Date.now() + holdMs;
  await holdUntil(redis, r.vm, until);
  await recordMigration(redis, {
    vm: r.vm,
    from: from && from !== r.host ? from : '?',
    to: r.host,
    outcome: 'ok',
    at: r.at,
    seconds: 0,
    reason: `external: moved by something other than virt-cohort (virsh by hand, another balancer); held on ${r.host} until ${new Date(until).toISOString()}`,
    manager: 'external',
  });
  return until;
}

/**
 * How long recent migrations took: the 90th percentile of the last `count` that succeeded (ms), 0
 * when there are none. A quota's evacuation counts each VM at least this (manager/decide.ts).
 */
export async function recentMigrationMs(redis: Redis, count = 20): Promise<number> {
  const ms = (await readHistory(redis, 4 * count))
    .filter((h) => h.outcome === 'ok')
    .slice(0, count)
    .map((h) => h.seconds * 1000)
    .sort((a, b) => a - b);
  return ms.length ? ms[Math.min(ms.length - 1, Math.floor(0.9 * ms.length))]! : 0;
}
