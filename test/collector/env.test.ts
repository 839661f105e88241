import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Registry } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { readHistory, recordMigration } from '../../src/manager/history.js';
import { CertWatch } from '../../src/manager/certs.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { Manager, type Round } from '../../src/manager/manager.js';
import { parseEnvironment } from '../../src/placement/env.js';
import { setPath } from '../../src/placement/envEdit.js';
import { changeEnvironment, storedEnvironment } from '../../src/placement/fromCollector.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { L, liveHost, report } from './fixtures.js';

/**
 * The environment kept in Redis over a real Redis and the real CLI: apply, set, show, history; the
 * compare-and-set under concurrent writers (CLI processes and in-process); bad input leaving the
 * version in force as it was; the commands and the manager using the stored version, each round.
 */

const MAIN = join(packageRoot, 'dist/src/cli/main.js');
const GiB = 1 << 20; // KiB
let server: TestRedis;
let redis: Redis;
let dir: string;
const { VIRT_COHORT_REDIS: _r, VIRT_COHORT_CONFIG: _c, ...childEnv } = process.env;

function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [MAIN, ...args, '--redis', server.url], { timeout: 60_000, env: childEnv }, (e, out, err) =>
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err }),
    ),
  );
}

const ENV = {
  sites: { a: { price: { perVmHour: 0.5 } }, b: { price: { perVmHour: 0.5 } } },
  hosts: { a1: { site: 'a' }, b1: { site: 'b' } },
  links: [{ sites: ['a', 'b'], latencyMs: 20, bandwidthMbit: 1000, transferPricePerGB: 0 }],
};

async function file(name: string, content: unknown): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, JSON.stringify(content));
  return f;
}

const version = async () => Number((await redis.get(K.envVersion)) ?? 0);
// No libvirtd answers for these hosts: their TLS certificates are judged ok here (test/lab/tls.test.ts judges real ones).
const noCerts = () => new CertWatch(60_000, async () => ({ ok: true }));

before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  dir = await mkdtemp(join(tmpdir(), 'vc-env-'));
  const registry = new Registry(redis);
  const store = new Store(redis);
  await redis.hset(K.settings, 'periodSeconds', L);
  const now = Date.now();
  const current = Math.floor(now / 1000 / L) * L;
  for (const at of [now - 3_600_000, now + 600_000]) {
    await registry.registerHost('a1', liveHost('a', 'qemu+tls://a1.hv.example/system'), at);
    await registry.registerHost('b1', liveHost('b', 'qemu+tls://b1.hv.example/system'), at);
  }
  await registry.putVm('v1', { uuid: '', host: 'a1', site: 'a', state: 'running', mac: '', addresses: [], memoryKiB: GiB, vcpus: 1 });
  for (let p = current - 20 * L; p <= current + 5 * L; p += L) {
    await store.apply({ ...report('a1', p, [['v1>10.9.9.9', 30, 3000]]), site: 'a' });
    await store.apply({ ...report('b1', p, []), site: 'b' });
  }
});

after(async () => {
  redis.disconnect();
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

test('with none stored, the commands say so and derive one from the registry; env show prints that one', async () => {
  const show = await cli('env', 'show');
  assert.equal(show.code, 0, show.err);
  assert.match(show.err, /no environment is stored in Redis: the one in use is the one derived from the host registry/);
  assert.match(show.out, /^SITE +LAN MBIT +PRICE NOW/m);
  const hist = await cli('env', 'history');
  assert.match(hist.out, /no environment is stored in Redis/);
  const plan = await cli('plan', '--span', '2');
  assert.match(plan.err, /no --env given and none stored in Redis/);
});

test('apply, set, show, history: each version with its time, source and author; what changed, field by field', async () => {
  const f = await file('env.json', ENV);
  const a = await cli('env', 'apply', f);
  assert.equal(a.code, 0, a.err);
  assert.match(a.out, /environment version 1 in force \(was none stored\)/);
  assert.match(a.out, /sites.b.price.perVmHour: \(none\) -> 0.5/);
  const s = await cli('env', 'set', 'site.b.price.perVmHour=0.02');
  assert.equal(s.code, 0, s.err);
  assert.match(s.out, /^environment version 2 in force \(was 1\); 1 change\(s\):\n {2}sites.b.price.perVmHour: 0.5 -> 0.02\n$/);
  const again = await cli('env', 'apply', f);
  assert.match(again.out, /environment version 3 in force \(was 2\); 1 change\(s\):\n {2}sites.b.price.perVmHour: 0.02 -> 0.5/);
  const same = await cli('env', 'apply', f);
  assert.match(same.out, /^no change: version 3 stays in force/);
  assert.equal(await version(), 3);
  const json = await cli('env', 'show', '--json');
  assert.deepEqual(JSON.parse(json.out), ENV);
  const old = await cli('env', 'show', '--at', '2', '--json');
  assert.equal((JSON.parse(old.out) as typeof ENV).sites.b.price.perVmHour, 0.02);
  const text = await cli('env', 'show');
  assert.match(text.out, /^environment version 3 of \S+Z, by \S+@\S+: env apply \//);
  assert.match(text.out, /^b +10000 +0.5\/VM-h +-/m);
  const h = await cli('env', 'history');
  assert.match(h.out, /^1 +\S+Z +\S+ +\d+ +env apply /m);
  assert.match(h.out, /^2 +\S+Z +\S+ +1 +env set site.b.price.perVmHour=0.02$/m);
  assert.match(h.out, /^3 \* +\S+Z/m);
  const hj = JSON.parse((await cli('env', 'history', '--json')).out) as { version: number; at: number }[];
  assert.deepEqual(
    hj.map((v) => v.version),
    [1, 2, 3],
  );
  assert.ok(hj.every((v, i) => i === 0 || v.at >= hj[i - 1]!.at));
});

test('concurrent env set calls are applied one after the other: none is lost', async () => {
  const before = await version();
  // Eight processes at once, each adding its own endpoint.
  const runs = await Promise.all(Array.from({ length: 8 }, (_, i) => cli('env', 'set', `endpoints.10.0.0.${i}=a`)));
  for (const r of runs) assert.equal(r.code, 0, r.err);
  assert.equal(await version(), before + 8);
  const env = (await storedEnvironment(redis))!;
  assert.deepEqual([...env.env.endpoints.keys()].sort(), Array.from({ length: 8 }, (_, i) => `10.0.0.${i}`).sort());
  // Forty in-process writers on their own connections, each raising the same counter by one: a lost update would show.
  const conns = Array.from({ length: 8 }, () => new Redis(server.url));
  try {
    await changeEnvironment(redis, (cur) => setPath(cur!, 'reserveMemoryMiB', 0).doc, { source: 'test', by: 'test' });
    const start = await version();
    const done = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        changeEnvironment(
          conns[i % conns.length]!,
          (cur) => {
            const n = (cur as { reserveMemoryMiB?: number }).reserveMemoryMiB ?? 0;
            return setPath(cur!, 'reserveMemoryMiB', n + 1).doc;
          },
          { source: `writer ${i}`, by: 'test' },
        ),
      ),
    );
    assert.equal((await storedEnvironment(redis))!.env.reserveMemoryKiB, 40 * 1024, 'each of the 40 increments is there');
    assert.equal(await version(), start + 40);
    assert.deepEqual(
      done.map((d) => d.version).sort((x, y) => x - y),
      Array.from({ length: 40 }, (_, i) => start + 1 + i),
      'each writer wrote its own version',
    );
    assert.ok(
      done.some((d) => d.retries > 0),
      'some writers found another had got in first, and made their change again',
    );
    const hist = await new Registry(redis).environmentHistory();
    assert.deepEqual(
      hist.map((v) => v.version),
      Array.from({ length: start + 40 }, (_, i) => i + 1),
      'every version is kept',
    );
  } finally {
    for (const c of conns) c.disconnect();
  }
  await changeEnvironment(redis, (cur) => setPath(cur!, 'reserveMemoryMiB', null).doc, { source: 'test', by: 'test' });
});

test('bad input: a clear error naming the entry, exit 2, and the version in force unchanged', async () => {
  const v = await version();
  const cases: [string[], RegExp][] = [
    [['env', 'set', 'sites.b.price.perVmHour=-1'], /sites.b.price.perVmHour is -1: it cannot be negative/],
    [['env', 'set', 'sites.zz.price.perVmHour=1'], /unknown site 'zz' \(the environment has a, b\)/],
    [['env', 'set', 'hosts.b1.availableUntil=2001-01-01T00:00:00Z'], /hosts.b1.availableUntil \(2001-01-01T00:00:00.000Z\) is in the past/],
    [['env', 'set', 'sites.b.price.perVmHour'], /is not PATH=VALUE/],
    [
      ['env', 'set', 'sites.b.price.schedule=[{"from":"2030-02-01T00:00Z","perVmHour":0.1},{"from":"2030-01-01T00:00Z","perVmHour":0.2}]'],
      /sites.b.price.schedule\[1\] \(from 2030-01-01T00:00:00.000Z\) is listed after schedule\[0\]/,
    ],
  ];
  for (const [args, re] of cases) {
    const r = await cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
  }
  const overlap = await file('overlap.json', {
    ...ENV,
    sites: {
      ...ENV.sites,
      b: {
        price: {
          perVmHour: 0.5,
          daily: [
            { hours: '22:00-06:00', perVmHour: 0.1 },
            { hours: '23:00-23:30', perVmHour: 0.1 },
          ],
        },
      },
    },
  });
  const r = await cli('env', 'apply', overlap);
  assert.equal(r.code, 2);
  assert.match(r.err, /overlap.json: sites.b.price.daily\[1\] \(23:00-23:30\) overlaps daily\[0\] \(22:00-06:00\)/);
  const past = await file('past.json', { ...ENV, sites: { ...ENV.sites, b: { price: { perVmHour: 0.5, schedule: [{ from: '2001-01-01T00:00Z', until: '2001-02-01T00:00Z', perVmHour: 0.1 }] } } } });
  assert.match((await cli('env', 'apply', past)).err, /sites.b.price.schedule\[0\].until \(2001-02-01T00:00:00.000Z\) is in the past/);
  assert.equal(await version(), v, 'no version was written');
});

test('the commands use the stored environment; --env is a one-off override, and they say so', async () => {
  const v = await version();
  const plan = await cli('plan', '--span', '2', '--objective', 'cost');
  assert.match(plan.err, new RegExp(`using the environment stored in Redis: version ${v} of \\S+Z`));
  const f = await file('other.json', ENV);
  const over = await cli('plan', '--span', '2', '--env', f);
  assert.match(over.err, new RegExp(`--env ${f.replace(/[/.]/g, '\\$&')}: used for this command only, a one-off override of the environment stored in Redis \\(version ${v}`));
});

test('the manager reads the stored environment each round, and each decision carries the version it used', async () => {
  const routes = { hostRoutes: {}, hostUris: ['qemu+tls://*.hv.example/system'], migrateNetworks: [] };
  const m = new Manager(redis, { ...DEFAULT_MANAGER, objective: 'cost', confirmRounds: 1, ...routes }, new LeaderLock(redis, 10_000), undefined, noCerts());
  try {
    await cli('env', 'apply', await file('equal.json', ENV));
    const v1 = await version();
    const r1 = await m.round();
    assert.equal(r1.view?.answer.status, 'ok', r1.note);
    assert.equal(r1.envVersion, v1);
    assert.deepEqual(r1.moves, [], 'both sites cost the same: v1 stays');
    assert.equal((await cli('env', 'set', 'sites.b.price.perVmHour=0.01')).code, 0);
    const r2 = await m.round();
    assert.equal(r2.envVersion, v1 + 1, 'the new version, read at the next round, without a restart');
    assert.deepEqual(
      r2.moves.map((x) => [x.vm, x.to, x.envVersion]),
      [['v1', 'b1', v1 + 1]],
    );
  } finally {
    await m.stop();
  }
  // A file (manager.environment) overrides the stored one: no version is recorded.
  const fileEnv = parseEnvironment(ENV, 'file.json');
  const o = new Manager(redis, { ...DEFAULT_MANAGER, objective: 'cost', confirmRounds: 1, env: fileEnv, envSource: 'file.json', ...routes }, new LeaderLock(redis, 10_000), undefined, noCerts());
  try {
    const r = await o.round();
    assert.equal(r.envVersion, undefined);
    assert.deepEqual(r.moves, [], 'under the file, both sites cost the same');
  } finally {
    await o.stop();
  }
  // The migration record keeps the version (written by the executor from the order).
  await recordMigration(redis, { vm: 'v1', from: 'a1', to: 'b1', outcome: 'ok', at: Date.now(), seconds: 1, envVersion: 7 });
  assert.equal((await readHistory(redis, 1))[0]?.envVersion, 7);
});

test('a new environment version wakes the manager: a round at once, not at its time', async () => {
  const routes = { hostRoutes: {}, hostUris: ['qemu+tls://*.hv.example/system'], migrateNetworks: [] };
  const rounds: Round[] = [];
  // Rounds 1,000 periods apart: a round within seconds is the new version's doing.
  const m = new Manager(redis, { ...DEFAULT_MANAGER, objective: 'cost', everyPeriods: 1000, ...routes }, new LeaderLock(redis, 10_000), (r) => rounds.push(r), noCerts());
  m.start();
  try {
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(rounds.length, 0, 'no round before the change');
    const at = Date.now();
    assert.equal((await cli('env', 'set', 'sites.b.price.perVmHour=0.02')).code, 0);
    const v = await version();
    for (let i = 0; i < 50 && !rounds.length; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(rounds[0]?.cause?.what, `environment version ${v}`, JSON.stringify(rounds.map((r) => r.cause)));
    assert.equal(rounds[0]?.envVersion, v);
    assert.ok(rounds[0]!.at - at < 3000, `woken ${rounds[0]!.at - at} ms after the change`);
  } finally {
    await m.stop();
  }
});
