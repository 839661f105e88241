import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { NAME_SEP } from '../../src/collector/dictionary.js';
import { query, type DetailAnswer, type QueryResult } from '../../src/collector/query.js';
import { Registry } from '../../src/collector/registry.js';
import { hostPart, Store } from '../../src/collector/store.js';
import { fileRedis, host, L, periodNow, report } from './fixtures.js';
import { periodScore, periodZsets } from '../helpers/zsets.js';

// Memory per period (issue 16, part 4): the readable zsets only for the newest periods, and the pair
// dictionary pruned by the retention, with the queries' answers and the exactly-once guard unchanged.
const r = fileRedis();
/** Second connections (another agent's), closed after the file's tests even when one fails. */
const conns: Redis[] = [];
after(() => {
  for (const c of conns) c.disconnect();
});
const connect = (): Redis => {
  const c = new Redis(r.server.url);
  conns.push(c);
  return c;
};

type Pair = [string, number, number];

/** Host h's pairs in period i: steady peers (VMs, and one address that is VM a1's, measured at the receiver), a peer that comes and goes, counts that change. */
function pairsOf(h: string, i: number): Pair[] {
  const out: Pair[] = [
    [`${h}1>a1`, 10 + i, 1000 + i],
    [`${h}1>b1`, 3 * i + 1, 300 * i + 7],
    [`10.0.0.1>${h}2`, 2, 200],
    [`${h}2>ext.example`, 1 + (i % 3), 50],
  ];
  if (i % 2 === 0) out.push([`${h}3>flaky${i % 4}`, 5, 500]);
  return out;
}

/** Every key holding a pair dictionary: the current names and index, the retired names. */
async function dictionaries(redis: Redis): Promise<{ current: string; retired: string[]; names: Set<string> }> {
  const dict = await redis.hgetall(K.pairDict);
  const retired = Object.keys(dict)
    .filter((f) => f.startsWith('retired:'))
    .map((f) => f.slice(8));
  const names = new Set<string>();
  for (const key of [K.pairNames, ...retired.map((e) => K.retiredNames(e))]) {
    for (const seg of Object.values(await redis.hgetall(key))) for (const n of seg.split(NAME_SEP)) names.add(n);
  }
  for (const m of await redis.hkeys(K.pairIds)) names.add(m);
  return { current: dict.epoch!, retired, names };
}

/** The three queries over `span` periods, as one comparable value. */
async function answers(redis: Redis, span: number, now: number): Promise<QueryResult[]> {
  const out: QueryResult[] = [];
  for (const type of ['detail', 'mean', 'weighted'] as const) out.push(await query(redis, { type, span, now, coefficient: 2 }));
  for (const a of out) assert.equal(a.status, 'ok', JSON.stringify(a).slice(0, 300));
  return out;
}

/** A clean Redis with `hosts` registered and live, and VM a1 (address 10.0.0.1) in the directory. */
async function setUp(hosts = ['a', 'b', 'c']): Promise<{ now: number; P: number }> {
  await r.redis.flushall();
  const now = Date.now();
  const P = await periodNow(r.redis, now); // the current period: the span ends with the one before
  for (const h of hosts) await host({ redis: r.redis }, h, now - 3_600_000, now + 600_000);
  await new Registry(r.redis).putVm('a1', { uuid: 'u', host: 'a', site: 'site-a', state: 'running', mac: '', addresses: ['10.0.0.1'], memoryKiB: 1, vcpus: 1 });
  return { now, P };
}

test('the zsets are kept for the newest zsetPeriods periods; older periods keep only their packed reports, and no late write brings them back', async () => {
  const { P } = await setUp();
  const store = new Store(r.redis, { zsetPeriods: 3, inlinePairs: 4 }); // reports of 5 pairs take the materialise path
  const periods = Array.from({ length: 6 }, (_, i) => P - (6 - i) * L);
  for (const [i, p] of periods.entries()) {
    await store.apply(report('a', p, pairsOf('a', i)));
    await store.materialise(); // as the agent does after each send
  }
  for (const p of periods) assert.equal(await periodZsets(r.redis, p), 2, `period ${p} has zsets while among the newest 3`);

  const [oldMsgs, oldBytes] = K.oldZsets(periods[0]!);
  await r.redis.zadd(oldMsgs!, 1, 'a1>b1'); // the all-hosts zsets of an older version
  await r.redis.zadd(oldBytes!, 1, 'a1>b1');
  await store.trim(0);
  assert.equal(await r.redis.exists(oldMsgs!, oldBytes!), 0, "an older version's all-hosts zsets go with the period's zsets");
  for (const [i, p] of periods.entries()) {
    assert.equal(await periodZsets(r.redis, p), i < 3 ? 0 : 2, `period ${i}: zsets ${i < 3 ? 'gone' : 'kept'}`);
    assert.equal((await hostPart(r.redis, p, 'a')).size, pairsOf('a', i).length, `period ${i}: its packed report is kept`);
  }
  // Late reports of an old period, small (written with the guard) and large (materialised): no zsets again.
  await store.apply(report('b', periods[0]!, pairsOf('b', 0).slice(0, 2)));
  await store.apply(report('c', periods[1]!, pairsOf('c', 0)));
  assert.equal(await r.redis.hexists(K.pending(periods[1]!), 'c'), 0, 'no pending field for a period out of the newest');
  await store.materialise();
  assert.equal((await periodZsets(r.redis, periods[0]!)) + (await periodZsets(r.redis, periods[1]!)), 0);
  assert.equal((await hostPart(r.redis, periods[0]!, 'b')).size, 2, 'the late report counts in queries');

  // A large report left pending while its period was new, materialised after three newer periods: written nowhere.
  await store.apply(report('b', periods[5]!, pairsOf('b', 0)));
  const other = new Store(r.redis, { zsetPeriods: 3, inlinePairs: 4 }); // has not the pairs in hand: reads them from Redis
  for (let k = 1; k <= 3; k++) await store.apply(report('a', P + k * L, pairsOf('a', k)));
  await other.materialise();
  assert.equal(await periodScore(r.redis, periods[5]!, 'b1>a1'), null);
  await store.trim(0);
  assert.equal(await r.redis.hexists(K.pending(periods[5]!), 'b'), 0, 'the pending field of a period out of the newest goes with its zsets');
  for (const p of [...periods, P + L, P + 2 * L, P + 3 * L]) assert.equal((await periodZsets(r.redis, p)) > 0, p >= P + L, `period ${p}`);
});

test('detail, mean and weighted answer the same before and after the zsets are trimmed', async () => {
  const { now, P } = await setUp();
  const all = new Store(r.redis, { zsetPeriods: 1000, inlinePairs: 4 });
  const periods = Array.from({ length: 12 }, (_, i) => P - (12 - i) * L);
  for (const [i, p] of periods.entries()) for (const h of ['a', 'b', 'c']) await all.apply(report(h, p, pairsOf(h, i)));
  await all.materialise();
  await all.trim(0);
  for (const p of periods) assert.equal(await periodZsets(r.redis, p), 6);
  const before = await answers(r.redis, 12, now);

  const newest2 = new Store(r.redis, { zsetPeriods: 2 });
  await newest2.trim(0);
  for (const [i, p] of periods.entries()) assert.equal(await periodZsets(r.redis, p), i >= 10 ? 6 : 0, `period ${i}`);
  assert.deepEqual(await answers(r.redis, 12, now), before);
  assert.deepEqual(await answers(connect(), 12, now), before, 'and on a new connection (no names cached)');
});

test('zsetPeriods 0: no zsets at all, and the pair index is still written', async () => {
  const { P } = await setUp();
  const store = new Store(r.redis, { zsetPeriods: 0, inlinePairs: 4 });
  await store.apply(report('a', P - 2 * L, pairsOf('a', 1))); // small
  await store.apply(report('b', P - L, pairsOf('b', 0))); // large
  assert.equal(await r.redis.hlen(K.pending(P - L)), 0);
  await store.materialise();
  assert.equal((await periodZsets(r.redis, P - 2 * L)) + (await periodZsets(r.redis, P - L)), 0);
  assert.equal(await r.redis.hlen(K.pairIds), pairsOf('a', 1).length + pairsOf('b', 0).length, 'the ids given are indexed for other Stores');
  assert.equal((await hostPart(r.redis, P - L, 'b')).size, pairsOf('b', 0).length);
});

test('the pair dictionary is pruned by the retention: a pair unseen leaves the index at the next prune and Redis one retention later; at most two dictionaries', async () => {
  const { now, P } = await setUp(['a']);
  const KEEP = 3;
  const store = new Store(r.redis);
  const periods = Array.from({ length: 10 }, (_, i) => P - (10 - i) * L);
  const epochs = new Set<string>();
  for (const [i, p] of periods.entries()) {
    // As the agent: apply, trim, materialise. `gone>x` is seen in the first period only.
    await store.apply(report('a', p, [...pairsOf('a', i), ...(i === 0 ? ([['gone>x', 1, 1]] as Pair[]) : [])]));
    await store.trim(KEEP);
    await store.materialise();
    const d = await dictionaries(r.redis);
    epochs.add(d.current);
    assert.ok(d.retired.length <= 1, `period ${i}: ${d.retired.length} retired dictionaries kept`);
    // 'gone>x' was last seen in period 0: out of the current dictionary once it has been pruned (period KEEP),
    // out of Redis once the retired one is no use to the periods kept (period 2 KEEP).
    if (i >= KEEP) assert.equal(await r.redis.hget(K.pairIds, 'gone>x'), null, `period ${i}: not in the index`);
    assert.equal(d.names.has('gone>x'), i < 2 * KEEP, `period ${i}: gone>x ${i < 2 * KEEP ? 'still kept' : 'gone'}`);
    // Every period kept still reads, whichever dictionary wrote it.
    const kept = (await r.redis.zrange(K.periods, '0', '-1')).map(Number);
    for (const q of kept) assert.equal((await hostPart(r.redis, q, 'a')).size, pairsOf('a', periods.indexOf(q)).length + (q === periods[0] ? 1 : 0));
  }
  assert.ok(epochs.size >= 3, `the dictionary was pruned every retention (${epochs.size} epochs)`);
  const detail = await query(r.redis, { type: 'detail', span: KEEP, now });
  assert.equal(detail.status, 'ok');
  assert.ok(!JSON.stringify(detail).includes('gone'));
});

/** Runs `fn` once, just before the next MULTI of `conn` is sent: after the Store read its ids, before its APPLY runs. */
function beforeNextMulti(conn: Redis, fn: () => Promise<unknown>): void {
  const multi = conn.multi.bind(conn) as (...a: unknown[]) => ReturnType<Redis['multi']>;
  conn.multi = ((...a: unknown[]) => {
    const tx = multi(...a);
    const exec = tx.exec.bind(tx);
    tx.exec = (async () => {
      conn.multi = multi as Redis['multi'];
      await fn();
      return exec();
    }) as typeof tx.exec;
    return tx;
  }) as Redis['multi'];
}

test("a prune between a writer's id lookup and its report: the report is refused once, written again with the new dictionary, counted once and named right", async () => {
  const { now, P } = await setUp(['a']);
  const writer = new Store(connect());
  const trimmer = new Store(r.redis);
  const periods = Array.from({ length: 5 }, (_, i) => P - (5 - i) * L);
  for (let i = 0; i < 4; i++) await writer.apply(report('a', periods[i]!, pairsOf('a', 0))); // the writer's ids are cached
  const old = await r.redis.hget(K.pairDict, 'epoch');

  let pruned = 0;
  beforeNextMulti(writer.redis, async () => {
    await trimmer.trim(3); // drops period 0, and prunes the dictionary, which has served reports since then
    pruned = 1;
  });
  assert.equal(await writer.apply(report('a', periods[4]!, pairsOf('a', 0))), true);
  assert.equal(pruned, 1);
  assert.notEqual(await r.redis.hget(K.pairDict, 'epoch'), old, 'the dictionary was pruned under the writer');
  assert.equal(await writer.apply(report('a', periods[4]!, pairsOf('a', 0))), false, 'the exactly-once guard still holds');
  for (const p of periods.slice(1)) {
    assert.deepEqual(await hostPart(r.redis, p, 'a'), new Map(pairsOf('a', 0).map(([m, a, b]) => [m, [a, b]])), `period ${p} reads right`);
  }
  const d = (await query(r.redis, { type: 'detail', span: 4, now })) as DetailAnswer;
  assert.equal(d.status, 'ok');
  assert.deepEqual(
    d.detail.map((x) => x.pairs.length),
    [5, 5, 5, 5],
  );
});

test('a report written just before a prune, even for a period ahead of the others (a clock ahead), keeps its names as long as its period is kept', async () => {
  const { P } = await setUp();
  const writer = new Store(connect());
  const trimmer = new Store(r.redis);
  const periods = Array.from({ length: 4 }, (_, i) => P - (8 - i) * L);
  for (const p of periods) await writer.apply(report('a', p, pairsOf('a', 0)));
  const ahead = P + 4 * L;
  await writer.apply(report('b', ahead, [['b1>ahead', 7, 70]])); // the newest period the old dictionary wrote
  const old = await r.redis.hget(K.pairDict, 'epoch');
  await trimmer.trim(3);
  assert.notEqual(await r.redis.hget(K.pairDict, 'epoch'), old);
  // The next periods come with a new dictionary; the old one is kept while the period ahead is.
  // Periods after Redis's clock at the prune and before the one ahead: a mark taken from the clock would drop it now.
  for (let k = 1; k <= 3; k++) {
    await writer.apply(report('a', P + k * L, pairsOf('a', 1)));
    await trimmer.trim(3);
    assert.deepEqual(await hostPart(r.redis, ahead, 'b'), new Map([['b1>ahead', [7, 70]]]), `after trim ${k}`);
  }
  await writer.apply(report('a', ahead + L, pairsOf('a', 1)));
  await writer.apply(report('a', ahead + 2 * L, pairsOf('a', 1)));
  await writer.apply(report('a', ahead + 3 * L, pairsOf('a', 1)));
  await trimmer.trim(3);
  assert.equal(await r.redis.exists(K.retiredNames(old!)), 0, 'gone once its newest period is no longer kept');
});
