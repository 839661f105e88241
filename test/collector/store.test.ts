import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import type { Report } from '../../src/collector/report.js';
import { connectRedis, Store } from '../../src/collector/store.js';
import { sleep } from '../../src/util/exec.js';
import { TestRedis } from '../helpers/redis.js';
import { report } from './fixtures.js';

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
  report(host, period, Array.from({ length: BIG }, (_, i) => [`v${i}>w`, host === 'X' ? i + 1 : 1, host === 'X' ? 100 * (i + 1) : 100] as [string, number, number]));

/** Every pair of the period counted exactly once for both hosts. */
async function assertOnce(period: number): Promise<void> {
  assert.deepEqual((await admin.smembers(K.reported(period))).sort(), ['X', 'Z']);
  const msgs = await admin.zrange(K.msgs(period), '0', '-1', 'WITHSCORES');
  const bytes = new Map<string, number>();
  const b = await admin.zrange(K.bytes(period), '0', '-1', 'WITHSCORES');
  for (let i = 0; i < b.length; i += 2) bytes.set(b[i]!, Number(b[i + 1]));
  assert.equal(msgs.length, 2 * BIG);
  for (let i = 0; i < msgs.length; i += 2) {
    const n = Number(msgs[i]!.slice(1, msgs[i]!.indexOf('>')));
    if (Number(msgs[i + 1]) !== n + 2 || bytes.get(msgs[i]!) !== 100 * (n + 2)) {
      assert.fail(`period ${period}: ${msgs[i]} counts ${msgs[i + 1]} messages, ${bytes.get(msgs[i]!)} bytes; once is ${n + 2}, ${100 * (n + 2)}`);
    }
  }
  assert.equal(await admin.zcard(K.hostMsgs(period, 'X')), BIG);
  assert.equal(await admin.zscore(K.hostMsgs(period, 'X'), 'v7>w'), '8');
}

/** As the agent does: a write that failed is sent again until Redis confirms it. */
async function applyUntilDone(store: Store, r: Report): Promise<{ result: boolean; retries: number }> {
  for (let retries = 0; ; retries++) {
    try {
      return { result: await store.apply(r), retries };
    } catch {
      await sleep(20);
    }
  }
}

test('the same report applied twice counts once, for the first reporter (COPY) and for later ones (ZINCRBY, ZUNIONSTORE)', async () => {
  const redis = connectRedis(server.url);
  const store = new Store(redis);
  const p = 1_800_000_000;
  assert.equal(await store.apply(bigReport('Z', p)), true);
  assert.equal(await store.apply(bigReport('Z', p)), false);
  assert.equal(await store.apply(bigReport('X', p)), true); // ZUNIONSTORE: as many pairs as the total
  assert.equal(await store.apply(bigReport('X', p)), false);
  await assertOnce(p);
  // a small late report into a big period takes the ZINCRBY path
  const small = report('Y', p, [['v3>w', 5, 500]]);
  assert.equal(await store.apply(small), true);
  assert.equal(await store.apply(small), false);
  assert.equal(await admin.zscore(K.msgs(p), 'v3>w'), String(4 + 1 + 5));
  assert.equal(await admin.zscore(K.msgs(p), 'v4>w'), String(5 + 1));
  assert.equal(await admin.zscore(K.periods, String(p)), String(p));
  redis.disconnect();
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
  constructor(private readonly upstream: number, private readonly applied: () => Promise<boolean>) {}

  async start(): Promise<void> {
    this.server = createServer((client) => this.relay(client));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = (this.server.address() as { port: number }).port;
  }

  private relay(client: Socket): void {
    const up = createConnection(this.upstream, '127.0.0.1');
    let eating = false;
    let tail = '';
    const cut = () => { client.destroy(); up.destroy(); };
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
    up.on('data', (d) => { if (!eating) client.write(d); });
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
  const redis = connectRedis(`redis://127.0.0.1:${eater.port}`);
  redis.on('error', () => {}); // the cut below
  const store = new Store(redis);
  await store.apply(bigReport('Z', p));
  try {
    eater.armed = true;
    const { result, retries } = await applyUntilDone(store, bigReport('X', p));
    assert.equal(eater.eaten, 1, 'the reply of the applied transaction was cut off');
    // ioredis re-sent the whole transaction on the new connection: the guard found X already there
    assert.equal(result, false);
    assert.equal(retries, 0);
    await assertOnce(p);
  } finally {
    redis.disconnect();
    await eater.stop();
  }
});

test('connections killed mid-flight (CLIENT KILL, disconnect(true)) at many instants: every report counts once', async (t) => {
  const redis = connectRedis(server.url);
  const store = new Store(redis);
  const outcomes = { killedAfterAnswer: 0, replayedNotYetApplied: 0, replayedAlreadyApplied: 0, failedThenRetried: 0 };
  redis.on('error', () => {}); // the kills below; each failed write is retried and checked
  const N = 32;
  for (let i = 0; i < N; i++) {
    const p = 1_800_001_000 + 30 * i;
    await store.apply(bigReport('Z', p));
    const id = await redis.client('ID');
    let answered = false;
    const pending = applyUntilDone(store, bigReport('X', p)).finally(() => { answered = true; });
    await sleep(5 * (i >> 1)); // 0 to 75 ms into a write that takes ~100 ms here (mostly building it)
    const early = !answered;
    if (i % 2 === 0) await admin.client('KILL', 'ID', String(id)).catch(() => 0);
    else redis.disconnect(true);
    const { result, retries } = await pending;
    if (!early) outcomes.killedAfterAnswer++;
    else if (retries > 0) outcomes.failedThenRetried++;
    else if (result) outcomes.replayedNotYetApplied++;
    else outcomes.replayedAlreadyApplied++;
    await assertOnce(p);
  }
  t.diagnostic(`outcomes over ${N} kills: ${JSON.stringify(outcomes)}`);
  redis.disconnect();
});
