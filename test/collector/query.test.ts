import { after, before, beforeEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { geometric, query, type AggregateAnswer, type DetailAnswer, type Pair, type QueryResult, type Reformulate } from '../../src/collector/query.js';
import { Store } from '../../src/collector/store.js';
import { UnknownVmError, UserError } from '../../src/util/errors.js';
import { TestRedis } from '../helpers/redis.js';
import { host, L, report } from './fixtures.js';

// The query's instant: 12:00:10 is inside the period 12:00:00, so the newest
// ended period is 11:59:30 and a span of 3 is 11:58:30, 11:59:00, 11:59:30.
const NOW = Date.parse('2026-03-02T12:00:10Z');
const P3 = NOW / 1000 - 10 - L;
const P2 = P3 - L;
const P1 = P2 - L;
const GRACE = 2 * L * 1000;

let server: TestRedis;
let redis: Redis;
let store: Store;

before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  store = new Store(redis);
});
after(async () => {
  redis.disconnect();
  await server.close();
});
beforeEach(async () => {
  await redis.flushall();
  await redis.hset(K.settings, 'periodSeconds', L);
});

const ok = (r: QueryResult) => {
  assert.equal(r.status, 'ok', r.status === 'reformulate' ? r.reason : '');
  return r as AggregateAnswer;
};
const pairOf = (pairs: Pair[], src: string, dst: string) => pairs.find((p) => p.src === src && p.dst === dst);

/** Hosts A (VM a1) and B (VM b1), both alive since before P1; a1 sends 10, 20, 30 messages, b1 1, 2, 3. */
async function twoHosts(opts: { skipB3?: boolean } = {}): Promise<void> {
  await host(store, 'A', NOW - 600_000, NOW - 1000);
  await host(store, 'B', NOW - 600_000, NOW - 5000);
  await redis.sadd(K.vms, 'a1', 'b1');
  for (const [i, p] of [P1, P2, P3].entries()) {
    const k = i + 1;
    await store.apply(report('A', p, [['a1>b1', 10 * k, 1000 * k]]));
    if (!(opts.skipB3 && p === P3)) await store.apply(report('B', p, [['b1>a1', k, 100 * k]]));
  }
}

test('mean: the plain average per period over the span', async () => {
  await twoHosts();
  const r = ok(await query(redis, { type: 'mean', span: 3, now: NOW }));
  assert.deepEqual(r.periods, [P1, P2, P3]);
  assert.equal(r.approximate, false);
  assert.deepEqual(r.pairs, [
    { src: 'a1', dst: 'b1', messages: 20, bytes: 2000 },
    { src: 'b1', dst: 'a1', messages: 2, bytes: 200 },
  ]);
  // a duration is rounded up to whole periods: 1m is the newest two, 61s three.
  assert.deepEqual(ok(await query(redis, { type: 'mean', span: '1m', now: NOW })).pairs[0], { src: 'a1', dst: 'b1', messages: 25, bytes: 2500 });
  assert.deepEqual(ok(await query(redis, { type: 'mean', span: '61s', now: NOW })).periods, [P1, P2, P3]);
});

test('weighted: each period counts the coefficient times the one before, normalised', async () => {
  await twoHosts();
  const w2 = ok(await query(redis, { type: 'weighted', coefficient: 2, span: 3, now: NOW }));
  // weights 1, 2, 4 (sum 7): (10 + 40 + 120) / 7
  assert.equal(w2.coefficient, 2);
  assert.equal(pairOf(w2.pairs, 'a1', 'b1')!.messages, 24.285714); // 170 / 7, to 6 decimals
  assert.equal(pairOf(w2.pairs, 'a1', 'b1')!.bytes, 2428.571429); // 17000 / 7
  // 0.5: the older periods count more; weights 4, 2, 1: (40 + 40 + 30) / 7
  const half = ok(await query(redis, { type: 'weighted', coefficient: 0.5, span: 3, now: NOW }));
  assert.equal(pairOf(half.pairs, 'a1', 'b1')!.messages, 15.714286); // 110 / 7
  // 1 is the mean
  assert.equal(pairOf(ok(await query(redis, { type: 'weighted', coefficient: 1, span: 3, now: NOW })).pairs, 'a1', 'b1')!.messages, 20);
  // a long span with a large coefficient stays finite
  const g = geometric(120, 10);
  assert.equal(g[119], 1);
  assert.ok(g.every((x) => Number.isFinite(x)));
});

test('detail: every period on its own', async () => {
  await twoHosts();
  const r = (await query(redis, { type: 'detail', span: 3, now: NOW })) as DetailAnswer;
  assert.equal(r.status, 'ok');
  assert.deepEqual(
    r.detail.map((d) => d.period),
    [P1, P2, P3],
  );
  assert.deepEqual(
    r.detail.map((d) => d.pairs),
    [1, 2, 3].map((k) => [
      { src: 'a1', dst: 'b1', messages: 10 * k, bytes: 1000 * k },
      { src: 'b1', dst: 'a1', messages: k, bytes: 100 * k },
    ]),
  );
});

test('wait: a report that arrives during the wait completes the answer', async () => {
  await twoHosts({ skipB3: true });
  const t0 = Date.now();
  const late = setTimeout(() => void store.apply(report('B', P3, [['b1>a1', 3, 300]])), 500);
  const r = ok(await query(redis, { type: 'mean', span: 3, now: NOW, maxWaitMs: 5000 }));
  clearTimeout(late);
  const took = Date.now() - t0;
  assert.ok(took >= 450 && took < 2000, `answered after ${took} ms`);
  assert.equal(r.approximate, false);
  assert.deepEqual(pairOf(r.pairs, 'b1', 'a1'), { src: 'b1', dst: 'a1', messages: 2, bytes: 200 });
});

test('approximate: a missing host is estimated from its own period before, and flagged', async () => {
  await twoHosts({ skipB3: true });
  const r = ok(await query(redis, { type: 'detail', span: 3, now: NOW, approx: true })) as unknown as DetailAnswer;
  assert.equal(r.approximate, true);
  assert.deepEqual(r.estimated, [{ period: P3, host: 'B', from: P2 }]);
  const p3 = r.detail[2]!;
  assert.deepEqual(pairOf(p3.pairs, 'b1', 'a1'), { src: 'b1', dst: 'a1', messages: 2, bytes: 200 }); // B's P2
  assert.deepEqual(pairOf(p3.pairs, 'a1', 'b1'), { src: 'a1', dst: 'b1', messages: 30, bytes: 3000 }); // A's own, untouched
  // nothing was written: the estimate lives in the answer only
  assert.equal(await redis.sismember(K.reported(P3), 'B'), 0);
  // the wait comes first: with both, the answer is estimated once the wait is over
  const t0 = Date.now();
  const waited = ok(await query(redis, { type: 'mean', span: 3, now: NOW, approx: true, maxWaitMs: 300 }));
  assert.ok(Date.now() - t0 >= 290 && waited.approximate);
  // mean with the estimate: b1>a1 = (1 + 2 + 2) / 3
  const m = ok(await query(redis, { type: 'mean', span: 3, now: NOW, approx: true }));
  assert.equal(pairOf(m.pairs, 'b1', 'a1')!.messages, 1.666667);
});

test('reformulate: no wait, no approximation: says which host is missing and when the query is answerable', async () => {
  await twoHosts({ skipB3: true });
  const t0 = Date.now();
  const r = (await query(redis, { type: 'mean', span: 3, now: NOW, maxWaitMs: 300 })) as Reformulate;
  assert.ok(Date.now() - t0 >= 290, 'waited the 300 ms allowed first');
  assert.equal(r.status, 'reformulate');
  assert.deepEqual(r.missing, [{ period: P3, host: 'B' }]);
  assert.equal(r.answerableAt, NOW - 5000 + GRACE); // B's lastSeen + grace
  assert.match(r.reason, /11:59:30Z lacks B/);
  assert.equal(r.periodsAvailable, 3);
});

test('a host dead beyond the grace time does not block; a host that registered after the period is not awaited', async () => {
  await twoHosts();
  await host(store, 'C', NOW - 600_000, NOW - GRACE - 1); // died
  await host(store, 'D', NOW - 5000, NOW - 1000); // registered during the current period
  const r = ok(await query(redis, { type: 'mean', span: 3, now: NOW }));
  assert.equal(r.approximate, false);
  // with a longer grace, C is still alive and blocks every period it has not reported
  const blocked = (await query(redis, { type: 'mean', span: 3, now: NOW, graceMs: 5 * 60_000 })) as Reformulate;
  assert.equal(blocked.status, 'reformulate');
  assert.deepEqual(
    blocked.missing,
    [P1, P2, P3].map((period) => ({ period, host: 'C' })),
  );
  assert.equal(blocked.answerableAt, NOW - GRACE - 1 + 5 * 60_000);
});

test('a dead host reached during the wait ends the wait', async () => {
  await twoHosts({ skipB3: true });
  // B was last seen just under a grace ago: within ~300 ms it counts as dead
  await redis.hset(K.host('B'), 'lastSeen', NOW - GRACE + 300);
  const t0 = Date.now();
  const r = ok(await query(redis, { type: 'mean', span: 3, now: NOW, maxWaitMs: 5000 }));
  assert.ok(Date.now() - t0 < 1500);
  assert.equal(r.approximate, false);
});

test('addresses are named by the VM directory; receiver-side copies of a measured pair are dropped', async () => {
  await host(store, 'A', NOW - 600_000, NOW - 1000);
  await host(store, 'B', NOW - 600_000, NOW - 1000);
  await redis.sadd(K.vms, 'a1', 'b1', 'c1');
  await redis.hset(K.addr, '10.0.0.1', 'a1', '10.0.0.2', 'b1', 'fd00::2', 'b1', '10.0.0.3', 'c1');
  await store.apply(
    report('A', P3, [
      ['a1>10.0.0.2', 10, 1000], // a1 sent to b1 (v4)
      ['a1>fd00::2', 1, 100], //   and to b1 (v6): summed with the line above
      ['10.0.0.2>a1', 5, 500], // a1 received from b1: b1's host measured it too (dropped)
      ['10.0.0.3>a1', 7, 700], // a1 received from c1, whose host runs no agent (kept, as c1)
      ['198.51.100.7>a1', 3, 300], // an outside peer: stays an address
      ['a1>198.51.100.7', 4, 400],
    ]),
  );
  await store.apply(
    report('B', P3, [
      ['b1>10.0.0.1', 6, 600], // b1 sent to a1 (its own count wins over a1's 5)
      ['10.0.0.1>b1', 11, 1100], // b1 received from a1: a1's host measured it (dropped)
    ]),
  );
  await store.apply(report('A', P2, [])); // older periods exist, empty
  await store.apply(report('B', P2, []));
  const r = ok(await query(redis, { type: 'detail', span: 1, now: NOW })) as unknown as DetailAnswer;
  assert.deepEqual(r.detail[0]!.pairs, [
    { src: 'a1', dst: 'b1', messages: 11, bytes: 1100 },
    { src: 'c1', dst: 'a1', messages: 7, bytes: 700 },
    { src: 'b1', dst: 'a1', messages: 6, bytes: 600 },
    { src: 'a1', dst: '198.51.100.7', messages: 4, bytes: 400 },
    { src: '198.51.100.7', dst: 'a1', messages: 3, bytes: 300 },
  ]);
  const c1 = ok(await query(redis, { type: 'mean', span: 1, now: NOW, vm: 'c1' }));
  assert.deepEqual(c1.pairs, [{ src: 'c1', dst: 'a1', messages: 7, bytes: 700 }]);
  await assert.rejects(query(redis, { type: 'mean', span: 1, now: NOW, vm: 'zz' }), (e: unknown) => e instanceof UnknownVmError && e.vm === 'zz' && /unknown VM 'zz'/.test(e.message)); // the CLI adds `virt-cohort stats --vms`
});

test('a span older than the data is handed back with how many periods exist', async () => {
  await twoHosts();
  const r = (await query(redis, { type: 'mean', span: 10, now: NOW })) as Reformulate;
  assert.equal(r.status, 'reformulate');
  assert.equal(r.periodsAvailable, 3);
  assert.match(r.reason, /holds 3 period\(s\).*at most 3/);
  assert.equal(r.answerableAt, (P1 + 10 * L) * 1000);
  // with a retention shorter than the span it never will be
  await redis.hset(K.settings, 'retention', 5);
  const never = (await query(redis, { type: 'mean', span: 10, now: NOW })) as Reformulate;
  assert.equal(never.answerableAt, null);
  assert.match(never.reason, /retention keeps 5/);
  // nothing at all yet
  await redis.flushall();
  const none = (await query(redis, { type: 'mean', span: 1, now: NOW })) as Reformulate;
  assert.match(none.reason, /no period has been reported yet/);
  assert.equal(none.periodsAvailable, 0);
});

test('bad input: a clear UserError before anything is read', async () => {
  const bad = async (o: object, re: RegExp) =>
    assert.rejects(query(redis, { type: 'mean', span: 3, now: NOW, ...o }), (e: unknown) => e instanceof UserError && e.exitCode === 2 && re.test(e.message));
  await bad({ span: -1 }, /at least one period/);
  await bad({ span: 0 }, /at least one period/);
  await bad({ span: '' }, /span is empty/);
  await bad({ span: '-5m' }, /negative/);
  await bad({ span: 'soon' }, /not a duration/);
  await bad({ span: 2.5 }, /at least one period/);
  await bad({ type: 'weighted', coefficient: 0 }, /coefficient must be a number > 0/);
  await bad({ type: 'weighted', coefficient: -2 }, /coefficient must be a number > 0/);
  await bad({ type: 'median' }, /unknown query type 'median'/);
  await bad({ maxWaitMs: -1 }, /maximum wait/);
  await bad({ periodSeconds: 7 }, /divides an hour/);
  await bad({ vm: ' ' }, /VM name is empty/);
});
