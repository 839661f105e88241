// The manager's leader lock against a real Redis, frozen with SIGSTOP longer
// than the lock's TTL: the old leader stops acting before its key expires, and
// at no instant do two managers both believe they lead.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { LeaderLock, loadStreak, saveStreak } from '../../src/manager/lock.js';
import { sleep } from '../../src/util/exec.js';
import { TestRedis } from '../helpers/redis.js';

let server: TestRedis;
const clients: Redis[] = [];

before(async () => {
  server = await TestRedis.start();
});
after(async () => {
  await server.resume().catch(() => undefined);
  for (const c of clients) c.disconnect();
  await server.close();
});

function client(): Redis {
  // As the manager's: commands wait in the offline queue, retried forever.
  const c = new Redis(server.url, { maxRetriesPerRequest: null });
  c.on('error', () => undefined);
  clients.push(c);
  return c;
}

test('a Redis stall longer than the TTL: the leader steps down by itself within the TTL, the standby takes over after, never both', async () => {
  const TTL = 1500;
  const a = new LeaderLock(client(), TTL);
  const b = new LeaderLock(client(), TTL);
  assert.equal(await a.tick(), true);
  assert.equal(await b.tick(), false);
  const termA = a.term;

  let both = 0;
  let aLedUntil = 0;
  const t0 = performance.now();
  const watch = setInterval(() => {
    if (a.isLeader && b.isLeader) both++;
    if (a.isLeader) aLedUntil = performance.now() - t0;
  }, 10);
  try {
    await server.pause();
    // The leader's renewal loop is stuck (its event loop, or its call, hangs): only the clock ends its term.
    // The standby keeps trying, every call hanging until its bound.
    const ticking = (async () => {
      for (let i = 0; i < 8; i++) await Promise.all([b.tick(), sleep(TTL / 3)]);
    })();
    await sleep(2 * TTL);
    assert.equal(a.isLeader, false, 'no renewal came back: the leader stopped acting');
    assert.ok(aLedUntil <= a.validMs + 100, `the old leader believed it led for ${aLedUntil.toFixed(0)} ms of the stall (valid ${a.validMs} ms)`);
    await server.resume();
    await ticking;
    for (let i = 0; i < 30 && !a.isLeader && !b.isLeader; i++) await Promise.all([a.tick(), b.tick(), sleep(100)]);
    assert.equal([a, b].filter((l) => l.isLeader).length, 1, 'one of them leads again');
    if (a.isLeader) assert.ok(a.term > termA, 'a manager elected again starts a new term');
  } finally {
    clearInterval(watch);
  }
  assert.equal(both, 0, 'never two leaders at once');
  await a.stop();
  await b.stop();
});

test('the fencing token: each take raises the term; a deposed leader fails its fence and cannot write the streak', async () => {
  const TTL = 1200;
  const redis = client();
  const a = new LeaderLock(client(), TTL);
  const b = new LeaderLock(client(), TTL);
  assert.equal(await a.tick(), true);
  const termA = a.term;
  assert.equal(await a.fenced(), true, 'the leader passes its fence');
  await saveStreak(redis, termA, new Map([['vm1\u2192b1', 1]]));
  assert.deepEqual([...(await loadStreak(redis, termA))], [['vm1\u2192b1', 1]], 'the streak is kept in Redis for its term');

  // a is stuck (no renewal) past the TTL; b takes the lock in a new term.
  await sleep(TTL + 200);
  assert.equal(await b.tick(), true);
  assert.ok(b.term > termA, `b's term ${b.term} is above a's ${termA}`);
  assert.equal(await a.fenced(), false, 'the deposed leader fails its fence');
  assert.equal((await loadStreak(redis, b.term)).size, 0, 'a new term starts its streak over');
  await saveStreak(redis, termA, new Map([['vm2\u2192a1', 5]]));
  assert.deepEqual([...(await loadStreak(redis, termA))], [['vm1\u2192b1', 1]], "the old term's late write was refused");
  await saveStreak(redis, b.term, new Map([['vm3\u2192a2', 2]]));
  assert.deepEqual([...(await loadStreak(redis, b.term))], [['vm3\u2192a2', 2]]);
  await redis.set(K.managerStreak, 'garbage');
  assert.equal((await loadStreak(redis, b.term)).size, 0, 'a garbage streak starts over');
  await b.stop();
  await a.stop();
});
