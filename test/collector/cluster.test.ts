// The collector on a real Redis Cluster (3 primaries, 3 replicas, Debian's redis-server): the same fleet
// published into it and into one Redis gives the same answers to the three queries, the same groups and the
// same plan; the periods spread over the shards; and a primary killed while agents publish loses nothing and
// counts nothing twice.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { durable, publishSpool } from '../../src/agent/agent.js';
import { Spool } from '../../src/agent/spool.js';
import { K } from '../../src/collector/keys.js';
import { query } from '../../src/collector/query.js';
import { Registry, type HostRecord } from '../../src/collector/registry.js';
import { hostPart, Store } from '../../src/collector/store.js';
import { connectChecked, connectDaemon, RedisConnectError } from '../../src/config/redis.js';
import type { DoctorContext } from '../../src/doctor/checks.js';
import { checkRedis } from '../../src/doctor/redis.js';
import { DEFAULT_REDIS_URL } from '../../src/config/schema.js';
import { decide } from '../../src/manager/decide.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { readCollector } from '../../src/placement/fromCollector.js';
import { sleep, waitFor } from '../../src/util/exec.js';
import { TestCluster } from '../helpers/cluster.js';
import { TestRedis } from '../helpers/redis.js';
import { L, report } from './fixtures.js';
import { periodZset } from '../helpers/zsets.js';

const GiB = 1 << 20; // KiB
let cluster: TestCluster;
let single: TestRedis;
const conns: Redis[] = [];

before(async () => {
  [cluster, single] = await Promise.all([TestCluster.start({ nodeTimeoutMs: 2000 }), TestRedis.start()]);
});

after(async () => {
  for (const c of conns) c.disconnect();
  await Promise.all([cluster?.close(), single?.close()]);
});

function hostRecord(site: string): HostRecord {
  return { site, uri: 'qemu:///system', cpus: 8, memoryKiB: 16 * GiB, freeMemoryKiB: 12 * GiB, vms: 4, sensor: 'ebpf', periodSeconds: L };
}

const HOSTS = [
  ['a1', 'a'],
  ['a2', 'a'],
  ['b1', 'b'],
  ['b2', 'b'],
] as const;
/** Two groups of four VMs, each split across the sites, and a VM that talks to an address outside. */
const VMS: Record<string, string> = { g1: 'a1', g2: 'a2', g3: 'b1', g4: 'b2', h1: 'b1', h2: 'b2', h3: 'a1', h4: 'a2' };

/** What each host counts in period number `i`: what its VMs receive (each pair counted once, by its receiver). */
function pairsOf(host: string, i: number): [string, number, number][] {
  const out: [string, number, number][] = [];
  const group = (vm: string) => vm[0]!;
  for (const dst of Object.keys(VMS).filter((v) => VMS[v] === host)) {
    for (const src of Object.keys(VMS)) if (src !== dst && group(src) === group(dst)) out.push([`${src}>${dst}`, 100 + i, 1000 * (100 + i)]);
    out.push([`203.0.113.${i % 7}>${dst}`, 1, 60]);
  }
  return out;
}

/** The fleet, as agents publish it: hosts and VMs registered, then PERIODS periods of reports, trimmed as agents do. */
async function fill(redis: Redis, now: number): Promise<void> {
  const registry = new Registry(redis);
  // Small reports go inline, larger ones through materialise; few zsets kept and a short retention, so that
  // every path of Store (materialise, dropZsets, dropPeriods, the dictionary's prune) runs on the cluster too.
  const store = new Store(redis, { inlinePairs: 6, zsetPeriods: 4 });
  await redis.hset(K.settings, 'periodSeconds', L);
  for (const [h, s] of HOSTS) await registry.registerHost(h, hostRecord(s), now - 3_600_000);
  for (const [vm, h] of Object.entries(VMS)) {
    const site = HOSTS.find(([x]) => x === h)![1];
    await registry.putVm(vm, { uuid: '', host: h, site, state: 'running', mac: '', addresses: [], memoryKiB: GiB, vcpus: 1 });
  }
  const current = Math.floor(now / 1000 / L) * L;
  for (let i = 0; i < 16; i++) {
    const p = current - (15 - i) * L;
    for (const [h, s] of HOSTS) await store.apply({ ...report(h, p, pairsOf(h, i)), site: s });
    await store.trim(12);
    await store.materialise();
  }
  for (const [h, s] of HOSTS) await registry.registerHost(h, hostRecord(s), now + 600_000);
}

test('publish, the three queries, groups and plan: the same answers on a Redis Cluster as on one Redis', async () => {
  const now = Date.now();
  const one = await connectChecked(single.url, undefined);
  const many = await connectChecked(DEFAULT_REDIS_URL, cluster.auth, 5000);
  conns.push(one, many);
  await fill(one, now);
  await fill(many, now);

  for (const q of [
    { type: 'detail', span: 8 },
    { type: 'mean', span: 8 },
    { type: 'weighted', span: 8, coefficient: 0.8 },
  ] as const) {
    const a = await query(one, { ...q, now });
    const b = await query(many, { ...q, now });
    assert.equal(a.status, 'ok', `${q.type} on one Redis`);
    assert.deepEqual(b, a, `${q.type}: the same answer`);
  }
  const at = Math.floor(now / 1000 / L) * L - L;
  assert.deepEqual(await periodZset(many, at), await periodZset(one, at), 'the readable zsets');

  const opts = { query: { type: 'weighted', span: 8, maxWaitMs: 5000, approx: true } } as const;
  const [va, vb] = [await readCollector(one, opts), await readCollector(many, opts)];
  const input = (view: typeof va) => ({ view, settings: { ...DEFAULT_MANAGER, confirmRounds: 1 }, streak: new Map(), cooldowns: new Map(), closed: new Map(), now });
  const [da, db] = [decide(input(va)), decide(input(vb))];
  assert.deepEqual(
    da.groups.map((g) => [...g].sort()).sort(),
    [
      ['g1', 'g2', 'g3', 'g4'],
      ['h1', 'h2', 'h3', 'h4'],
    ],
    'the groups found',
  );
  assert.deepEqual(db.groups, da.groups, 'the same groups');
  assert.ok((da.plan?.moves.length ?? 0) > 0, 'a plan that gathers them');
  assert.deepEqual(db.plan?.moves, da.plan?.moves, 'the same plan');

  // The periods are spread over the shards: more than one primary holds period keys.
  const holding: number[] = [];
  for (const p of await cluster.primaries()) if (/vc:period:/.test(await cluster.ask(p, '--scan', '--pattern', 'vc:period:*'))) holding.push(p);
  assert.ok(holding.length >= 2, `period keys on ${holding.length} of 3 primaries`);
});

test('a primary killed while agents publish: after the failover every period of every host is there once, counted once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vc-cluster-spool-'));
  const redis = connectDaemon(DEFAULT_REDIS_URL, cluster.auth);
  redis.on('error', () => {});
  conns.push(redis);
  const base = 1_950_000_000 - (1_950_000_000 % L);
  const periods = Array.from({ length: 24 }, (_, i) => base + i * L);
  const hosts = ['k1', 'k2', 'k3'];
  const agents = await Promise.all(hosts.map(async (h) => ({ host: h, store: new Store(redis, { inlinePairs: 2 }), spool: await Spool.open(join(dir, h), 1000) })));
  const sent = (h: string, i: number): [string, number, number][] => [
    [`${h}-x>${h}-y`, i + 1, 100 * (i + 1)],
    [`${h}-y>${h}-x`, 2 * i + 1, 200 * (i + 1)],
    [`${h}-z>${h}-x`, 3, 300],
  ];
  let killed = 0;
  let longest = 0;
  const victim = (await cluster.primaries())[0]!;
  try {
    for (const [i, p] of periods.entries()) {
      if (i === 8) {
        await cluster.kill(victim); // mid-run: the next writes to its slots wait for a replica to take over
        killed = Date.now();
      }
      for (const a of agents) await a.spool.put(report(a.host, p, sent(a.host, i)));
      const t0 = Date.now();
      // Each agent flushes as the agent does (send, wait for a replica, trim, materialise), retrying until
      // its spool is empty; reports stay spooled through the failover.
      await Promise.all(
        agents.map(async (a) => {
          for (let tries = 0; (await a.spool.size()) > 0; tries++) {
            if (tries > 200) throw new Error(`${a.host}: period ${p} still spooled after 200 tries`);
            await publishSpool(a.spool, a.store, { host: a.host, retention: 0, durable: (ps) => durable(redis, ps) }).catch(() => sleep(100));
          }
        }),
      );
      longest = Math.max(longest, Date.now() - t0);
    }
    t.diagnostic(`the longest period's flush took ${longest} ms (the failover: cluster-node-timeout 2000 ms)`);
    await cluster.waitOk();
    for (const [i, p] of periods.entries()) {
      assert.deepEqual((await redis.smembers(K.reported(p))).sort(), hosts, `period ${i}: every host reported once`);
      for (const h of hosts) {
        assert.deepEqual(
          [...(await hostPart(redis, p, h))].sort(),
          sent(h, i)
            .map(([m, a, b]) => [m, [a, b]])
            .sort(),
          `period ${i}, ${h}: its counts`,
        );
      }
    }
    assert.deepEqual((await redis.zrangebyscore(K.periods, base, '+inf')).map(Number), periods, 'every period listed');
    // The zsets of the newest periods: each pair summed once (the large reports through materialise).
    for (const [i, p] of periods.slice(-4).entries()) {
      const n = periods.length - 4 + i;
      for (const h of hosts) assert.equal(Number(await redis.zscore(K.hostMsgs(p, h), `${h}-x>${h}-y`)), n + 1, `period ${n}: ${h}-x>${h}-y once`);
    }
    const now = await cluster.primaries();
    assert.ok(killed > 0 && !now.includes(victim) && now.length === 3, `a replica took over from the killed primary (primaries now ${now.join(', ')})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('doctor on the cluster: slots covered and a replica per primary; a primary left without one warns; uncovered slots and a dead seed list fail with the fix', async (t) => {
  const ctx = { redisUrl: DEFAULT_REDIS_URL, redisAuth: cluster.auth, periodSeconds: 30, host: 'h1' } as DoctorContext;
  const status = async () => (await checkRedis(ctx)).find((r) => r.id === 'cluster');
  // After the failover above, the promoted replica is a primary with no replica of its own.
  const lonely = await status();
  assert.equal(lonely?.status, 'warn', lonely?.detail);
  assert.match(lonely!.detail, /no replica online for 127\.0\.0\.1:\d+/);
  // The killed node comes back: it rejoins as a replica of the one that took over.
  const dead = cluster.ports.find((p) => !cluster.running(p))!;
  await cluster.launch(dead);
  // (Each check asks one node, at random; a node learns of the rejoin by gossip, a moment after another.)
  const healthy = await waitFor(
    'the old primary to rejoin as a replica',
    async () => {
      const r = await status();
      return r?.status === 'ok' ? r : undefined;
    },
    30_000,
    200,
  );
  t.diagnostic(healthy.detail);
  assert.match(healthy.detail, /state ok, 16384 of 16384 slots ok, 3 primaries with slots, 6 nodes; every primary has a replica/);
  // A primary and its replica both dead: their slots have no one; doctor says so, with the fix.
  const primary = (await cluster.primaries())[0]!;
  const id = (await cluster.ask(primary, 'cluster', 'myid')).trim();
  await cluster.roles();
  const replica = cluster.ports.find((p) => p !== primary && cluster.running(p) && cluster.replicaOf(p) === id);
  assert.ok(replica, `a replica of ${primary}`);
  await cluster.kill(primary);
  if (replica) await cluster.kill(replica);
  let last = '';
  const down = await waitFor(
    'doctor to see uncovered slots',
    async () => {
      const all = await checkRedis(ctx);
      last = all.map((r) => `${r.id} ${r.status}: ${r.detail}`).join(' | ');
      const r = all.find((x) => x.id === 'redis');
      return r?.status === 'fail' && /slots/.test(r.detail) ? r : undefined;
    },
    30_000,
    200,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; doctor said: ${last}`);
  });
  t.diagnostic(`${down.detail}; fix: ${down.fix}`);
  assert.match(down.detail, /the Redis Cluster of nodes .* is down: 127\.0\.0\.1:\d+ says cluster_state:fail, \d+ of 16384 slots served/);
  assert.match(down.fix!, /^redis-cli --cluster check 127\.0\.0\.1:\d+ says which slots; start their nodes, or redis-cli --cluster fix/);
  // Nobody at the seeds.
  await assert.rejects(connectChecked(DEFAULT_REDIS_URL, { cluster: ['127.0.0.1:1'] }, 2000), (err: unknown) => {
    assert.ok(err instanceof RedisConnectError, String(err));
    assert.match(err.problem, /no node of the Redis Cluster of nodes 127\.0\.0\.1:1 answers/);
    assert.match(err.fix, /start the cluster's nodes, or correct redis\.cluster/);
    return true;
  });
});
