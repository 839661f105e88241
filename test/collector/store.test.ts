import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import type { Report } from '../../src/collector/report.js';
import { NAME_SEGMENT } from '../../src/collector/dictionary.js';
import { hostPart, Store } from '../../src/collector/store.js';
import { connectDaemon } from '../../src/config/redis.js';
import { sleep, waitFor } from '../../src/util/exec.js';
import { TestRedis } from '../helpers/redis.js';
import { host, L, periodNow, report } from './fixtures.js';
import { query, type DetailAnswer } from '../../src/collector/query.js';
import { periodScore, periodZset, periodZsets } from '../helpers/zsets.js';

let server: TestRedis;
let admin: Redis;

before(async () => {
  server = await TestRedis.start();
  admin = new Redis(server.url);
});
after(async () => {
  admin.disconnect();
  await server.close();
});

const BIG = 20_000;
/** Host X: BIG pairs, pair i counts i+1 messages; host Z: the same pairs, 1 message each, so the sum is known per pair. */
const bigReport = (host: 'X' | 'Z', period: number): Report =>
  report(
    host,
    period,
    Array.from({ length: BIG }, (_, i) => [`v${i}>w`, host === 'X' ? i + 1 : 1, host === 'X' ? 100 * (i + 1) : 100] as [string, number, number]),
  );

/** Every pair of the period counted exactly once for both hosts: in the packed reports the queries read, and in the zsets. */
async function assertOnce(period: number): Promise<void> {
  assert.deepEqual((await admin.smembers(K.reported(period))).sort(), ['X', 'Z']);
  const msgs = await periodZset(admin, period);
  const bytes = new Map<string, number>();
  const b = await periodZset(admin, period, 'bytes');
  for (let i = 0; i < b.length; i += 2) bytes.set(b[i]!, Number(b[i + 1]));
  assert.equal(msgs.length, 2 * BIG);
  for (let i = 0; i < msgs.length; i += 2) {
    const n = Number(msgs[i]!.slice(1, msgs[i]!.indexOf('>')));
    if (Number(msgs[i + 1]) !== n + 2 || bytes.get(msgs[i]!) !== 100 * (n + 2)) {
      assert.fail(`period ${period}: ${msgs[i]} counts ${msgs[i + 1]} messages, ${bytes.get(msgs[i]!)} bytes; once is ${n + 2}, ${100 * (n + 2)}`);
    }
  }
  const x = await hostPart(admin, period, 'X');
  assert.equal(x.size, BIG);
  assert.deepEqual(x.get('v7>w'), [8, 800]);
  assert.equal(await admin.hexists(K.pending(period), 'X'), 0, 'nothing left to materialise');
}

/** Failed attempts a test tolerates before it gives up: each kill or cut below costs one or two. */
const MAX_RETRIES = 20;

/** As the agent does: a write that failed is sent again until Redis confirms it (a bounded number of times here). */
async function applyUntilDone(store: Store, r: Report): Promise<{ result: boolean; retries: number }> {
  for (let retries = 0; ; retries++) {
    try {
      return { result: await store.apply(r), retries };
    } catch (err) {
      if (retries >= MAX_RETRIES) throw new Error(`apply failed ${retries + 1} times`, { cause: err });
      await sleep(20);
    }
  }
}

/** Then the zsets, again until done; returns how many attempts failed. */
async function materialiseUntilDone(store: Store, period: number): Promise<number> {
  for (let retries = 0; ; retries++) {
    let failure: unknown;
    try {
      await store.materialise({ period });
      if (!(await admin.hlen(K.pending(period)))) return retries;
    } catch (err) {
      failure = err;
      await sleep(20);
    }
    if (retries >= MAX_RETRIES) throw new Error(`period ${period} still pending after ${retries + 1} materialise calls`, { cause: failure });
  }
}

test('the same report applied twice counts once: packed, in the zsets when materialised (twice), and inline when small', async () => {
  const redis = connectDaemon(server.url);
  const store = new Store(redis);
  const p = 1_800_000_000;
  assert.equal(await store.apply(bigReport('Z', p)), true);
  assert.equal(await store.apply(bigReport('Z', p)), false);
  assert.equal(await periodZsets(admin, p), 0, 'a large report is queryable before it is in the zsets');
  assert.equal(await store.materialise(), 1);
  assert.equal(await store.materialise(), 0);
  assert.equal(await store.apply(bigReport('X', p)), true);
  assert.equal(await store.apply(bigReport('X', p)), false);
  assert.equal(await store.materialise({ host: 'X' }), 1);
  assert.equal(await store.materialise({ host: 'X' }), 0);
  await assertOnce(p);
  // a small late report is written into its zsets inside its guard: nothing to materialise
  const small = report('Y', p, [['v3>w', 5, 500]]);
  assert.equal(await store.apply(small), true);
  assert.equal(await store.apply(small), false);
  assert.equal(await admin.hlen(K.pending(p)), 0);
  assert.equal(await periodScore(admin, p, 'v3>w'), String(4 + 1 + 5));
  assert.equal(await periodScore(admin, p, 'v4>w'), String(5 + 1));
  assert.equal(await admin.zscore(K.periods, String(p)), String(p));
  // the dictionary holds each member once, whichever hosts reported it (the index is written by materialise)
  assert.equal(await admin.hlen(K.pairIds), BIG);
  assert.equal(await admin.hget(K.pairDict, 'next'), String(BIG)); // Y's member is one of them
  assert.equal(await admin.hlen(K.pairNames), Math.ceil(BIG / NAME_SEGMENT));
  redis.disconnect();
});

test('a report applied by an agent that died before materialising it is summed by the next callers, from Redis, once', async () => {
  const p = 1_800_000_060;
  const dying = new Store(connectDaemon(server.url));
  await dying.apply(bigReport('Z', p));
  await dying.apply(bigReport('X', p));
  dying.redis.disconnect();
  assert.deepEqual(await admin.hgetall(K.pending(p)), { Z: '0', X: '0' });
  // two callers at once, with other chunk sizes: each pair once
  const a = new Store(connectDaemon(server.url), { chunkPairs: 3000 });
  const b = new Store(connectDaemon(server.url), { chunkPairs: 7000 });
  const [na, nb] = await Promise.all([a.materialise({ period: p }), b.materialise({ period: p })]);
  assert.equal(na, 2);
  assert.equal(nb, 2);
  await assertOnce(p);
  for (const s of [a, b]) s.redis.disconnect();
});

test('retention removes every key of the periods it drops, pending fields included', async () => {
  const redis = connectDaemon(server.url);
  const store = new Store(redis);
  await admin.flushall();
  await admin.sadd(K.hosts, 'X', 'Z');
  const ps = [1_900_000_000, 1_900_000_030, 1_900_000_060];
  for (const p of ps) {
    await store.apply(bigReport('Z', p));
    await store.apply(report('X', p, [['a>b', 1, 1]]));
  }
  await store.materialise({ period: ps[0]! });
  assert.equal(await store.trim(1), 2);
  for (const p of ps.slice(0, 2)) {
    assert.deepEqual(await admin.keys(`vc:period:{${p}}:*`), [], `period ${p} gone`);
  }
  assert.deepEqual(await admin.hkeys(K.pending(ps[2]!)), ['Z']);
  assert.equal((await hostPart(admin, ps[2]!, 'Z')).size, BIG);
  assert.equal(await store.materialise(), 1);
  redis.disconnect();
});

test('pair ids cached by a Store are not trusted across a dictionary re-created or a Redis restart', async () => {
  const own = await TestRedis.start();
  const a = new Redis(own.url);
  a.on('error', () => {}); // the restart below
  const redis = connectDaemon(own.url);
  redis.on('error', () => {});
  try {
    const store = new Store(redis);
    const p = 1_800_000_000;
    await store.apply(
      report('X', p, [
        ['a>b', 1, 10],
        ['b>a', 2, 20],
      ]),
    );
    // re-created: a new epoch, ids from 0 again
    await a.flushall();
    await a.hset(K.pairDict, 'epoch', 'feedfeedfeedfeed', 'next', 1);
    await a.hset(K.pairIds, 'x>y', 0);
    await a.hset(K.pairNames, 0, 'x>y'); // segment 0: id 0
    await store.apply(
      report('X', p, [
        ['a>b', 1, 10],
        ['b>a', 2, 20],
      ]),
    );
    assert.deepEqual([...(await hostPart(a, p, 'X'))].sort(), [
      ['a>b', [1, 10]],
      ['b>a', [2, 20]],
    ]);
    // restarted from a snapshot that lacks the latest ids, which meanwhile went to other members
    await store.apply(report('X', p + 30, [['c>d', 3, 30]])); // c>d: id 3 in the Store's cache
    assert.equal(await a.hget(K.pairNames, '0'), 'x>y\0a>b\0b>a\0c>d');
    await own.stop();
    await own.launch();
    await a.hset(K.pairNames, 0, 'x>y\0a>b\0b>a\0e>f'); // the snapshot lacked c>d; id 3 went to e>f since
    await a.hset(K.pairIds, 'e>f', 3);
    await store.apply(report('X', p + 60, [['c>d', 4, 40]]));
    assert.deepEqual([...(await hostPart(a, p + 60, 'X'))], [['c>d', [4, 40]]]);
    await assert.rejects(
      hostPart(a, p, 'X').then(async () => {
        await a.hset(K.pairDict, 'epoch', '0123456789abcdef');
        return hostPart(a, p, 'X');
      }),
      /dictionary/,
    );
  } finally {
    a.disconnect();
    redis.disconnect();
    await own.close();
  }
});

/**
 * A TCP relay between ioredis and Redis that, once armed, lets the transaction
 * through, waits until Redis has applied it, then cuts the connection before
 * the reply reaches the client: the case where ioredis replays a write that
 * was already done.
 */
class ReplyEater {
  private server!: Server;
  port = 0;
  armed = false;
  eaten = 0;
  constructor(
    private readonly upstream: number,
    private readonly applied: () => Promise<boolean>,
  ) {}

  async start(): Promise<void> {
    this.server = createServer((client) => this.relay(client));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  private relay(client: Socket): void {
    const up = createConnection(this.upstream, '127.0.0.1');
    let eating = false;
    let tail = '';
    const cut = () => {
      client.destroy();
      up.destroy();
    };
    client.on('data', (d) => {
      up.write(d);
      const seen = tail + d.toString('latin1');
      tail = seen.slice(-16);
      if (this.armed && /\$4\r\nexec\r\n/i.test(seen)) {
        this.armed = false;
        eating = true;
        void (async () => {
          while (!(await this.applied())) await sleep(1);
          this.eaten++;
          cut();
        })();
      }
    });
    up.on('data', (d) => {
      if (!eating) client.write(d);
    });
    client.on('error', cut).on('close', cut);
    up.on('error', cut).on('close', cut);
  }

  async stop(): Promise<void> {
    await new Promise((r) => this.server.close(r));
  }
}

test('a report whose reply is lost after Redis applied it is replayed by ioredis and still counts once', async () => {
  const p = 1_800_000_030;
  const eater = new ReplyEater(server.port, async () => (await admin.sismember(K.reported(p), 'X')) === 1);
  await eater.start();
  const redis = connectDaemon(`redis://127.0.0.1:${eater.port}`);
  redis.on('error', () => {}); // the cut below
  const store = new Store(redis);
  await store.apply(bigReport('Z', p));
  await store.materialise();
  try {
    eater.armed = true;
    const { result, retries } = await applyUntilDone(store, bigReport('X', p));
    assert.equal(eater.eaten, 1, 'the reply of the applied transaction was cut off');
    // ioredis re-sent the whole transaction on the new connection: the guard found X already there
    assert.equal(result, false);
    assert.equal(retries, 0);
    await materialiseUntilDone(store, p);
    await assertOnce(p);
  } finally {
    redis.disconnect();
    await eater.stop();
  }
});

test('connections killed mid-flight (CLIENT KILL, disconnect(true)) at many instants, applying or materialising: every report counts once', async (t) => {
  const redis = connectDaemon(server.url);
  const store = new Store(redis, { chunkPairs: 2000 });
  type Phase = 'applying' | 'materialising' | 'done';
  // Where the writer was when its connection went down: the kill landed mid-write unless 'done'.
  let phase: Phase = 'done';
  let closedIn: Phase | undefined;
  redis.on('close', () => {
    closedIn ??= phase;
  });
  redis.on('error', () => {}); // the kills below; each failed write is retried and checked
  const outcomes = { closedAfterAnswer: 0, closedWhileMaterialising: 0, failedThenRetried: 0, replayedNotYetApplied: 0, replayedAlreadyApplied: 0 };
  const whileApplying = () => outcomes.failedThenRetried + outcomes.replayedNotYetApplied + outcomes.replayedAlreadyApplied;
  // Kills are aimed by the times the same writes took unkilled just before (this machine's load varies),
  // and go on until enough have landed in each phase: a kill that lands after the answer proves nothing.
  const WANT = 8;
  const MAX_KILLS = 100;
  let kills = 0;
  try {
    for (; kills < MAX_KILLS && (whileApplying() < WANT || outcomes.closedWhileMaterialising < WANT); kills++) {
      const p = 1_800_001_000 + 30 * kills;
      let t0 = performance.now();
      await store.apply(bigReport('Z', p));
      const applyMs = performance.now() - t0;
      t0 = performance.now();
      await store.materialise();
      const materialiseMs = performance.now() - t0;
      const id = await redis.client('ID');
      const aimAtApply = whileApplying() < WANT && (outcomes.closedWhileMaterialising >= WANT || kills % 2 === 0);
      const fraction = ((kills * 7) % 10) / 10; // 0, 0.7, 0.4, 0.1, 0.8 ...: many instants within the phase
      const kill = async () => {
        if (kills % 4 < 2) await admin.client('KILL', 'ID', String(id));
        else redis.disconnect(true);
      };
      closedIn = undefined;
      phase = 'applying';
      // The write is the client's CPU, then a millisecond of Redis: too short to hit by timing, so an apply-aimed kill
      // lands while CLIENT PAUSE holds the transaction in Redis (the case where its reply never comes).
      if (aimAtApply) await admin.client('PAUSE', '10000', 'WRITE');
      const pending = (async () => {
        const a = await applyUntilDone(store, bigReport('X', p));
        phase = 'materialising';
        const retriesM = await materialiseUntilDone(store, p);
        phase = 'done';
        return { ...a, retriesM };
      })();
      if (aimAtApply) {
        try {
          await waitFor('the report transaction held by CLIENT PAUSE', async () => (/ flags=\w*b/.test(String(await admin.client('LIST', 'ID', String(id)))) ? true : undefined), 10_000, 2);
          await kill();
          await waitFor('the killed connection to close', async () => closedIn, 2000, 5).catch(() => undefined);
        } finally {
          await admin.client('UNPAUSE');
        }
      } else {
        await sleep(applyMs + fraction * materialiseMs);
        await kill();
      }
      const { result, retries } = await pending;
      const closed = await waitFor('the killed connection to close', async () => closedIn, 5000, 5);
      if (closed === 'done') outcomes.closedAfterAnswer++;
      else if (closed === 'materialising') outcomes.closedWhileMaterialising++;
      else if (retries > 0) outcomes.failedThenRetried++;
      else if (result) outcomes.replayedNotYetApplied++;
      else outcomes.replayedAlreadyApplied++;
      await assertOnce(p);
    }
  } finally {
    redis.disconnect();
  }
  t.diagnostic(`outcomes over ${kills} kills: ${JSON.stringify(outcomes)}`);
  assert.ok(whileApplying() >= WANT, `only ${whileApplying()} of ${kills} connections went down while applying`);
  assert.ok(outcomes.closedWhileMaterialising >= WANT, `only ${outcomes.closedWhileMaterialising} of ${kills} connections went down while materialising`);
});

test('the pair dictionary is bounded: a full one is retired, queries read both across the change, and retention drops the old one', async () => {
  await admin.flushall();
  const now = Date.now();
  const P = await periodNow(admin, now); // the current period; the span ends with the one before
  const store = new Store(admin, { dictionaryCap: 6 });
  await host(store, 'X', now - 3_600_000, now + 600_000);
  // Each period 4 new peers: the dictionary fills at the second period and a new one begins at the third.
  const periods = [P - 4 * L, P - 3 * L, P - 2 * L, P - L];
  for (const [i, p] of periods.entries()) {
    await store.apply(
      report(
        'X',
        p,
        [0, 1, 2, 3].map((j) => [`vm${i}>10.0.${i}.${j}`, 10 + j, 100 + j] as [string, number, number]),
      ),
    );
  }
  const dict = await admin.hgetall(K.pairDict);
  const retired = Object.keys(dict).filter((f) => f.startsWith('retired:'));
  assert.ok(retired.length >= 1, `a full dictionary was retired (${Object.keys(dict).join(', ')})`);
  assert.ok(Number(dict.next) <= 6 + 4, `the current dictionary holds ${dict.next} ids (cap 6, plus one report)`);
  for (const f of retired) assert.equal(await admin.exists(K.retiredNames(f.slice(8))), 1, 'its names kept for the periods that use it');

  // A detail query over the four periods names every pair right, from whichever dictionary wrote it.
  const r = await query(admin, { type: 'detail', span: 4, now });
  assert.equal(r.status, 'ok');
  const detail = r as DetailAnswer;
  for (const [i, p] of periods.entries()) {
    const got = detail.detail
      .find((x) => x.period === p)!
      .pairs.map((x) => `${x.src}>${x.dst}:${x.messages}`)
      .sort();
    assert.deepEqual(
      got,
      [0, 1, 2, 3].map((j) => `vm${i}>10.0.${i}.${j}:${10 + j}`),
      `period ${p}`,
    );
  }
  assert.deepEqual(await hostPart(admin, periods[0]!, 'X'), new Map([0, 1, 2, 3].map((j) => [`vm0>10.0.0.${j}`, [10 + j, 100 + j]])), 'an old period read from a retired dictionary');

  // Retention keeps the newest period only. The test's periods are in the past, so each dictionary is
  // marked retired just before the period kept began, as it would have been live.
  await admin.hset(K.pairDict, Object.fromEntries(retired.map((f) => [f, String(Math.floor(periods[2]! - 1))])));
  await store.trim(3);
  for (const f of retired) assert.equal(await admin.exists(K.retiredNames(f.slice(8))), 1, 'kept while a period kept began before it was retired');
  assert.equal((await hostPart(admin, periods[1]!, 'X')).size, 4);
  await store.trim(1);
  const left = Object.keys(await admin.hgetall(K.pairDict)).filter((f) => f.startsWith('retired:'));
  assert.deepEqual(left, [], 'dictionaries retired before the oldest period kept are gone');
  for (const f of retired) assert.equal(await admin.exists(K.retiredNames(f.slice(8))), 0);
  assert.equal((await hostPart(admin, periods[3]!, 'X')).size, 4, 'the period kept still reads');
});
