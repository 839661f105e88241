import { test } from 'node:test';
import assert from 'node:assert/strict';
import { K } from '../../src/collector/keys.js';
import { Registry, type VmRecord } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { fileRedis, hostRecord, report } from './fixtures.js';

const r = fileRedis();
let registry: Registry;

const vm = (host: string, state: VmRecord['state'], addresses: string[] = []): VmRecord => ({ uuid: 'u-1', host, site: 's', state, mac: '52:54:00:00:00:01', addresses, memoryKiB: 65536, vcpus: 1 });
const web = async () => (await registry.vms()).find((v) => v.name === 'web')!;

test('a VM record: since moves only when its host or state changes; its addresses point at it', async () => {
  registry = new Registry(r.redis);
  await registry.putVm('web', vm('h1', 'running', ['10.0.0.1', 'fd00::1']), 1000);
  await registry.putVm('web', vm('h1', 'running', ['10.0.0.1', 'fd00::1']), 2000);
  assert.equal((await web()).since, 1000, 'the same host and state: since stays');
  assert.deepEqual(
    await registry.addresses(),
    new Map([
      ['10.0.0.1', 'web'],
      ['fd00::1', 'web'],
    ]),
  );
  await registry.putVm('web', { ...vm('h2', 'arriving'), pinned: true }, 3000);
  const rec = await web();
  assert.deepEqual(
    { host: rec.host, state: rec.state, since: rec.since, pinned: rec.pinned, optOut: rec.optOut, addresses: rec.addresses },
    { host: 'h2', state: 'arriving', since: 3000, pinned: true, optOut: false, addresses: [] },
  );
  await registry.putVm('web', vm('h2', 'running'), 4000);
  assert.equal((await web()).since, 4000);
});

test('a VM is marked gone only by the host the directory places it on; its addresses only where they still point at it', async () => {
  assert.equal(await registry.vmGone('web', 'h1', 5000), false, 'h1 is its old host: the VM moved to h2');
  assert.equal((await web()).state, 'running');
  assert.equal(await registry.vmGone('web', 'h2', 6000), true);
  assert.deepEqual([(await web()).state, (await web()).since], ['stopped', 6000]);
  await r.redis.hset(K.addr, 'fd00::1', 'db'); // taken over by another VM since
  await registry.dropAddresses('web', ['10.0.0.1', 'fd00::1']);
  assert.deepEqual(await registry.addresses(), new Map([['fd00::1', 'db']]));
});

test('a command that fails inside a transaction fails the call (registration, retention, a report)', async () => {
  const store = new Store(r.redis);
  await r.redis.set(K.settings, 'not a hash');
  await assert.rejects(registry.registerHost('h1', hostRecord()), /WRONGTYPE/);
  await r.redis.del(K.settings);
  await registry.registerHost('h1', hostRecord());
  for (const p of [1_800_000_000, 1_800_000_030]) await store.apply(report('h1', p, [['a>b', 1, 1]]));
  await r.redis.set(K.pending, 'not a hash');
  await assert.rejects(store.trim(1), /WRONGTYPE/);
  assert.deepEqual(await r.redis.zrange(K.periods, '0', '-1'), ['1800000030'], 'Redis ran the rest of the MULTI (no rollback): the error still reaches the caller');
  await r.redis.del(K.pending);
  await r.redis.set(K.msgs(1_800_000_060), 'not a zset');
  await assert.rejects(store.apply(report('h1', 1_800_000_060, [['a>b', 1, 1]])), /WRONGTYPE/, "the script's error, not a reply");
});
