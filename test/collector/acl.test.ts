import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { query } from '../../src/collector/query.js';
import { Registry, type VmRecord } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { connectChecked } from '../../src/config/redis.js';
import { readHistory, recordMigration, startCooldown } from '../../src/manager/history.js';
import { LeaderLock, loadStreak, saveStreak } from '../../src/manager/lock.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { hostRecord, L, periodNow, report } from './fixtures.js';

// A real Redis 7 loading the aclfile `virt-cohort acl` prints: agents a1, b1 and c1 (c1 may trim old periods), the manager, the reader.
const MAIN = join(packageRoot, 'dist/src/cli/main.js');
const NOPERM = /NOPERM|no permissions|EXECABORT/;
let dir: string;
let server: TestRedis;
let admin: Redis;
const open: Redis[] = [];

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  const { VIRT_COHORT_REDIS: _r, VIRT_COHORT_CONFIG: _c, ...base } = process.env;
  return new Promise((resolve) =>
    execFile(process.execPath, [MAIN, ...args], { env: { ...base, ...env }, timeout: 30_000 }, (e, out, err) => resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, out, err })),
  );
}

/** A connection as one of the generated users, the way the daemons make theirs (redis.username, redis.passwordFile). */
async function as(user: string): Promise<Redis> {
  const r = await connectChecked(server.url, { username: user, passwordFile: join(dir, 'secrets', `${user}.password`) });
  open.push(r);
  return r;
}

const vm = (host: string): VmRecord => ({ uuid: 'u', host, site: 'site-a', state: 'running', mac: '', addresses: ['10.0.0.1'], memoryKiB: 1024, vcpus: 1 });
let P: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vc-acl-'));
  const secrets = join(dir, 'secrets');
  const main = await cli(['acl', '--hosts', 'a1,b1', '--secrets', secrets]);
  assert.equal(main.code, 0, main.err);
  const trim = await cli(['acl', '--hosts', 'c1', '--secrets', secrets, '--agents-trim']);
  assert.equal(trim.code, 0, trim.err);
  const c1 = trim.out.split('\n').filter((l) => l.startsWith('user vc-agent-c1 '));
  // The test's own admin: the open default user (a real deployment turns it off).
  await writeFile(join(dir, 'users.acl'), ['user default on nopass ~* &* +@all', main.out.trim(), ...c1, ''].join('\n'));
  server = await TestRedis.start(undefined, undefined, join(dir, 'users.acl'));
  admin = await connectChecked(server.url, undefined);
  P = (await periodNow(admin, Date.now())) - L;
});

after(async () => {
  for (const r of [...open, admin]) r?.disconnect();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

test("an agent's Store writes work with its own credentials: registry, directory, reports (inline and materialised), events", async () => {
  for (const h of ['a1', 'b1']) {
    const conn = await as(`vc-agent-${h}`);
    const store = new Store(conn, { inlinePairs: h === 'a1' ? 10 : 0 }); // b1: the large-report path
    const registry = new Registry(conn);
    await registry.registerHost(h, hostRecord());
    await registry.putVm(`${h}-vm`, vm(h));
    assert.equal(await store.apply(report(h, P, [[`${h}-vm>x`, 5, 500]])), true);
    assert.equal(await store.apply(report(h, P, [[`${h}-vm>x`, 5, 500]])), false, 'the exactly-once guard works under the ACL');
    await store.materialise({ host: h });
    await store.event(h, { host: h, operation: 'started' });
    assert.ok((await registry.addresses()).size >= 1);
    assert.equal(await registry.vmGone(`${h}-vm`, h), true);
  }
  assert.deepEqual((await admin.smembers(K.reported(P))).sort(), ['a1', 'b1']);
  assert.equal(Number(await admin.zscore(K.hostMsgs(P, 'b1'), 'b1-vm>x')), 5, "b1's report was materialised");
  assert.equal(await admin.xlen(K.events('a1')), 1);
});

test("one host's credentials cannot write another host's entry, report or events, nor the lock, cooldowns, history, settings or environment", async () => {
  const a1 = await as('vc-agent-a1');
  const store = new Store(a1);
  await assert.rejects(new Registry(a1).registerHost('b1', { ...hostRecord(), uri: 'qemu+ext:///system?command=/tmp/evil' }), NOPERM);
  await assert.rejects(a1.hset(K.host('b1'), 'uri', 'qemu+ext:///system?command=/tmp/evil'), NOPERM);
  await assert.rejects(a1.del(K.host('b1')), NOPERM);
  await assert.rejects(store.apply(report('b1', P + L, [['forged>x', 1e9, 1e12]])), NOPERM);
  assert.equal(await admin.sismember(K.reported(P + L), 'b1'), 0, 'the refused report did not mark b1 reported');
  assert.equal(await admin.exists(K.hostPairs(P + L, 'b1')), 0);
  await assert.rejects(a1.set(K.hostPairs(P, 'b1'), 'x'), NOPERM);
  await assert.rejects(store.event('b1', { operation: 'forged' }), NOPERM);
  await assert.rejects(a1.set(K.managerLock, 'a1', 'PX', 10_000, 'NX'), NOPERM);
  assert.equal(await new LeaderLock(a1, 10_000).tick(), false, 'an agent cannot become the leader');
  await assert.rejects(recordMigration(a1, { vm: 'v', from: 'a1', to: 'b1', outcome: 'ok', at: 0, seconds: 0 }), NOPERM);
  await assert.rejects(startCooldown(a1, 'v', 1000), NOPERM);
  await assert.rejects(a1.hset(K.settings, 'periodSeconds', 1), NOPERM);
  await assert.rejects(a1.srem(K.hosts, 'b1'), NOPERM);
  await assert.rejects(a1.unlink(K.hostPairs(P, 'b1')), NOPERM, "without --agents-trim, no deleting others' reports either");
  await assert.rejects(a1.zadd(K.hostMsgs(P, 'b1'), 1, 'forged>x'), NOPERM, "nor writing another host's readable zsets");
  // Nor the environment: a stolen agent credential must not reprice a site to draw VMs to its host.
  await assert.rejects(new Registry(a1).putEnvironment(0, { at: 0, source: 'forged', by: 'a1', file: {} }), NOPERM);
  await assert.rejects(a1.set(K.envVersion, '7'), NOPERM);
  assert.equal(await admin.exists(K.envVersion), 0);
  assert.equal(await admin.hget(K.host('b1'), 'uri'), 'qemu:///system');
});

test('with --agents-trim an agent deletes whole old periods, and still writes only its own reports', async () => {
  const c1conn = await as('vc-agent-c1');
  const c1 = new Store(c1conn);
  await new Registry(c1conn).registerHost('c1', hostRecord());
  await c1.apply(report('c1', P + L, [['c1-vm>x', 1, 1]]));
  await assert.rejects(c1.apply(report('a1', P + 2 * L, [['forged>x', 1, 1]])), NOPERM);
  await admin.sadd(K.vms, 'c1-old');
  await admin.hset(K.vm('c1-old'), { host: 'c1', state: 'stopped', since: 1, addresses: '10.99.0.1' });
  await admin.hset(K.addr, '10.99.0.1', 'c1-old');
  let forgot = 0;
  assert.equal(await c1.trim(1, Date.now(), (g) => (forgot = g.vms)), 1, 'the period before the newest one is gone');
  assert.equal(forgot, 1, 'and the VM stopped before the period kept is forgotten');
  assert.equal(await admin.hget(K.addr, '10.99.0.1'), null);
  assert.equal(await admin.exists(K.hostPairs(P, 'a1')), 0);
});

test('an agent without --agents-trim deletes its own zsets of periods out of the newest agent.zsetPeriods, and nothing else', async () => {
  const a1 = await as('vc-agent-a1');
  const store = new Store(a1, { zsetPeriods: 1, host: 'a1' }); // as the agent makes it
  await store.apply(report('a1', P + 2 * L, [['a1-vm>y', 1, 10]]));
  await admin.zadd(K.oldZsets(P + L)[0]!, 1, 'a1-vm>y'); // an older version's all-hosts zset
  const before = await admin.zrange(K.periods, '0', '-1');
  assert.ok(before.length >= 2 && (await admin.exists(K.hostMsgs(P + 2 * L, 'a1'))) === 1);
  assert.equal(await admin.exists(K.hostMsgs(P + L, 'c1')), 1, "c1's zsets, from the test before");
  await store.apply(report('a1', P + 5 * L, [['a1-vm>y', 2, 20]]));
  await store.trim(0);
  for (const p of before) {
    assert.equal(await admin.exists(K.hostMsgs(Number(p), 'a1'), K.hostBytes(Number(p), 'a1')), 0, `period ${p}: its zsets deleted`);
    assert.equal(await admin.exists(K.reported(Number(p))), 1, `period ${p}: kept`);
  }
  assert.equal(await admin.exists(K.hostMsgs(P + L, 'c1'), K.hostBytes(P + L, 'c1')), 2, "another host's zsets are its own agent's to delete");
  assert.equal(await admin.exists(...K.oldZsets(P + L)), 0, "an older version's all-hosts zsets: deleted");
  assert.equal(await admin.zscore(K.hostMsgs(P + 5 * L, 'a1'), 'a1-vm>y'), '2');
});

test("the manager's writes work with its own: lock, cooldown, history, drain, the environment; it cannot write reports or events", async () => {
  const m = await as('vc-manager');
  const lock = new LeaderLock(m, 10_000);
  assert.equal(await lock.tick(), true);
  assert.equal(await lock.tick(), true, 'renewed (a script: GET and PEXPIRE inside are checked too)');
  assert.equal(await lock.fenced(), true, 'its fence (the term, raised by INCR in the lock script) is readable');
  await saveStreak(m, lock.term, new Map([['x', 1]]));
  assert.equal((await loadStreak(m, lock.term)).get('x'), 1, 'the streak is written and read back');
  await lock.stop();
  assert.equal(await admin.exists(K.managerLock), 0, 'released');
  await recordMigration(m, { vm: 'a1-vm', from: 'a1', to: 'b1', outcome: 'ok', at: Date.now(), seconds: 2 });
  assert.ok((await startCooldown(m, 'a1-vm', 60_000)) > Date.now());
  assert.equal((await readHistory(m, 1))[0]?.vm, 'a1-vm');
  assert.deepEqual(
    (await new Registry(m).hosts()).map((h) => h.host),
    ['a1', 'b1', 'c1'],
  );
  assert.equal((await query(m, { type: 'mean', span: 1 })).status !== undefined, true);
  const env = { VIRT_COHORT_REDIS_USERNAME: 'vc-manager', VIRT_COHORT_REDIS_PASSWORD_FILE: join(dir, 'secrets', 'vc-manager.password') };
  const drain = await cli(['host', 'drain', 'a1', '--redis', server.url], env);
  assert.equal(drain.code, 0, drain.err);
  assert.equal(await admin.hget(K.host('a1'), 'draining'), '1');
  // The operator's environment writes go through the manager's user, as host drain does.
  await writeFile(join(dir, 'env.json'), JSON.stringify({ sites: { 'site-a': { price: { perVmHour: 0.05 } } }, hosts: { a1: { site: 'site-a' } } }));
  const apply = await cli(['env', 'apply', join(dir, 'env.json'), '--redis', server.url], env);
  assert.equal(apply.code, 0, apply.err);
  const set = await cli(['env', 'set', 'sites.site-a.price.perVmHour=0.02', '--redis', server.url], env);
  assert.equal(set.code, 0, set.err);
  assert.match(set.out, /sites.site-a.price.perVmHour: 0.05 -> 0.02/);
  assert.equal(await admin.get(K.envVersion), '2');
  await assert.rejects(new Store(m).apply(report('a1', P + 3 * L, [['forged>x', 1, 1]])), NOPERM);
  await assert.rejects(new Store(m).event('a1', { operation: 'forged' }), NOPERM);
  await assert.rejects(m.set(K.host('a1'), 'x'), NOPERM);
});

test("the commands' user reads everything and writes nothing", async () => {
  const r = await as('vc-reader');
  assert.equal((await new Registry(r).hosts()).length, 3);
  assert.equal((await readHistory(r, 5)).length, 1);
  const env = { VIRT_COHORT_REDIS_USERNAME: 'vc-reader', VIRT_COHORT_REDIS_PASSWORD_FILE: join(dir, 'secrets', 'vc-reader.password') };
  const stats = await cli(['history', '--redis', server.url, '--json'], env);
  assert.equal(stats.code, 0, stats.err);
  assert.equal((JSON.parse(stats.out) as unknown[]).length, 1);
  const show = await cli(['env', 'show', '--json', '--redis', server.url], env);
  assert.equal(show.code, 0, show.err);
  assert.equal((JSON.parse(show.out) as { sites: Record<string, { price: { perVmHour: number } }> }).sites['site-a']!.price.perVmHour, 0.02);
  const envHistory = await cli(['env', 'history', '--redis', server.url], env);
  assert.equal(envHistory.code, 0, envHistory.err);
  const envSet = await cli(['env', 'set', 'sites.site-a.price.perVmHour=9', '--redis', server.url], env);
  assert.notEqual(envSet.code, 0);
  assert.match(envSet.err, /Redis refused it \(NOPERM .*env apply\|set need vc-manager/);
  assert.equal(await admin.get(K.envVersion), '2', 'the reader wrote no version');
  const drain = await cli(['host', 'undrain', 'a1', '--redis', server.url], env);
  assert.notEqual(drain.code, 0);
  assert.match(drain.err, /^virt-cohort: Redis refused it \(NOPERM .*\): the Redis user in use .* may not do this; .*need vc-manager/);
  for (const write of [
    () => r.set(K.managerLock, 'x'),
    () => r.hset(K.host('a1'), 'draining', '0'),
    () => recordMigration(r, { vm: 'v', from: 'a', to: 'b', outcome: 'ok', at: 0, seconds: 0 }),
    () => new Registry(r).registerHost('r', hostRecord()),
    () => r.eval('return 1', 0),
  ]) {
    await assert.rejects(write(), NOPERM);
  }
});

test('host names that are not agent.host names (glob characters, spaces) are refused before any rule is written', async () => {
  for (const h of ['a*', 'b?', '[c]', 'd e', 'x:y']) {
    const r = await cli(['acl', '--hosts', `a1,${h}`, '--secrets', join(dir, 'never')]);
    assert.equal(r.code, 2, h);
    assert.match(r.err, /is not a host name as agent.host takes it/);
    assert.equal(r.out, '');
  }
});
