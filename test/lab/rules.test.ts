import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { Registry } from '../../src/collector/registry.js';
import { agentPaths, labRedisUrl, labRoutes, startAgent } from '../../src/lab/agents.js';
import { labEnvironment } from '../../src/lab/environment.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabState } from '../../src/lab/state.js';
import { domainName, hosts, labMigrateUri, type LabHost } from '../../src/lab/topology.js';
import { addVm } from '../../src/lab/vm.js';
import { listDomains, migrateDomain } from '../../src/libvirt/virsh.js';
import { readHistory, readRunning } from '../../src/manager/history.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER, Manager, type ManagerConfig, type Round } from '../../src/manager/manager.js';
import { parseEnvironment } from '../../src/placement/index.js';
import { sleep, waitFor } from '../../src/util/exec.js';
import { livePid } from '../../src/util/process.js';
import { msToNextBoundary } from '../../src/util/period.js';
import { labSensors, startedAt } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';

// The rules and the hypervisor's events on a real lab: 2 sites x 2 hosts, 5 s periods; vm1, vm2, vm3
// all talking, vm1 on a1 and the replicas vm2 (b1) and vm3 (b2) kept apart by host; a group kept
// together by site. One sensor backend: the rules do not depend on how traffic is counted.
const PERIOD = 5;
const sensor = labSensors()[0]!;

describe(`rules and events (${sensor}) on a lab`, { concurrency: 1 }, () => {
  const name = uniqueName();
  let lab: LabState;
  let redis: Redis;
  let cfg: ManagerConfig;
  let all: LabHost[];
  const dom = (vm: string) => domainName(lab, vm);
  const siteOf = (h: string) => all.find((x) => x.name === h)!.site;

  /** Where each VM of the lab runs, as libvirt says (not the directory: it lags by a reconcile). */
  async function where(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const h of all) for (const d of await listDomains(h.uri)) if (d.state === 'running') out.set(d.name, h.name);
    return out;
  }

  before(async () => {
    lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 10, rateMbit: 1000, periodSeconds: PERIOD, sensor });
    all = hosts(lab);
    for (const [vm, host, index] of [
      ['vm1', 'a1', 1],
      ['vm2', 'b1', 2],
      ['vm3', 'b2', 3],
    ] as const) {
      await addVm(lab.name, { name: vm, host, index, pattern: 'all', cluster: 3, rate: 20, size: 256, memoryMiB: 128, wait: true });
    }
    redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const env = parseEnvironment(labEnvironment(lab), 'lab');
    cfg = {
      ...DEFAULT_MANAGER,
      apply: true,
      everyPeriods: 1,
      span: 2,
      confirmRounds: 1,
      cooldownMs: 5000,
      externalHoldMs: 120_000,
      evacuateSilentMs: 20_000,
      env,
      ...labRoutes(lab),
      rules: [
        { name: 'replicas', apart: [dom('vm2'), dom('vm3')], scope: 'host' },
        { name: 'app', together: [dom('vm1'), dom('vm2'), dom('vm3'), dom('vm4')], scope: 'site' },
        // vm5 starts during a drain and must join a2: where it goes is known before it starts.
        { name: 'vm5-home', vms: [dom('vm5')], must: { host: 'a2' } },
      ],
      rulesFile: 'test',
    };
    await sleep(msToNextBoundary(Date.now(), PERIOD) + 2 * PERIOD * 1000 + 1500);
  });

  after(async () => {
    redis?.disconnect();
    await labDown(name);
  });

  it('two replicas kept apart by host stay apart while their group is gathered into one site', async () => {
    const m = new Manager(redis, cfg, new LeaderLock(redis, 10_000));
    const rounds: Round[] = [];
    try {
      for (let n = 0; n < 5; n++) {
        await sleep(msToNextBoundary(Date.now(), PERIOD) + 1500);
        rounds.push(await m.round());
        const w = await where();
        assert.notEqual(w.get(dom('vm2')), w.get(dom('vm3')), `round ${n}: the replicas share a host (${JSON.stringify([...w])})`);
        if (new Set([dom('vm1'), dom('vm2'), dom('vm3')].map((v) => siteOf(w.get(v)!))).size === 1) break;
      }
    } finally {
      await m.lock.stop();
    }
    const w = await where();
    const sites = new Set([dom('vm1'), dom('vm2'), dom('vm3')].map((v) => siteOf(w.get(v)!)));
    assert.equal(
      sites.size,
      1,
      `gathered into one site: ${JSON.stringify([...w])}; rounds: ${rounds.map((r) => JSON.stringify({ moves: r.moves, skipped: r.skipped, note: r.note, broken: r.plan?.broken })).join('\n')}`,
    );
    assert.ok(
      rounds.some((r) => r.done.some((d) => d.outcome === 'ok')),
      'by live migration',
    );
  });

  describe('with the manager running, between its rounds', () => {
    let m: Manager;
    const rounds: Round[] = [];
    before(() => {
      // A round every 24 periods (2 min): what happens before is the events' doing.
      m = new Manager(redis, { ...cfg, everyPeriods: 24 }, new LeaderLock(redis, 10_000), (r) => rounds.push(r));
      m.start();
      return waitFor('the manager to lead', async () => (m.lock.isLeader ? true : undefined), 15_000);
    });
    after(() => m.stop());

    it('a VM moved by hand with virsh migrate is recorded as external and not moved back during its hold', async () => {
      const w = await where();
      const from = all.find((h) => h.name === w.get(dom('vm1')))!;
      const to = all.find((h) => h.site !== from.site && h.name !== w.get(dom('vm2')) && h.name !== w.get(dom('vm3')))!;
      await migrateDomain(from.uri, dom('vm1'), to.uri, { migrateUri: labMigrateUri(to) });
      const rec = await waitFor('the external move in history', async () => (await readHistory(redis, 10, dom('vm1'))).find((r) => r.manager === 'external'), 15_000, 200);
      assert.deepEqual([rec.from, rec.to], [from.name, to.name]);
      // Two rounds during the hold: vm1 stays where it was put, though its group is elsewhere.
      for (let n = 0; n < 2; n++) {
        await sleep(msToNextBoundary(Date.now(), PERIOD) + 1500);
        const r = await m.round();
        assert.ok(!r.moves.some((o) => o.vm === dom('vm1')), JSON.stringify(r.moves));
      }
      assert.equal((await where()).get(dom('vm1')), to.name);
    });

    it('a new VM started away from its group joins the group’s site after one event, within 2 s, well before the next round', async () => {
      const w = await where();
      const groupSite = siteOf(w.get(dom('vm2'))!);
      const away = all.find((h) => h.site !== groupSite)!;
      const started = Date.now();
      await addVm(lab.name, { name: 'vm4', host: away.name, index: 4, pattern: 'peers:2,3', cluster: 3, rate: 20, size: 256, memoryMiB: 128, wait: false });
      const rec = await waitFor('vm4 migrated by the manager', async () => (await readHistory(redis, 10, dom('vm4'))).find((r) => r.manager === m.lock.id), 30_000, 100);
      const hookAt = await startedAt(redis, away.name, dom('vm4'));
      assert.ok(hookAt !== undefined, 'the hook event');
      const reaction = rec.at - hookAt;
      process.stdout.write(`# vm4 started ${new Date(hookAt).toISOString()}; migration started ${reaction} ms after its event; whole move ${rec.seconds.toFixed(1)} s\n`);
      assert.equal(rec.outcome, 'ok', JSON.stringify(rec));
      assert.equal(siteOf(rec.to), groupSite);
      assert.ok(reaction <= 2000, `event -> migration started: ${reaction} ms`);
      assert.ok(rec.at - started < 20_000, 'long before the next round (2 min)');
      // The round is told once its migration is recorded, a moment after the history shows it (CI, 2026-12-01).
      await waitFor('the event round', async () => (rounds.some((r) => r.cause?.what === `${dom('vm4')} started on ${away.name}`) ? true : undefined), 15_000, 100);
    });

    it('a drained host is emptied without breaking a rule; a VM started meanwhile moves within 2 s, not after the drain', async () => {
      const w = await where();
      const host = w.get(dom('vm2'))!;
      await new Registry(redis).setDraining(host, true);
      // The drain's first migration running, a VM starts elsewhere: its move must not wait for the drain's.
      const first = await waitFor('the drain to start migrating', async () => (await readRunning(redis)).find((x) => x.from === host), 15_000, 50);
      assert.ok(![first.from, first.to].includes('a2'), `the drain's first move (${first.from} -> ${first.to}) touches a2, where vm5 must go: the lab's state is not what this test expects`);
      const start = all.find((h) => ![first.from, first.to, 'a2'].includes(h.name))!;
      await addVm(lab.name, { name: 'vm5', host: start.name, index: 5, pattern: 'idle', cluster: 5, rate: 1, size: 64, memoryMiB: 128, wait: false });
      const rec5 = await waitFor('vm5 migrated by the manager', async () => (await readHistory(redis, 20, dom('vm5'))).find((r) => r.manager === m.lock.id), 30_000, 100);
      const hook5 = await startedAt(redis, start.name, dom('vm5'));
      assert.ok(hook5 !== undefined, 'the hook event of vm5');
      const reaction5 = rec5.at - hook5;
      process.stdout.write(`# vm5 started on ${start.name} during the drain of ${host}; migration to ${rec5.to} started ${reaction5} ms after its event\n`);
      assert.equal(rec5.to, 'a2');
      assert.ok(reaction5 <= 2000, `event -> migration started, during a drain: ${reaction5} ms`);
      await waitFor('the drained host to be empty', async () => ([...(await where()).values()].includes(host) ? undefined : true), 60_000, 500);
      const after = await where();
      assert.notEqual(after.get(dom('vm2')), after.get(dom('vm3')), 'the replicas still on two hosts');
      // The decision is told once its migrations are done, a moment after libvirt shows the host empty.
      // A drain can take more than one round: a VM in a migration already running when the flag came (the event's
      // move of vm4, CI 2026-12-01) is left to the next. Every round of the drain counts.
      const done = await waitFor(
        'the drain decision',
        async () => {
          const d = rounds.filter((x) => x.cause?.what === `host ${host} draining`).flatMap((x) => x.done);
          return d.length ? d : undefined;
        },
        30_000,
      );
      for (const d of done) assert.ok(!/would break/.test(d.reason ?? ''), d.reason);
      process.stdout.write(`# drain of ${host}: ${done.map((d) => `${d.vm} -> ${d.to} (${d.reason})`).join('; ')}\n`);
      const drainEnd = Math.max(...done.map((d) => d.at + d.seconds * 1000));
      assert.ok(rec5.at < drainEnd, `vm5's migration started before the drain's migrations ended (${rec5.at} < ${drainEnd})`);
      await new Registry(redis).setDraining(host, false);
    });

    it('a host whose agent stops reporting is evacuated under the rules after evacuateSilent', async () => {
      // The drain above left vm2 away from its group, and the manager's next round mends that, which may move
      // vm3 (CI, 2026-12-01: it left the host just killed, and the evacuation had no vm3 to move). Rounds until
      // one moves nothing and holds nothing of vm3's, so that the host picked below is where vm3 stays.
      await waitFor(
        'a round that moves nothing',
        async () => {
          await sleep(msToNextBoundary(Date.now(), PERIOD) + 1500);
          const r = await m.round();
          return r.moves.length || r.skipped.some((x) => x.vm === dom('vm3')) ? undefined : true;
        },
        120_000,
        0,
      );
      const w = await where();
      const host = all.find((h) => h.name === w.get(dom('vm3')))!;
      const pid = (await livePid(agentPaths(lab, host).pid))!;
      const lastSeen = (await new Registry(redis).hosts()).find((h) => h.host === host.name)!.lastSeen;
      process.kill(pid, 'SIGKILL');
      const killed = Date.now();
      try {
        const rec = await waitFor('vm3 evacuated', async () => (await readHistory(redis, 20, dom('vm3'))).find((r) => r.from === host.name && r.at > killed), 90_000, 500);
        process.stdout.write(`# agent of ${host.name} killed; vm3 -> ${rec.to} ${((rec.at - killed) / 1000).toFixed(1)} s later (${rec.reason})\n`);
        assert.equal(rec.outcome, 'ok', JSON.stringify(rec));
        assert.match(rec.reason ?? '', new RegExp(`^${host.name} has been silent for \\d+ s`));
        assert.ok(rec.at - lastSeen >= 20_000, `not before evacuateSilent: ${rec.at - lastSeen} ms after the last heartbeat`);
        const after = await where();
        assert.notEqual(after.get(dom('vm2')), after.get(dom('vm3')), 'the replicas still on two hosts');
      } finally {
        await startAgent(lab, host);
      }
    });
  });
});
