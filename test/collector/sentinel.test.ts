// Redis Sentinel with real processes (test/helpers/sentinel.ts: 1 primary, 1
// replica, 3 sentinels on loopback): the primary killed while agents publish
// and managers hold the lock; the lock across failovers; what the sentinels
// say when they are misconfigured, down or disagree.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Redis } from 'ioredis';
import { pino, type Logger } from 'pino';
import { Agent, type DomainSource } from '../../src/agent/agent.js';
import { loadConfig } from '../../src/agent/config.js';
import { K } from '../../src/collector/keys.js';
import { hostPart } from '../../src/collector/store.js';
import { connectChecked, connectDaemon, DEFAULT_REDIS_URL, RedisConnectError } from '../../src/config/redis.js';
import { inspectSentinels, sentinelProblems } from '../../src/config/sentinel.js';
import type { DoctorContext } from '../../src/doctor/checks.js';
import { checkRedis } from '../../src/doctor/redis.js';
import { renderDoctor } from '../../src/doctor/doctor.js';
import type { DomainSnapshot, NodeSnapshot } from '../../src/libvirt/client.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { sleep, waitFor } from '../../src/util/exec.js';
import { TestSentinels } from '../helpers/sentinel.js';
import { FakeSensor } from '../helpers/sensor.js';

let set: TestSentinels;
const dirs: string[] = [];
const agents: Agent[] = [];
const conns: Redis[] = [];
const locks: LeaderLock[] = [];

before(async () => {
  set = await TestSentinels.start();
});
after(async () => {
  // Bounded: a daemon's connection waits for ever for a Redis that a failed test left unreachable.
  const bounded = (p: Promise<unknown>) => Promise.race([p.catch(() => undefined), sleep(5000)]);
  for (const l of locks) await bounded(l.stop());
  for (const a of agents) await bounded(a.stop());
  for (const c of conns) c.disconnect();
  await set?.close();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** What a daemon logs, kept for the test to read. */
function capture(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: pino({ level: 'warn' }, sink) as unknown as Logger, lines };
}

/** A daemon's connection through the sentinels (as the manager's and the agent's). */
function daemon(auth = set.auth, log = capture().log): Redis {
  const r = connectDaemon(DEFAULT_REDIS_URL, auth, log);
  conns.push(r);
  return r;
}

class FakeLibvirt implements DomainSource {
  constructor(readonly list: DomainSnapshot[]) {}
  async domains(): Promise<DomainSnapshot[]> {
    return this.list;
  }
  async node(): Promise<NodeSnapshot> {
    return { hostname: 'fake', cpus: 8, memoryKiB: 8 << 20, mhz: 2000 };
  }
  async close(): Promise<void> {}
}

const uuid = (n: number) => `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
const domain = (name: string, n: number, tap: string): DomainSnapshot => ({
  name,
  uuid: uuid(n),
  state: 'running',
  memoryKiB: 1 << 20,
  vcpus: 1,
  interfaces: [{ mac: `52:54:00:00:01:${n.toString(16).padStart(2, '0')}`, tap, addresses: [] }],
  pinned: false,
  optOut: false,
});

/** An agent whose redis section lists the sentinels (no URL), with a fake sensor and libvirt; hour-long periods closed by the test. */
async function agentFor(host: string, n: number): Promise<{ agent: Agent; sensor: FakeSensor }> {
  const stateDir = await mkdtemp(join(tmpdir(), 'vc-sentinel-agent-'));
  dirs.push(stateDir);
  const base = loadConfig(false, { host, site: 's1', stateDir, socket: join(stateDir, 'agent.sock'), pinRoot: join(stateDir, 'pins'), periodSeconds: 3600, reconcileSeconds: 3600, zsetPeriods: 1000 }); // the check below reads every period's zsets
  const cfg = { ...base, redisAuth: set.auth };
  const sensor = new FakeSensor();
  const libvirt = new FakeLibvirt([domain(`vm-${host}`, n, `vnet${n}`)]);
  const agent = await Agent.start(cfg, async () => libvirt, sensor);
  agents.push(agent);
  await agent.requestReconcile();
  return { agent, sensor };
}

/** The end of the period `hoursAgo` hours back, and that period's start (s). */
const boundary = (hoursAgo: number) => (Math.floor(Date.now() / 3_600_000) - hoursAgo) * 3_600_000;
const periodOf = (end: number) => end / 1000 - 3600;

/** Watches a set of locks every 5 ms: never two leaders, the terms each took, and the longest time without a leader after `from`. */
function watchLeaders(ls: LeaderLock[]) {
  const w = { both: 0, takes: [] as { who: number; term: number }[], gapFrom: 0, longestGap: 0, noLeaderSince: undefined as number | undefined, stop: () => undefined as void };
  const timer = setInterval(() => {
    const leading = ls.map((l, i) => (l.isLeader ? i : -1)).filter((i) => i >= 0);
    if (leading.length > 1) w.both++;
    const now = performance.now();
    if (leading.length === 1) {
      const who = leading[0]!;
      const last = w.takes.at(-1);
      if (!last || last.who !== who || last.term !== ls[who]!.term) w.takes.push({ who, term: ls[who]!.term });
      if (w.noLeaderSince !== undefined && w.gapFrom) w.longestGap = Math.max(w.longestGap, now - Math.max(w.noLeaderSince, w.gapFrom));
      w.noLeaderSince = undefined;
    } else w.noLeaderSince ??= now;
  }, 5);
  w.stop = () => clearInterval(timer);
  return w;
}

test('the primary killed mid-period while 3 agents publish and 2 managers contend for the lock: every period of every host is there exactly once, one leader at most', async () => {
  const hosts = ['h1', 'h2', 'h3'];
  const fleet = await Promise.all(hosts.map((h, i) => agentFor(h, i + 1)));
  const managers = [new LeaderLock(daemon(), 3000), new LeaderLock(daemon(), 3000)];
  locks.push(...managers);
  for (const m of managers) m.start();
  await waitFor('a leader', async () => (managers.some((m) => m.isLeader) ? true : undefined), 10_000, 20);
  const watch = watchLeaders(managers);

  const PERIODS = 10;
  const KILL_AT = 4;
  const expected = (host: number, k: number) => 1000 * (host + 1) + k;
  let killedAt = 0;
  let old = 0;
  let failoverMs = 0;
  let restarting: Promise<void> | undefined;
  for (let k = 0; k < PERIODS; k++) {
    const end = boundary(PERIODS + 1 - k);
    fleet.forEach(({ sensor }, h) => sensor.count(`vnet${h + 1}`, 'tx', '10.9.9.9', expected(h, k), expected(h, k) * 100));
    const closing = Promise.all(fleet.map(({ agent }) => agent.closePeriod(end)));
    if (k === KILL_AT) {
      // Mid-period: the reports are being written when the primary dies.
      await sleep(3);
      old = await set.primaryPort();
      killedAt = performance.now();
      watch.gapFrom = killedAt;
      await set.kill(old);
      await set.failedOver(old);
      failoverMs = performance.now() - killedAt;
      // The old primary comes back: the sentinels make it a replica, and the agents' WAITs have one again.
      restarting = set.restart(old);
    }
    await closing;
  }
  await restarting;
  // Whatever waited in the spools goes out once the new primary is reached.
  await waitFor(
    'every spool empty',
    async () => {
      await Promise.all(fleet.map(({ agent }) => agent.flush()));
      const left = await Promise.all(fleet.map(({ agent }) => agent.spool.size()));
      return left.every((n) => n === 0) ? true : undefined;
    },
    60_000,
    200,
  );
  await waitFor('a leader after the failover', async () => (managers.some((m) => m.isLeader) ? true : undefined), 30_000, 20);
  watch.stop();

  try {
    const check = await connectChecked(DEFAULT_REDIS_URL, set.auth, 5000);
    conns.push(check);
    let lost = 0;
    let doubled = 0;
    for (let k = 0; k < PERIODS; k++) {
      const period = periodOf(boundary(PERIODS + 1 - k));
      const reported = (await check.smembers(K.reported(period))).sort();
      for (const [h, host] of hosts.entries()) {
        const want = expected(h, k);
        const member = `vm-${host}>10.9.9.9`;
        const part = (await hostPart(check, period, host)).get(member)?.[0] ?? 0;
        const summed = Number((await check.zscore(K.hostMsgs(period, host), member)) ?? 0);
        if (!reported.includes(host) || part === 0 || summed === 0) lost++;
        else if (summed > want || part > want) doubled++;
        else assert.equal(summed, want, `period ${k} of ${host}`);
      }
    }
    const terms = watch.takes.map((t) => t.term);
    const summary = `primary killed mid-period: failover (sentinels name the new primary) ${(failoverMs / 1000).toFixed(1)} s; longest time without a leader ${(watch.longestGap / 1000).toFixed(1)} s; periods lost ${lost}, doubled ${doubled} (${PERIODS} periods x ${hosts.length} hosts); terms ${terms.join(' -> ')}`;
    process.stdout.write(`# ${summary}\n`);
    assert.equal(lost, 0, summary);
    assert.equal(doubled, 0, summary);
    assert.equal(watch.both, 0, 'never two leaders at once');
    for (let i = 1; i < watch.takes.length; i++) {
      const [a, b] = [watch.takes[i - 1]!, watch.takes[i]!];
      assert.ok(b.term > a.term || (b.who === a.who && b.term === a.term), `terms only grow: ${JSON.stringify(watch.takes)}`);
    }
    // The sentinels may move the primary once more while the restarted one catches up (seen under a loaded
    // CI run): the client reconnects, and a command sent meanwhile fails; keep asking until the replica is back.
    await waitFor('the old primary a replica again', async () => (/connected_slaves:1/.test(await check.info('replication').catch(() => '')) ? true : undefined), 30_000, 200);
  } finally {
    // Stopped even when an assertion failed: a lock left renewing would hold the next test's leadership.
    for (const m of managers) await m.stop();
  }
});

test('the lock across a failover: a term only counts once a replica has it, terms strictly increase, a deposed leader fails its fence', async () => {
  // Start from a settled set (the test before failed the primary over): the primary the sentinels name has its replica.
  await waitFor(
    'a settled primary with its replica',
    async () => (/connected_slaves:1/.test(await set.cli(await set.primaryPort(), 'info', 'replication').catch(() => '')) ? true : undefined),
    30_000,
    200,
  );
  const a = new LeaderLock(daemon(), 2000);
  const b = new LeaderLock(daemon(), 2000);
  locks.push(a, b);
  for (let i = 0; i < 50 && !(await a.tick()); i++) await sleep(100);
  assert.equal(a.isLeader, true);
  assert.equal(await b.tick(), false);
  const termA = a.term;

  // a stops renewing (stalled) while the primary dies; b takes over on the new primary.
  const old = await set.primaryPort();
  const t0 = performance.now();
  await set.kill(old);
  let bLeads = false;
  while (!bLeads && performance.now() - t0 < 30_000) {
    bLeads = await b.tick();
    assert.ok(!(a.isLeader && b.isLeader), 'never both');
    if (!bLeads) await sleep(200);
  }
  const took = performance.now() - t0;
  process.stdout.write(`# lock: a standby took over ${(took / 1000).toFixed(1)} s after the primary died (TTL 2 s)\n`);
  assert.ok(bLeads, 'b leads after the failover');
  assert.ok(b.term > termA, `b's term ${b.term} is above a's ${termA}`);
  assert.equal(await a.fenced(), false, "the deposed leader's fence fails on the new primary");
  assert.equal(await b.fenced(), true);

  // The old primary back as a replica; then that replica frozen: a new take is written on the primary,
  // but no replica acknowledges it, so it does not lead on a term a failover could lose.
  await set.restart(old);
  const primary = await set.primaryPort();
  await waitFor('a replica again', async () => (/connected_slaves:1/.test(await set.cli(primary, 'info', 'replication')) ? true : undefined), 30_000, 200);
  await b.stop();
  const c = new LeaderLock(daemon(), 2000);
  locks.push(c);
  await set.pause(old);
  try {
    assert.equal(await c.tick(), false, 'unreplicated: not the leader');
    assert.equal(c.isLeader, false);
    assert.equal(await set.cli(primary, 'get', K.managerLock), c.id, 'the lock is written on the primary, not trusted yet');
  } finally {
    await set.resume(old);
  }
  let cLeads = false;
  for (let i = 0; i < 50 && !cLeads; i++) {
    cLeads = await c.tick();
    if (!cLeads) await sleep(100);
  }
  assert.ok(cLeads, 'replicated: the leader');
  assert.ok(c.term > b.term, `c's term ${c.term} is above b's ${b.term}`);
  await c.stop();
  await a.stop();
});

test('bad input: a wrong primary name, sentinels that disagree, no quorum, none answering: clear errors with the fix; a daemon retries and connects once they are back', async () => {
  await set.settled(); // the old primary of the tests before, a replica again and in sync
  // A wrong primary name.
  await assert.rejects(connectChecked(DEFAULT_REDIS_URL, { ...set.auth, primaryName: 'nope' }, 3000), (err: unknown) => {
    assert.ok(err instanceof RedisConnectError, String(err));
    assert.match(err.problem, new RegExp(`no sentinel knows a primary named 'nope' \\(they monitor: ${set.name}\\)`));
    assert.match(err.fix, new RegExp(`set redis.primaryName .* ${set.name}`));
    return true;
  });

  // The doctor on a healthy set.
  const ctx = { redisUrl: DEFAULT_REDIS_URL, redisAuth: set.auth, periodSeconds: 30, host: 'h1' } as DoctorContext;
  const healthy = await checkRedis(ctx);
  process.stdout.write(renderDoctor({ host: 'test', at: new Date().toISOString(), ok: true, checks: healthy }).replace(/^/gm, '# '));
  const status = (rs: typeof healthy, id: string) => rs.find((r) => r.id === id)?.status;
  assert.deepEqual(
    ['sentinels', 'quorum', 'redis', 'replicas', 'clock'].map((id) => status(healthy, id)),
    ['ok', 'ok', 'ok', 'ok', 'ok'],
    JSON.stringify(healthy),
  );

  // A fourth sentinel that monitors another Redis under the same name: the sentinels disagree.
  const rogue = await set.startRedis();
  const odd = await set.startSentinel(rogue, set.name, 1);
  const four = { ...set.auth, sentinels: [...(set.auth.sentinels ?? [])] };
  const disagree = sentinelProblems(await inspectSentinels(four), set.name);
  assert.match(disagree[0]?.problem ?? '', new RegExp(`the sentinels disagree on the primary of '${set.name}': .*127\\.0\\.0\\.1:${odd} says 127\\.0\\.0\\.1:${rogue}`));
  assert.match(disagree[0]!.fix, /sentinel monitor/);
  const doctorDisagree = await checkRedis({ ...ctx, redisAuth: four });
  assert.equal(status(doctorDisagree, 'sentinels'), 'fail');
  await set.kill(odd);
  await set.kill(rogue);

  // Two of three sentinels down: no quorum, said by the doctor (the primary still answers).
  const [s1, s2] = set.sentinelPorts;
  await set.kill(s1!);
  await set.kill(s2!);
  // The one left judges the others down after its down-after-milliseconds.
  const noQuorum = await waitFor(
    'the sentinel left to see no quorum',
    async () => {
      const rs = await checkRedis(ctx);
      return status(rs, 'quorum') === 'fail' ? rs : undefined;
    },
    20_000,
    200,
  );
  process.stdout.write(renderDoctor({ host: 'test', at: new Date().toISOString(), ok: false, checks: noQuorum }).replace(/^/gm, '# '));
  assert.equal(status(noQuorum, 'quorum'), 'fail');
  assert.match(noQuorum.find((r) => r.id === 'quorum')!.detail, /cannot fail over .*NOQUORUM/);
  assert.match(noQuorum.find((r) => r.id === 'quorum')!.fix ?? '', /start the sentinels that are down .*not answering: 127\.0\.0\.1:/);
  assert.equal(status(noQuorum, 'redis'), 'ok', 'the primary still serves');

  // None answering: a command fails at once saying so; a daemon says it and retries until they are back.
  const [, , s3] = set.sentinelPorts;
  await set.kill(s3!);
  await assert.rejects(connectChecked(DEFAULT_REDIS_URL, set.auth, 3000), /no sentinel answers \(127\.0\.0\.1:\d+: .*ECONNREFUSED.*\): start redis-sentinel on them/);
  const { log, lines } = capture();
  const d = daemon(set.auth, log);
  await waitFor('the daemon to say why', async () => (lines.some((l) => /no sentinel answers/.test(l) && /retrying/.test(l)) ? true : undefined), 20_000, 50);
  assert.notEqual(d.status, 'ready');
  for (const s of [s1!, s2!, s3!]) await set.restart(s);
  await waitFor('the daemon connected through the sentinels back', async () => (d.status === 'ready' ? true : undefined), 30_000, 50);
  assert.equal(await d.ping(), 'PONG');
});
