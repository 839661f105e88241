import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { toPairs } from '../../src/agent/pairs.js';
import { K, splitPair } from '../../src/collector/keys.js';
import { query, type AggregateAnswer } from '../../src/collector/query.js';
import { Registry } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import type { FlowCounts } from '../../src/sensor/layout.js';
import { ODD_NAMES } from '../helpers/names.js';
import { TestRedis } from '../helpers/redis.js';
import { host, L, report } from './fixtures.js';
import { periodMembers } from '../helpers/zsets.js';

const NOW = Date.parse('2026-03-02T12:00:10Z');
const P = NOW / 1000 - 10 - L;

let server: TestRedis;
let redis: Redis;

before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
});
after(async () => {
  redis.disconnect();
  await server.close();
});

test('VM names with >, :, {, }, spaces and unicode go through the agent, the store and a query unchanged', async () => {
  const store = new Store(redis);
  await redis.hset(K.settings, 'periodSeconds', L);
  await host(store, 'A', NOW - 600_000, NOW - 1000);
  const ip = (i: number) => `10.9.0.${i + 1}`;
  for (const [i, name] of ODD_NAMES.entries()) {
    await new Registry(redis).putVm(name, { uuid: `u${i}`, host: 'A', site: 'site-a', state: 'running', mac: '', addresses: [ip(i)], memoryKiB: 1024, vcpus: 1 });
  }
  // Each VM sends i+1 packets to the next one (by address, as the sensor sees it).
  const ids = new Map(ODD_NAMES.map((n, i) => [i, n]));
  const flows: FlowCounts[] = ODD_NAMES.map((_, i) => ({
    vm: i,
    dir: 'tx',
    peer: ip((i + 1) % ODD_NAMES.length),
    family: 4,
    ethertype: 0x0800,
    packets: i + 1,
    bytes: 100 * (i + 1),
  }));
  const { pairs } = toPairs(flows, (id) => ids.get(id)!, await new Registry(redis).addresses());
  assert.equal(await store.apply(report('A', P, pairs)), true);

  const r = (await query(redis, { type: 'mean', span: 1, now: NOW })) as AggregateAnswer;
  assert.equal(r.status, 'ok');
  const got = new Map(r.pairs.map((p) => [`${p.src}\u0000${p.dst}`, p.messages]));
  for (const [i, name] of ODD_NAMES.entries()) {
    assert.equal(got.get(`${name}\u0000${ODD_NAMES[(i + 1) % ODD_NAMES.length]}`), i + 1, `${name} → next`);
  }
  assert.equal(r.pairs.length, ODD_NAMES.length, 'no pair split into wrong names');

  // The zsets for people hold the escaped members; each splits back into its two names.
  const members = await periodMembers(redis, P);
  assert.deepEqual(new Set(members.map((m) => splitPair(m)[0])), new Set(ODD_NAMES));
  assert.deepEqual((await new Registry(redis).vms()).map((v) => v.name).sort(), [...ODD_NAMES].sort());
  assert.equal(await new Registry(redis).vmGone('a>b', 'A'), true);
  assert.equal(await redis.hget(K.vm('a>b'), 'state'), 'stopped');
});
