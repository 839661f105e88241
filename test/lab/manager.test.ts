import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync } from 'node:fs';
import { cp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { msToNextBoundary } from '../../src/util/period.js';
import { K } from '../../src/collector/keys.js';
import { hostPart } from '../../src/collector/store.js';
import { startGuests } from '../../src/cli/lab.js';
import { labRoutes } from '../../src/lab/agents.js';
import { labRedisUrl } from '../../src/lab/agents.js';
import { labEnvironment } from '../../src/lab/environment.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import { libvirtdPidFile, restartLibvirtd } from '../../src/lab/libvirtd.js';
import { domainName, hosts, type LabHost } from '../../src/lab/topology.js';
import { hostDir, labDir, type LabState } from '../../src/lab/state.js';
import { listDomains, domainState } from '../../src/libvirt/virsh.js';
import { migrateOne, type HostRoute } from '../../src/manager/executor.js';
import { cooldownUntil, readHistory } from '../../src/manager/history.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER, Manager, interSiteShare, type Round } from '../../src/manager/manager.js';
import { readCollector } from '../../src/placement/fromCollector.js';
import { parseEnvironment } from '../../src/placement/index.js';
import { run, sleep, waitFor } from '../../src/util/exec.js';
import { alive, livePid } from '../../src/util/process.js';
import { labSensors } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';
import { periodScore } from '../helpers/zsets.js';

// The closed loop on a real lab: 2 sites x 2 hosts, 4 guests in 2 pairs, each
// pair split across the sites (vm1 a1 + vm2 b1, vm3 a2 + vm4 b2), 5 s periods.
const PERIOD = 5;
const RATE = 20;
const COOLDOWN_MS = 8000;
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;

for (const sensor of labSensors()) managerSuite(sensor);

function managerSuite(sensor: 'ebpf' | 'pcap'): void {
  const name = uniqueName();
  let lab: LabState;
  let redis: Redis;
  let a1: LabHost, b1: LabHost, b2: LabHost;
  const dom = (vm: string) => domainName(lab, vm);

  async function nextRound(): Promise<void> {
    await sleep(msToNextBoundary(Date.now(), PERIOD) + 1500);
  }

  async function routes(): Promise<Map<string, HostRoute>> {
    const out = new Map<string, HostRoute>();
    for (const h of hosts(lab)) out.set(h.name, { uri: h.uri, migrateUri: `tcp://${h.dataIp}` });
    return out;
  }

  /** What `vm` sent `peer` over the periods around a move between `from` and `to` (ms) adds up over both hosts. */
  async function assertSentAround(vm: string, peer: string, from: number, to: number): Promise<void> {
    const first = Math.floor(from / 1000 / PERIOD) * PERIOD - PERIOD;
    const last = Math.floor(to / 1000 / PERIOD) * PERIOD + PERIOD;
    await waitFor(`period ${last} reported`, async () => ((await redis.scard(K.reported(last))) >= 4 ? true : undefined), 30_000);
    let sum = 0;
    const seen: string[] = [];
    for (let p = first; p <= last; p += PERIOD) {
      const n = Number((await periodScore(redis, p, `${vm}>${peer}`)) ?? 0);
      sum += n;
      const parts = await Promise.all(hosts(lab).map(async (h) => `${h.name} ${(await hostPart(redis, p, h.name)).get(`${vm}>${peer}`)?.[0] ?? 0}`));
      seen.push(`${p}: ${n} (${parts.join(', ')})`);
    }
    const expected = RATE * (last - first + PERIOD);
    if (Math.abs(sum - expected) <= RATE + 4) return;
    // What each agent said about taps over those periods, for whoever reads a failure in CI.
    const said: string[] = [];
    for (const h of hosts(lab)) {
      const lines = (await readFile(join(hostDir(lab.name, h.name), 'agent.log'), 'utf8').catch(() => '')).split('\n');
      for (const l of lines) {
        const j = (() => {
          try {
            return JSON.parse(l) as { time: number; msg: string; [k: string]: unknown };
          } catch {
            return undefined;
          }
        })();
        if (!j || j.time < first * 1000 || j.time > (last + PERIOD) * 1000 || !/hook|captur|reconcil|tap|libvirt|waiting/.test(j.msg)) continue;
        const { level: _l, time, pid: _p, hostname: _h, msg, ...rest } = j;
        said.push(`${h.name} ${new Date(time).toISOString().slice(11, 23)} ${msg} ${JSON.stringify(rest)}`);
      }
    }
    assert.fail(`${vm} sent ${sum} messages around its move (${from}-${to}), expected ${expected}; by period and host: ${seen.join('; ')}\nthe agents said:\n${said.join('\n')}`);
  }

  describe(`manager (${sensor}) on lab ${name}`, { concurrency: 1 }, () => {
    before(async () => {
      lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 10, rateMbit: 1000, periodSeconds: PERIOD, sensor });
      [a1, , b1, b2] = hosts(lab) as [LabHost, LabHost, LabHost, LabHost];
      await startGuests(lab, 4, { pattern: 'groups:2', vmRate: RATE, vmSize: 256, memory: 128 }, false);
      redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
      redis.on('error', () => undefined);
      // Two full periods of traffic before anything is judged.
      await sleep(msToNextBoundary(Date.now(), PERIOD) + 2 * PERIOD * 1000 + 1500);
    });
    after(async () => {
      redis?.disconnect();
      // For a person debugging a failure: the agents' logs, kept where VIRT_COHORT_TEST_LOGS says.
      if (process.env.VIRT_COHORT_TEST_LOGS) {
        const root = labDir(lab.name);
        // The logs only: the hosts' directories also hold libvirt's sockets and state.
        const keep = (src: string) => (lstatSync(src).isDirectory() ? !/\/(run|etc|var|cache|lib)(\/|$)/.test(src.slice(root.length)) : src.endsWith('.log'));
        await cp(root, join(process.env.VIRT_COHORT_TEST_LOGS, name), { recursive: true, filter: keep }).catch(() => undefined);
      }
      await labDown(name);
    });

    it('a migration whose destination libvirtd is down fails cleanly: the VM runs on at its source, and is retried after its cooldown', async () => {
      const pid = (await livePid(libvirtdPidFile(lab, b2)))!;
      process.kill(pid, 'SIGKILL');
      await waitFor('b2 libvirtd to die', async () => (alive(pid) ? undefined : true), 5000);
      const rec = await migrateOne(redis, { vm: dom('vm1'), from: a1.name, to: b2.name, reason: 'test' }, await routes(), {
        maxPerHost: 1,
        maxConcurrent: 1,
        timeoutMs: 60_000,
        autoConverge: false,
        cooldownMs: COOLDOWN_MS,
        mayAct: () => true,
        manager: 'test',
      });
      assert.equal(rec.outcome, 'failed', JSON.stringify(rec));
      assert.equal(await domainState(a1.uri, dom('vm1')), 'running', 'still running at the source');
      assert.equal((await readHistory(redis, 1))[0]?.outcome, 'failed');
      assert.ok((await cooldownUntil(redis, dom('vm1'))) > Date.now());
      await restartLibvirtd(lab, b2);
      const early = await run(process.execPath, [CLI, 'migrate', dom('vm1'), b2.name, '--lab', name]).then(
        () => 0,
        (e: { code: number; stderr: string }) => e,
      );
      assert.notEqual(early, 0, 'refused during the cooldown');
      assert.match((early as { stderr: string }).stderr, /cooldown/);
      await sleep(Math.max(0, (await cooldownUntil(redis, dom('vm1'))) - Date.now()) + 200);
      await run(process.execPath, [CLI, 'migrate', dom('vm1'), b2.name, '--lab', name, '--cooldown', `${COOLDOWN_MS / 1000}s`]);
      assert.equal(await domainState(b2.uri, dom('vm1')), 'running', 'the retry after the cooldown moved it');
      assert.equal((await readHistory(redis, 1))[0]?.outcome, 'ok');
    });

    it('a migration whose destination stops answering is aborted at its timeout: the VM runs on at its source', async () => {
      const vm = dom('vm2');
      const src = b1;
      const dst = hosts(lab).find((h) => h.name === 'a2')!;
      const pidFile = join(hostDir(lab.name, dst.name), 'run/libvirt/qemu', `${vm}.pid`);
      const moving = migrateOne(redis, { vm, from: src.name, to: dst.name, reason: 'test' }, await routes(), {
        maxPerHost: 1,
        maxConcurrent: 1,
        timeoutMs: 6000,
        autoConverge: false,
        cooldownMs: COOLDOWN_MS,
        mayAct: () => true,
        manager: 'test',
        progressEveryMs: 500,
      });
      // Freeze the incoming QEMU on the destination as soon as it exists: the copy stalls.
      const frozen = await waitFor(
        'the incoming QEMU on the destination',
        async () => {
          const pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
          return pid > 0 && alive(pid) ? pid : undefined;
        },
        10_000,
        20,
      );
      process.kill(frozen, 'SIGSTOP');
      // Thawed once the executor has given up: libvirt's clean-up of the
      // cancelled migration on the destination needs that QEMU to answer.
      const thaw = setTimeout(() => {
        if (alive(frozen)) process.kill(frozen, 'SIGCONT');
      }, 9000);
      let rec: Awaited<typeof moving>;
      try {
        rec = await moving;
      } finally {
        clearTimeout(thaw);
        if (alive(frozen)) process.kill(frozen, 'SIGCONT');
      }
      assert.equal(rec.outcome, 'aborted', JSON.stringify(rec));
      assert.ok(rec.seconds >= 6 && rec.seconds < 60, `aborted after ${rec.seconds} s`);
      assert.equal(await domainState(src.uri, vm), 'running', 'still running at the source');
      await waitFor('the destination to drop the half-migrated VM', async () => ((await listDomains(dst.uri)).some((d) => d.name === vm) ? undefined : true), 30_000);
      assert.equal((await readHistory(redis, 1))[0]?.outcome, 'aborted');
    });

    it('two managers: one acts; split groups are together within 3 rounds, inter-site traffic falls by 90 %, counts stay continuous, then 10 stable rounds move nothing', async () => {
      const env = parseEnvironment(labEnvironment(lab), 'lab');
      const before = interSiteShare(await readCollector(redis, { query: { type: 'mean', span: 2, maxWaitMs: 5000, approx: true }, env }));
      const cfg = { ...DEFAULT_MANAGER, apply: true, everyPeriods: 1, span: 2, cooldownMs: COOLDOWN_MS, env, ...labRoutes(lab) };
      const managers = [0, 1].map(() => new Manager(redis, cfg, new LeaderLock(redis, 10_000)));
      const rounds: Round[][] = [];
      const start = Date.now();
      let together = -1;
      try {
        for (let n = 0; n < 6 && together < 0; n++) {
          await nextRound();
          const rs = await Promise.all(managers.map((m) => m.round()));
          rounds.push(rs);
          const acting = rs.filter((r) => !r.note?.startsWith('standing by'));
          assert.equal(acting.length, 1, `exactly one manager acts (round ${n + 1}: ${rs.map((r) => r.note).join(' | ')})`);
          const r = acting[0]!;
          if (r.view?.answer.status === 'ok' && r.interSite <= 0.1 * before && !r.moves.length) together = n + 1;
        }
        assert.ok(
          together > 0 && together <= 3,
          `together after ${together} rounds (rounds: ${rounds.map((rs) => rs.map((r) => `${(100 * r.interSite).toFixed(0)}% ${r.moves.length} moves ${r.note ?? ''}`).join(' / ')).join(' ; ')})`,
        );
        const moved = (await readHistory(redis, 50)).filter((h) => h.at >= start);
        assert.ok(moved.length >= 1 && moved.every((h) => h.outcome === 'ok'), JSON.stringify(moved));
        assert.equal(new Set(moved.map((h) => h.manager)).size, 1, 'every migration by the one leader');

        // No VM lost or doubled: each guest runs on exactly one host.
        const running = (await Promise.all(hosts(lab).map((h) => listDomains(h.uri))))
          .flat()
          .filter((d) => d.state === 'running')
          .map((d) => d.name)
          .sort();
        assert.deepEqual(running, ['vm1', 'vm2', 'vm3', 'vm4'].map(dom).sort());

        // Counts continuous: around each move, what the VM sent adds up over both hosts.
        for (const m of moved) {
          const peer = { vm1: 'vm2', vm2: 'vm1', vm3: 'vm4', vm4: 'vm3' }[m.vm.replace(`vc-${name}-`, '')]!;
          await assertSentAround(m.vm, dom(peer), m.at, m.at + m.seconds * 1000);
        }

        for (let n = 0; n < 10; n++) {
          await nextRound();
          const rs = await Promise.all(managers.map((m) => m.round()));
          for (const r of rs) assert.equal(r.moves.length, 0, `stable round ${n + 1}: ${JSON.stringify(r.moves)}`);
        }
      } finally {
        for (const m of managers) await m.stop();
      }
    });

    it('host drain: the manager empties the host, keeps each group in one site, and plans nothing onto it', async () => {
      const env = parseEnvironment(labEnvironment(lab), 'lab');
      const manager = new Manager(redis, { ...DEFAULT_MANAGER, apply: true, everyPeriods: 1, span: 2, cooldownMs: COOLDOWN_MS, env, ...labRoutes(lab) }, new LeaderLock(redis, 10_000));
      try {
        const where = async () => new Map((await Promise.all(hosts(lab).map(async (h) => (await listDomains(h.uri)).filter((d) => d.state === 'running').map((d) => [d.name, h] as const)))).flat());
        const busiest = [...(await where()).values()].reduce((m, h) => m.set(h, (m.get(h) ?? 0) + 1), new Map<LabHost, number>());
        const target = [...busiest].sort((x, y) => y[1] - x[1])[0]![0];
        await run(process.execPath, [CLI, 'host', 'drain', target.name, '--lab', name]);
        let emptied = false;
        for (let n = 0; n < 4 && !emptied; n++) {
          await nextRound();
          await manager.round();
          emptied = ![...(await where()).values()].some((h) => h.name === target.name);
        }
        assert.ok(emptied, `${target.name} emptied`);
        const placed = await where();
        assert.equal(placed.size, 4, 'no VM lost');
        for (const [x, y] of [
          ['vm1', 'vm2'],
          ['vm3', 'vm4'],
        ]) {
          assert.equal(placed.get(dom(x!))!.site, placed.get(dom(y!))!.site, `${x} and ${y} still in one site`);
        }
        for (let n = 0; n < 2; n++) {
          await nextRound();
          const r = await manager.round();
          assert.ok(!r.moves.some((m) => m.to === target.name), 'nothing planned onto a draining host');
        }
      } finally {
        await manager.stop();
      }
    });
  });
}
