import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Registry } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { cooldownUntil, readHistory } from '../../src/manager/history.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { Manager, type Round } from '../../src/manager/manager.js';
import { sleep } from '../../src/util/exec.js';
import { TestRedis } from '../helpers/redis.js';
import { L, registerHosts, report } from './fixtures.js';

/**
 * The manager between rounds, over a real Redis: hook events XADDed as an agent does, read with
 * XREAD BLOCK. A VM started away from its group is placed at once (dry run: the order is the
 * decision), an event told twice or for an unknown VM does nothing, a VM moved by someone else is
 * held and recorded as external, a host marked draining is emptied at once.
 */

const GiB = 1 << 20;
let server: TestRedis;
let redis: Redis;
let manager: Manager;
const rounds: Round[] = [];
const ip = { a1: '10.0.0.1', a2: '10.0.0.2', b1: '10.0.0.3' } as const;

async function event(host: string, domain: string, operation: string, at = Date.now()): Promise<void> {
  await redis.xadd(K.events(host), '*', 'host', host, 'source', 'hook', 'domain', domain, 'operation', operation, 'sub', 'begin', 'extra', '-', 'at', String(at));
}

async function nextRound(since: number, ms: number): Promise<Round | undefined> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (rounds.length > since) return rounds[since];
    await sleep(20);
  }
  return undefined;
}

/** app and db on a1 (site a); web talked with them from a1 for the last ten minutes, and now starts on b1. */
before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  const store = new Store(redis);
  const registry = new Registry(redis);
  const current = Math.floor(Date.now() / 1000 / L) * L;
  const live = await registerHosts(
    redis,
    (['a1', 'a2', 'b1'] as const).map((h) => [h, h[0]!, `qemu+tcp://${ip[h]}/system`] as const),
  );
  const vm = (host: string, site: string) => ({ uuid: '', host, site, state: 'running' as const, mac: '', addresses: [], memoryKiB: GiB, vcpus: 1 });
  await registry.putVm('app', vm('a1', 'a'));
  await registry.putVm('db', vm('a1', 'a'));
  await registry.putVm('web', vm('b1', 'b'));
  for (let p = current - 20 * L; p <= current + 5 * L; p += L) {
    await store.apply({
      ...report('a1', p, [
        ['web>app', 3000, 3e6],
        ['app>web', 3000, 3e6],
        ['app>db', 3000, 3e6],
        ['db>app', 3000, 3e6],
      ]),
      site: 'a',
    });
    for (const h of ['a2', 'b1']) await store.apply({ ...report(h, p, []), site: h[0]! });
  }
  await live();
  const cfg = { ...DEFAULT_MANAGER, everyPeriods: 1000, confirmRounds: 2, hostUris: ['qemu+tcp://10.0.0.*/system'], migrateNetworks: ['10.0.0.0/24'] };
  manager = new Manager(redis, cfg, new LeaderLock(redis, 10_000), (r) => rounds.push(r));
  manager.start();
  for (let i = 0; i < 100 && !manager.lock.isLeader; i++) await sleep(50);
  assert.ok(manager.lock.isLeader, 'the manager leads');
  await sleep(300); // its reader is blocked on the streams
});

after(async () => {
  await manager.stop();
  redis.disconnect();
  await server.close();
});

test('a VM started away from its group is placed at once, well within 2 s of its event', async () => {
  const at = Date.now();
  await event('b1', 'web', 'started', at);
  const r = await nextRound(0, 5000);
  const ms = Date.now() - at;
  assert.ok(r, 'the event gave a decision');
  assert.equal(r.cause?.what, 'web started on b1');
  assert.deepEqual(
    r.moves.map((m) => [m.vm, m.from, m.to.startsWith('a')]),
    [['web', 'b1', true]],
    JSON.stringify(r),
  );
  assert.match(r.note ?? '', /dry run/);
  assert.ok(ms < 2000, `event to decision ${ms} ms`);
  process.stdout.write(`# event -> decision: ${ms} ms\n`);
});

test('an event told twice, or for a VM the directory does not show, gives no second decision', async () => {
  const before = rounds.length;
  const at = Date.now();
  await event('b1', 'web', 'started', at - 5000); // the same start, sent again later
  await event('b1', 'ghost', 'started', at);
  assert.equal(await nextRound(before, 4500), undefined, JSON.stringify(rounds.slice(before)));
});

test('a VM moved by someone else is held where it is, and history records the move as external', async () => {
  const at = Date.now();
  await event('a2', 'db', 'migrate', at - 300);
  await event('a2', 'db', 'prepare', at - 200);
  await event('a2', 'db', 'started', at);
  let rec: Awaited<ReturnType<typeof readHistory>>[number] | undefined;
  for (let i = 0; i < 50 && !rec; i++) {
    rec = (await readHistory(redis, 5, 'db')).find((h) => h.manager === 'external');
    if (!rec) await sleep(50);
  }
  assert.ok(rec, 'recorded');
  assert.deepEqual([rec.from, rec.to, rec.outcome], ['a1', 'a2', 'ok']);
  assert.match(rec.reason ?? '', /^external: moved by something other than virt-cohort .*; held on a2 until /);
  const until = await cooldownUntil(redis, 'db');
  assert.ok(Math.abs(until - (at + 30 * 60_000)) < 10_000, `held for manager.externalHold (${new Date(until).toISOString()})`);
});

test('a host marked draining is emptied at once, not at the next round', async () => {
  const before = rounds.length;
  const at = Date.now();
  assert.ok(await new Registry(redis).setDraining('b1', true));
  const r = await nextRound(before, 4000);
  assert.ok(r, 'the drain gave a decision');
  assert.equal(r.cause?.what, 'host b1 draining');
  assert.deepEqual(
    r.moves.map((m) => [m.vm, m.from]),
    [['web', 'b1']],
  );
  process.stdout.write(`# drain -> decision: ${Date.now() - at} ms\n`);
});
