import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Registry, type HostRecord } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { checkRoutes } from '../../src/doctor/routes.js';
import type { DoctorContext } from '../../src/doctor/checks.js';
import { CertWatch } from '../../src/manager/certs.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER, Manager } from '../../src/manager/manager.js';
import { TestRedis } from '../helpers/redis.js';
import { L, periodNow, report } from './fixtures.js';

const GiB = 1 << 20; // KiB
const FORGED = 'qemu+ext:///system?command=/tmp/evil';
// No libvirtd answers for these hosts: their TLS certificates are judged ok here (the lab tests judge real ones, test/lab/tls.test.ts).
const noCerts = () => new CertWatch(60_000, async () => ({ ok: true }));
let server: TestRedis;
let redis: Redis;

const hostRecord = (site: string, uri: string, migrateUri = ''): HostRecord => ({
  site,
  uri,
  migrateUri,
  cpus: 8,
  memoryKiB: 8 * GiB,
  freeMemoryKiB: 6 * GiB,
  vms: 2,
  sensor: 'ebpf',
  periodSeconds: L,
});

/** Pairs x1-x2 and y1-y2 split between a1 (site a) and b1 (site b): every plan moves a VM between them. b1's agent registered a forged URI. */
before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  const now = Date.now();
  const current = await periodNow(redis, now);
  const store = new Store(redis);
  const registry = new Registry(redis);
  const a1 = hostRecord('a', 'qemu+tls://a1.hv.example/system', 'tcp://10.0.1.1');
  const b1 = hostRecord('b', FORGED, 'tcp://203.0.113.66');
  for (const at of [now - 3_600_000, now + 600_000]) {
    await registry.registerHost('a1', a1, at);
    await registry.registerHost('b1', b1, at);
    if (at > now) break;
    const vm = (host: string, site: string) => ({ uuid: '', host, site, state: 'running' as const, mac: '', addresses: [], memoryKiB: GiB, vcpus: 1 });
    for (const [name, host, site] of [
      ['x1', 'a1', 'a'],
      ['y1', 'a1', 'a'],
      ['x2', 'b1', 'b'],
      ['y2', 'b1', 'b'],
    ] as const)
      await registry.putVm(name, vm(host, site));
    for (let p = current - 20 * L; p <= current + 5 * L; p += L) {
      await store.apply({
        ...report('a1', p, [
          ['x2>x1', 3000, 3e6],
          ['y2>y1', 3000, 3e6],
        ]),
        site: 'a',
      });
      await store.apply({
        ...report('b1', p, [
          ['x1>x2', 3000, 3e6],
          ['y1>y2', 3000, 3e6],
        ]),
        site: 'b',
      });
    }
  }
});

after(async () => {
  redis.disconnect();
  await server.close();
});

test('the manager leaves a host alone whose registered routes its configuration does not vouch for, and says why', async () => {
  const routes = { hostRoutes: {}, hostUris: ['qemu+tls://*.hv.example/system'], migrateNetworks: ['10.0.1.0/24'] };
  const m = new Manager(redis, { ...DEFAULT_MANAGER, apply: true, confirmRounds: 1, ...routes }, new LeaderLock(redis, 10_000), undefined, noCerts());
  try {
    const r = await m.round();
    assert.equal(r.view?.answer.status, 'ok', r.note);
    assert.deepEqual(
      r.refused.map((x) => x.host),
      ['b1'],
    );
    assert.match(r.refused[0]!.why, /the ext transport runs a program of the URI's choosing/);
    assert.ok(r.plan!.moves.length > 0, 'the plan still proposes moves');
    assert.deepEqual(r.moves, [], 'none is made: each touches b1');
    assert.deepEqual(r.done, [], 'nothing was run against the forged URI');
    for (const s of r.skipped) assert.match(s.why, /^b1: libvirt URI refused/);
  } finally {
    await m.stop();
  }
});

test('a forged migration URI alone is refused too, with what to configure', async () => {
  await redis.hset(K.host('b1'), 'uri', 'qemu+tls://b1.hv.example/system');
  const routes = { hostRoutes: {}, hostUris: ['qemu+tls://*.hv.example/system'], migrateNetworks: ['10.0.1.0/24'] };
  const m = new Manager(redis, { ...DEFAULT_MANAGER, confirmRounds: 1, ...routes }, new LeaderLock(redis, 10_000), undefined, noCerts());
  try {
    const r = await m.round();
    assert.deepEqual(
      r.refused.map((x) => x.host),
      ['b1'],
    );
    assert.match(r.refused[0]!.why, /migration URI tcp:\/\/203\.0\.113\.66 is not in manager\.migrateNetworks \(10\.0\.1\.0\/24\)/);
  } finally {
    await m.stop();
  }
});

// After the test before: b1's libvirt URI is right, its migration URI still forged.
test('doctor --manager names each host the manager leaves alone, and why', async () => {
  const c = { redisUrl: server.url } as DoctorContext;
  assert.equal((await checkRoutes(c)).status, 'skip', 'no manager configured here');
  const vouched = await checkRoutes({ ...c, routes: { hostRoutes: {}, hostUris: ['qemu+tls://*.hv.example/system'], migrateNetworks: ['10.0.1.0/24', '203.0.113.0/24'] } });
  assert.equal(vouched.status, 'ok', vouched.detail);
  const r = await checkRoutes({ ...c, routes: { hostRoutes: { b1: { uri: 'qemu+tls://b1.hv.example/system', migrateUri: 'tcp://10.0.1.2' } }, hostUris: [], migrateNetworks: [] } });
  assert.equal(r.status, 'fail');
  assert.match(
    r.detail,
    /^2 of 2 host\(s\) left alone .*a1: libvirt URI qemu\+tls:\/\/a1\.hv\.example\/system matches no manager\.hostUris pattern.*; b1: migration URI tcp:\/\/203\.0\.113\.66 is not the one manager\.hostRoutes gives it/,
  );
  assert.match(r.fix ?? '', /docs\/security\.md/);
});
