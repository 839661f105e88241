import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Registry, type VmRecord } from '../../src/collector/registry.js';
import { startCooldown } from '../../src/manager/history.js';
import { describeHold, whyHeld, whyWait, type Checks } from '../../src/manager/safety.js';
import { packageRoot } from '../../src/paths.js';
import { TestRedis } from '../helpers/redis.js';
import { hostRecord } from './fixtures.js';

const MAIN = join(packageRoot, 'dist/src/cli/main.js');
const MiB = 1024; // KiB
let server: TestRedis;
let redis: Redis;
let registry: Registry;

const { VIRT_COHORT_REDIS: _ignored, ...childEnv } = process.env;

function migrate(...args: string[]): Promise<{ code: number; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, 'migrate', ...args, '--redis', server.url], { timeout: 20_000, env: childEnv }, (e, _out, err) => {
      resolve({ code: e ? Number((e as { code?: number }).code ?? 1) : 0, err });
    });
  });
}

const vm = (host: string, extra: Partial<VmRecord> = {}): VmRecord => ({ uuid: '', host, site: 'site-a', state: 'running', mac: '', addresses: [], memoryKiB: 512 * MiB, vcpus: 1, ...extra });

// Hosts a (room for 1 GiB) and b (256 MiB free), c draining; VMs on a: free, pinned, opted out, stopped, cooling down.
before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
  registry = new Registry(redis);
  await registry.registerHost('a', { ...hostRecord(), freeMemoryKiB: 1024 * MiB });
  await registry.registerHost('b', { ...hostRecord(), freeMemoryKiB: 256 * MiB });
  await registry.registerHost('c', hostRecord());
  await registry.setDraining('c', true);
  await registry.putVm('free', vm('a'));
  await registry.putVm('pinned', vm('a', { pinned: true }));
  await registry.putVm('optout', vm('a', { pinned: true, optOut: true }));
  await registry.putVm('stopped', vm('a', { state: 'stopped' }));
  await registry.putVm('cool', vm('a', { memoryKiB: 128 * MiB }));
  await startCooldown(redis, 'cool', 3_600_000);
});
after(async () => {
  redis.disconnect();
  await server.close();
});

const MANUAL: Checks = { room: true, draining: false, cooldown: true };
const ROUND = (seen: number): Checks => ({ room: false, draining: true, cooldown: true, confirm: { rounds: 2, seen } });

test('whyHeld: each reason, the first found in a fixed order', async () => {
  const facts = { hosts: await registry.hosts(), vms: await registry.vms() };
  const held = async (v: string, to: string, c: Checks) => (await whyHeld(redis, { vm: v, to }, facts, c))?.kind;
  assert.equal(await held('nosuch', 'b', MANUAL), 'unknown-vm');
  assert.equal(await held('free', 'z', MANUAL), 'unknown-host');
  assert.equal(await held('pinned', 'z', MANUAL), 'unknown-host', 'the host is known first');
  assert.equal(await held('pinned', 'b', MANUAL), 'pinned');
  assert.equal(await held('stopped', 'b', MANUAL), 'not-running');
  assert.equal(await held('free', 'a', MANUAL), 'already-there');
  assert.equal(await held('free', 'b', MANUAL), 'no-room');
  assert.equal(await held('free', 'c', MANUAL), undefined, 'a manual move may go onto a draining host');
  assert.equal(await held('cool', 'b', MANUAL), 'cooldown');
  assert.equal(await held('cool', 'b', { ...MANUAL, cooldown: false }), undefined, 'forced');
  // The manager's rounds: no room check (the plan orders its moves), draining, cooldown, then hysteresis.
  assert.equal(await held('free', 'b', ROUND(2)), undefined);
  assert.equal(await held('free', 'c', ROUND(2)), 'draining');
  assert.equal(await held('cool', 'b', ROUND(2)), 'cooldown');
  assert.equal(await held('free', 'b', ROUND(1)), 'unconfirmed');
});

test("describeHold words a round's held moves as the manager always has", async () => {
  const facts = { hosts: await registry.hosts(), vms: await registry.vms() };
  assert.equal(describeHold((await whyHeld(redis, { vm: 'free', to: 'c' }, facts, ROUND(2)))!), 'c is draining');
  assert.match(describeHold((await whyHeld(redis, { vm: 'cool', to: 'b' }, facts, ROUND(2)))!), /^in cooldown until \d{4}-\d\d-\d\dT/);
  assert.equal(describeHold((await whyHeld(redis, { vm: 'free', to: 'b' }, facts, ROUND(1)))!), 'proposed 1 round(s) in a row; moves after 2');
});

test('whyWait: the cluster limit, a busy host, the per-host outbound limit', () => {
  const limits = { maxPerHost: 1, maxConcurrent: 2 };
  const ab = { from: 'a', to: 'b' };
  assert.equal(whyWait(ab, [], [], limits), undefined);
  assert.equal(
    whyWait(
      ab,
      [
        { from: 'c', to: 'd' },
        { from: 'e', to: 'f' },
      ],
      [],
      limits,
    ),
    'cluster-full',
  );
  assert.equal(whyWait(ab, [], [{ from: 'x', to: 'b' }], limits), 'host-busy', 'a queued earlier move into its destination');
  assert.equal(whyWait({ from: 'a', to: 'x' }, [{ from: 'a', to: 'y' }], [], limits), 'source-full');
  assert.equal(whyWait({ from: 'a', to: 'x' }, [{ from: 'a', to: 'y' }], [], { ...limits, maxPerHost: 2 }), undefined);
});

test('virt-cohort migrate refuses, exit 2, with the fix', async () => {
  const cases: [string[], RegExp][] = [
    [['nosuch', 'b'], /unknown VM 'nosuch': not in the VM directory \(virt-cohort stats --vms lists them\)/],
    [['free', 'z'], /unknown host 'z': not in the host registry \(known: a, b, c\)/],
    [['optout', 'b'], /optout is pinned by its libvirt domain metadata \(virt-cohort policy count="no"\): remove that to move it/],
    [['pinned', 'b'], /pinned is pinned by its libvirt domain metadata \(virt-cohort policy move="never"\)/],
    [['stopped', 'b'], /stopped is stopped, not running: nothing to migrate/],
    [['free', 'a'], /free already runs on a/],
    [['free', 'b'], /b has 256 MiB free, free needs 512 MiB: choose another host/],
    [['cool', 'b'], /cool is in its cooldown until .* \(it moved recently\): wait, or pass --force/],
  ];
  for (const [args, re] of cases) {
    const r = await migrate(...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, re, args.join(' '));
  }
});
