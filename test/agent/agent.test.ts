// The agent without a lab: a real Redis (test/helpers/redis.ts), its real spool,
// hook socket and periods; a fake sensor (no kernel) and a fake libvirt.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { Agent, type Clock, type DomainSource } from '../../src/agent/agent.js';
import { MAX_PEERS_PER_VM } from '../../src/agent/pairs.js';
import { loadConfig } from '../../src/agent/config.js';
import { Registry } from '../../src/collector/registry.js';
import { hostPart } from '../../src/collector/store.js';
import type { DomainSnapshot, NodeSnapshot } from '../../src/libvirt/client.js';
import { waitFor } from '../../src/util/exec.js';
import { TestRedis } from '../helpers/redis.js';
import { FakeSensor } from '../helpers/sensor.js';

let server: TestRedis;
let redis: Redis;
const dirs: string[] = [];
const agents: Agent[] = [];

before(async () => {
  server = await TestRedis.start();
  redis = new Redis(server.url);
});
after(async () => {
  for (const a of agents) await a.stop().catch(() => undefined);
  redis.disconnect();
  await server.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** libvirt as the agent sees it: what it lists, and whether it answers at all. */
class FakeLibvirt implements DomainSource {
  list: DomainSnapshot[] = [];
  down = false;
  async domains(): Promise<DomainSnapshot[]> {
    if (this.down) throw new Error('libvirtd is not running');
    return this.list;
  }
  async node(): Promise<NodeSnapshot> {
    return { hostname: 'fake', cpus: 8, memoryKiB: 8 << 20, mhz: 2000 };
  }
  async close(): Promise<void> {}
}

const uuid = (n: number) => `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
const mac = (n: number) => `52:54:00:00:00:${n.toString(16).padStart(2, '0')}`;

function domain(name: string, n: number, tap: string): DomainSnapshot {
  return { name, uuid: uuid(n), state: 'running', memoryKiB: 1 << 20, vcpus: 1, interfaces: [{ mac: mac(n), tap, addresses: [] }], pinned: false, optOut: false };
}

/** An agent for host `host` with its own state, a fake sensor and `libvirt`; long periods, so no period closes on its own during a test. */
async function agentFor(host: string, libvirt: FakeLibvirt, clock?: Clock, stateDir?: string): Promise<{ agent: Agent; sensor: FakeSensor; socket: string; stateDir: string }> {
  if (!stateDir) {
    stateDir = await mkdtemp(join(tmpdir(), 'vc-agent-'));
    dirs.push(stateDir);
  }
  const socket = join(stateDir, 'agent.sock');
  const cfg = loadConfig(undefined, { host, site: 's1', redis: server.url, stateDir, socket, pinRoot: join(stateDir, 'pins'), periodSeconds: 3600, reconcileSeconds: 3600 });
  const sensor = new FakeSensor();
  const agent = await Agent.start(
    cfg,
    async () => {
      if (libvirt.down) throw new Error('cannot connect: libvirtd is not running');
      return libvirt;
    },
    sensor,
    clock,
  );
  agents.push(agent);
  return { agent, sensor, socket, stateDir };
}

/** A period an hour or more ago: its end, as the agent's clock would close it. */
const boundary = (hoursAgo: number) => (Math.floor(Date.now() / 3_600_000) - hoursAgo) * 3_600_000;
const periodOf = (end: number) => end / 1000 - 3600;

function hook(socket: string, event: object): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = createConnection(socket, () => c.end(`${JSON.stringify({ v: 1, subOperation: 'begin', extra: '-', at: Date.now(), ...event })}\n`));
    c.on('close', () => resolve());
    c.on('error', reject);
  });
}

const attachedTaps = async (s: FakeSensor) => (await s.attached()).map((a) => a.tap);

test("a period's counts reach Redis exactly once: sent at once, spooled through an outage, and not again when re-sent", async () => {
  const libvirt = new FakeLibvirt();
  libvirt.list = [domain('vm1', 1, 'vnet1')];
  const { agent, sensor } = await agentFor('h1', libvirt);
  await agent.requestReconcile();
  assert.deepEqual(await attachedTaps(sensor), ['vnet1']);
  assert.equal((await new Registry(redis).vms()).find((v) => v.name === 'vm1')?.host, 'h1', 'the directory has the VM');

  sensor.count('vnet1', 'tx', '10.0.0.9', 10, 1000);
  sensor.count('vnet1', 'rx', '10.0.0.9', 4, 400);
  const [a] = await agent.closePeriod(boundary(3));
  assert.deepEqual(a!.pairs.sort(), [
    ['10.0.0.9>vm1', 4, 400],
    ['vm1>10.0.0.9', 10, 1000],
  ]);
  const want = new Map([
    ['vm1>10.0.0.9', [10, 1000]],
    ['10.0.0.9>vm1', [4, 400]],
  ]);
  assert.deepEqual(await hostPart(redis, periodOf(boundary(3)), 'h1'), want);

  // Redis goes away: the next period waits in the spool, and is sent once Redis is back.
  await server.stop();
  await waitFor('the agent to see Redis gone', async () => (agent.redis.status !== 'ready' ? true : undefined), 10_000, 50);
  sensor.count('vnet1', 'tx', '10.0.0.9', 7, 700);
  const [b] = await agent.closePeriod(boundary(2));
  assert.equal(await agent.spool.size(), 1);
  await server.launch();
  await waitFor('the spooled report in Redis', async () => ((await agent.spool.size()) === 0 ? true : undefined), 30_000, 100);
  assert.deepEqual(await hostPart(redis, periodOf(boundary(2)), 'h1'), new Map([['vm1>10.0.0.9', [7, 700]]]));

  // A report sent again (a retry after a lost answer, ioredis replaying) adds nothing.
  await agent.spool.put(a!);
  await agent.spool.put(b!);
  await agent.flush();
  assert.equal(await agent.spool.size(), 0);
  assert.deepEqual(await hostPart(redis, periodOf(boundary(3)), 'h1'), want);
  assert.deepEqual(await hostPart(redis, periodOf(boundary(2)), 'h1'), new Map([['vm1>10.0.0.9', [7, 700]]]));
  assert.deepEqual(await redis.smembers(K.reported(periodOf(boundary(3)))), ['h1']);
});

test('a tap a started hook announces is counted before libvirt lists it', async () => {
  const libvirt = new FakeLibvirt(); // lists nothing yet, as while an incoming VM is set up
  const { agent, sensor, socket } = await agentFor('h2', libvirt);
  await agent.requestReconcile();
  assert.deepEqual(await attachedTaps(sensor), []);

  await hook(socket, { domain: 'vm2', operation: 'started', uuid: uuid(2), interfaces: [{ mac: mac(2), tap: 'vnet2' }] });
  await waitFor('the announced tap attached', async () => ((await attachedTaps(sensor)).includes('vnet2') ? true : undefined), 10_000, 20);
  sensor.count('vnet2', 'tx', '10.0.0.8', 3, 300);
  await agent.closePeriod(boundary(3));
  assert.deepEqual(await hostPart(redis, periodOf(boundary(3)), 'h2'), new Map([['vm2>10.0.0.8', [3, 300]]]));

  // libvirt then lists it: the same tap goes on being counted, attached once.
  libvirt.list = [domain('vm2', 2, 'vnet2')];
  await agent.requestReconcile();
  assert.deepEqual(await attachedTaps(sensor), ['vnet2']);
  assert.ok(sensor.reconciles.every((want) => want.filter((t) => t === 'vnet2').length <= 1));
  assert.equal((await new Registry(redis).vms()).find((v) => v.name === 'vm2')?.host, 'h2');
});

test('libvirt failing does not stop counting, nor detach a tap', async () => {
  const libvirt = new FakeLibvirt();
  libvirt.list = [domain('vm3', 3, 'vnet3')];
  const { agent, sensor, socket } = await agentFor('h3', libvirt);
  await agent.requestReconcile();
  assert.deepEqual(await attachedTaps(sensor), ['vnet3']);

  libvirt.down = true;
  await agent.requestReconcile();
  assert.deepEqual(await attachedTaps(sensor), ['vnet3'], 'what was counted is still counted');
  // A VM that starts meanwhile is counted from its hook alone, with the others.
  await hook(socket, { domain: 'vm4', operation: 'started', uuid: uuid(4), interfaces: [{ mac: mac(4), tap: 'vnet4' }] });
  await waitFor('the announced tap attached', async () => ((await attachedTaps(sensor)).includes('vnet4') ? true : undefined), 10_000, 20);
  assert.deepEqual(await attachedTaps(sensor), ['vnet3', 'vnet4']);

  sensor.count('vnet3', 'tx', '10.0.0.7', 5, 500);
  sensor.count('vnet4', 'tx', '10.0.0.7', 6, 600);
  await agent.closePeriod(boundary(3));
  assert.deepEqual(
    await hostPart(redis, periodOf(boundary(3)), 'h3'),
    new Map([
      ['vm3>10.0.0.7', [5, 500]],
      ['vm4>10.0.0.7', [6, 600]],
    ]),
  );
});

/** A wall clock the test steps, and a monotonic one that only moves forward. */
class TestClock implements Clock {
  constructor(
    public wall: number,
    public monotonic = 0,
  ) {}
  now(): number {
    return this.wall;
  }
  mono(): number {
    return this.monotonic;
  }
  /** `ms` really pass; the wall clock moves by the same, plus a step. */
  pass(ms: number, step = 0): void {
    this.monotonic += ms;
    this.wall += ms + step;
  }
}

test('periods follow the clock: a read held past boundaries is split by time, a clock stepped back never reports a period twice, one stepped forward reports the periods it jumped over empty; nothing lost or doubled', async () => {
  const libvirt = new FakeLibvirt();
  libvirt.list = [domain('vm5', 5, 'vnet5')];
  const H = 3_600_000;
  const clock = new TestClock(boundary(6) + 10);
  const { agent, sensor, stateDir } = await agentFor('h5', libvirt, clock);
  await agent.requestReconcile();
  const count = (n: number) => sensor.count('vnet5', 'tx', '10.0.0.5', n, n * 100);
  const sent = async (hoursAgo: number) => (await hostPart(redis, periodOf(boundary(hoursAgo)), 'h5')).get('vm5>10.0.0.5')?.[0] ?? 0;

  // An hour, read just after its boundary: one period.
  count(100);
  clock.pass(H);
  assert.deepEqual(
    (await agent.closePeriod(boundary(5))).map((r) => r.period),
    [periodOf(boundary(5))],
  );
  assert.equal(await sent(5), 100);

  // The read for boundary(4) is held up for an hour (a slow flush, a stalled loop): two periods, half each.
  count(200);
  clock.pass(2 * H);
  const held = await agent.closePeriod(boundary(4), boundary(4) + 10);
  assert.deepEqual(
    held.map((r) => [r.period, r.pairs[0]?.[1]]),
    [
      [periodOf(boundary(4)), 100],
      [periodOf(boundary(3)), 100],
    ],
  );

  // The clock is stepped back an hour: the next timer closes boundary(4) again. Nothing is reported twice;
  // the counts wait for the next period that was not reported yet.
  count(50);
  clock.pass(H, -H);
  assert.deepEqual(await agent.closePeriod(boundary(4)), []);
  assert.equal(await sent(4), 100, 'the period already reported is left as it was');
  count(30);
  clock.pass(H);
  assert.deepEqual(await agent.closePeriod(boundary(3)), []);

  // A restart keeps what was closed and what was carried.
  await agent.stop();
  const again = await agentFor('h5', libvirt, clock, stateDir);
  await again.agent.requestReconcile();
  again.sensor.count('vnet5', 'tx', '10.0.0.5', 20, 2000);
  clock.pass(H);
  assert.deepEqual(
    (await again.agent.closePeriod(boundary(2))).map((r) => r.pairs[0]?.[1]),
    [100],
    '20 of this hour and the 80 carried',
  );

  // Stepped forward an hour: the timer set for boundary(1) fires when the wall clock says boundary(0).
  again.sensor.count('vnet5', 'tx', '10.0.0.5', 10, 1000);
  clock.pass(H, H);
  assert.deepEqual(
    (await again.agent.closePeriod(boundary(1), clock.now())).map((r) => [r.period, r.pairs[0]?.[1]]),
    [[periodOf(boundary(1)), 10]],
  );
  // The next timer is set on the stepped clock: the periods jumped over are reported empty, marked, so that they are complete.
  again.sensor.count('vnet5', 'tx', '10.0.0.5', 5, 500);
  clock.pass(H);
  const after = await again.agent.closePeriod(boundary(-2), clock.now());
  assert.deepEqual(
    after.map((r) => [r.period, r.pairs.length, r.clockStep ?? false]),
    [
      [periodOf(boundary(0)), 0, true],
      [periodOf(boundary(-1)), 0, true],
      [periodOf(boundary(-2)), 1, false],
    ],
  );
  assert.equal(await sent(0), 0, 'the hours the clock skipped are empty, not a double');
  assert.deepEqual(await redis.smembers(K.reported(periodOf(boundary(0)))), ['h5'], 'and reported: the period is complete');
  const total = (await Promise.all([5, 4, 3, 2, 1, 0, -1, -2].map(sent))).reduce((a, b) => a + b, 0);
  assert.equal(total, 100 + 200 + 50 + 30 + 20 + 10 + 5, 'every packet counted once');
});

test('state files that are garbage are set aside: the agent starts, and rebuilds its VM ids from libvirt', async () => {
  const stateDir = await mkdtemp(join(tmpdir(), 'vc-agent-'));
  dirs.push(stateDir);
  await writeFile(join(stateDir, 'vm-ids.json'), '{"12": {"name": "vm');
  await writeFile(join(stateDir, 'periods.json'), 'garbage');
  const libvirt = new FakeLibvirt();
  libvirt.list = [domain('vm6', 6, 'vnet6')];
  const { agent, sensor } = await agentFor('h6', libvirt, undefined, stateDir);
  await agent.requestReconcile();
  sensor.count('vnet6', 'tx', '10.0.0.6', 4, 400);
  const [r] = await agent.closePeriod(boundary(1));
  assert.deepEqual(r!.pairs, [['vm6>10.0.0.6', 4, 400]]);
  assert.ok(existsSync(join(stateDir, 'vm-ids.json.bad')) && existsSync(join(stateDir, 'periods.json.bad')), 'the garbage is kept aside for a person to look at');
  assert.doesNotThrow(() => JSON.parse(readFileSync(join(stateDir, 'periods.json'), 'utf8')));
});

test('100,000 random peers in a period: the report, Redis and the agent stay within the stated bounds, and every packet is counted (folded, not dropped)', async () => {
  const libvirt = new FakeLibvirt();
  libvirt.list = [domain('scan1', 41, 'vnet41')];
  const { agent, sensor } = await agentFor('h-scan', libvirt);
  await agent.requestReconcile();
  const PEERS = 100_000;
  let packets = 0;
  let bytes = 0;
  for (let i = 0; i < PEERS; i++) {
    const peer = `10.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    sensor.count('vnet41', i % 2 ? 'tx' : 'rx', peer, 1, 64 + (i % 1500));
    packets += 1;
    bytes += 64 + (i % 1500);
  }
  const memBefore = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]);
  const heapBefore = process.memoryUsage().heapUsed;
  const [r] = await agent.closePeriod(boundary(5));
  assert.equal(r!.folded, PEERS - 2 * MAX_PEERS_PER_VM, 'the tail beyond the cap, per direction, is folded and said');
  assert.equal(r!.pairs.length, 2 * MAX_PEERS_PER_VM + 2, 'the report holds at most the cap per VM and direction, plus the two * peers');
  const part = await hostPart(redis, periodOf(boundary(5)), 'h-scan');
  const sum = [...part.values()].reduce((s, c) => [s[0] + c[0], s[1] + c[1]], [0, 0]);
  assert.deepEqual(sum, [packets, bytes], 'every packet and byte reaches Redis');
  assert.ok(part.get('scan1>*')![0] > 0 && part.get('*>scan1')![0] > 0);
  const meta = JSON.parse((await redis.hget(K.meta(periodOf(boundary(5))), 'h-scan'))!) as { folded: number };
  assert.equal(meta.folded, PEERS - 2 * MAX_PEERS_PER_VM, 'the meta says how many pairs were folded');
  const grew = Number(/used_memory:(\d+)/.exec(await redis.info('memory'))![1]) - memBefore;
  // 2,002 pairs: the packed report (20 B a pair), two zsets and the dictionary (about 70 B a pair each).
  assert.ok(grew < 2 * 2 ** 20, `Redis grew by ${(grew / 2 ** 20).toFixed(2)} MiB for the period (bound: 2 MiB)`);
  const heap = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
  assert.ok(heap < 64, `the agent's heap grew by ${heap.toFixed(1)} MiB reading 100,000 flows (bound: 64 MiB)`);
});
