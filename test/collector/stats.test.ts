import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Store } from '../../src/collector/store.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { host, L, report } from './fixtures.js';

const MAIN = join(packageRoot, 'dist/src/cli/main.js');
let server: TestRedis;
let redis: Redis;

function cli(...args: string[]): Promise<{ code: number; out: string; err: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, 'stats', '--redis', server.url, ...args], { timeout: 20_000 }, (e, out, err) => {
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err, ms: Date.now() - t0 });
    });
  });
}

// The CLI queries at the real "now": host A reported a constant 10 messages per period
// for periods all around it and is long dead, so every span is complete whenever it runs.
before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  const store = new Store(redis);
  const now = Date.now();
  const current = Math.floor(now / 1000 / L) * L;
  await redis.hset(K.settings, 'periodSeconds', L);
  await host(store, 'A', now - 3_600_000, now - 600_000);
  await redis.sadd(K.vms, 'a1', 'b1');
  for (let p = current - 20 * L; p <= current + 5 * L; p += L) await store.apply(report('A', p, [['a1>b1', 10, 1000]]));
});
after(async () => {
  redis.disconnect();
  await server.close();
});

test('stats: a table by default, JSON with --json, exit 0', async () => {
  const human = await cli('--span', '4');
  assert.equal(human.code, 0, human.err);
  assert.match(human.out, /^mean over 4 period\(s\) of 30 s, .* exact\n/);
  assert.match(human.out, /a1 +b1 +10 +1000/);
  const json = await cli('--span', '2m', '--type', 'weighted', '--coefficient', '3', '--json');
  assert.equal(json.code, 0, json.err);
  const r = JSON.parse(json.out);
  assert.equal(r.status, 'ok');
  assert.equal(r.periods.length, 4);
  assert.deepEqual(r.pairs, [{ src: 'a1', dst: 'b1', messages: 10, bytes: 1000 }]);
});

test('stats --hosts and --vms print the registry and the directory', async () => {
  const hosts = await cli('--hosts');
  assert.equal(hosts.code, 0, hosts.err);
  assert.match(hosts.out, /^HOST +SITE +STATE/);
  assert.match(hosts.out, /\nA +site-a +dead/);
  const vms = JSON.parse((await cli('--vms', '--json')).out);
  assert.deepEqual(
    vms.map((v: { name: string }) => v.name),
    ['a1', 'b1'],
  );
});

test('stats: a live host that has not reported: exit 3 with when to ask again, or an approximate answer with --approx', async () => {
  const lastSeen = Date.now() + 3_600_000; // alive for the whole test
  await redis
    .multi()
    .sadd(K.hosts, 'Late')
    .hset(K.host('Late'), 'firstSeen', Date.now() - 3_600_000, 'lastSeen', lastSeen)
    .exec();
  try {
    const back = await cli('--span', '2');
    assert.equal(back.code, 3, back.err);
    assert.match(back.out, /lacks Late/);
    assert.ok(back.out.includes(`answerable: ${new Date(lastSeen + 2 * L * 1000).toISOString()} at the latest`), back.out);
    const t0 = Date.now();
    const waited = await cli('--span', '2', '--wait', '1s', '--json');
    assert.equal(waited.code, 3);
    assert.ok(Date.now() - t0 >= 1000, 'waited the second allowed');
    assert.equal(JSON.parse(waited.out).answerableAt, lastSeen + 2 * L * 1000);
    const approx = await cli('--span', '2', '--approx');
    assert.equal(approx.code, 0, approx.err);
    assert.match(approx.out, /APPROXIMATE: estimated Late in .* as zero \(no earlier report\)/);
  } finally {
    await redis.multi().srem(K.hosts, 'Late').del(K.host('Late')).exec();
  }
});

test('stats: bad input exits 2 with a message that says what to do', async () => {
  const cases: [string[], RegExp][] = [
    [['--span', '-3'], /at least one period/],
    [['--span', ''], /span is empty/],
    [['--span', '-5m'], /negative/],
    [['--type', 'weighted', '--coefficient', '0'], /coefficient must be a number > 0/],
    [['--type', 'weighted', '--coefficient', '-1'], /coefficient must be a number > 0/],
    [['--type', 'median'], /unknown query type 'median'/],
    [['--vm', 'nope'], /unknown VM 'nope'.*stats --vms/],
    [['--wait', 'soon'], /--wait 'soon' is not a duration/],
    [['--top', '0'], /--top '0' is not a positive whole number/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re);
  }
});

test('stats: an unreachable Redis is reported within a few seconds, exit 2', async () => {
  const r = await new Promise<{ code: number; err: string }>((resolve) =>
    execFile(process.execPath, [MAIN, 'stats', '--redis', 'redis://127.0.0.1:1'], { timeout: 20_000 }, (e, _out, err) => resolve({ code: e ? Number((e as { code?: number }).code) : 0, err })),
  );
  assert.equal(r.code, 2);
  assert.match(r.err, /nothing listens at redis:\/\/127\.0\.0\.1:1 \(connect ECONNREFUSED.*: start Redis/);
});
