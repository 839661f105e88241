// A manager killed in the middle of a migration, on a real lab (2 sites x 1
// host, a slow inter-site link so the migration takes tens of seconds): the
// migration was marked in Redis before virsh started, so the next leader
// adopts it, watches it to its end, records the outcome, and leaves no VM
// paused or lost. And Redis frozen (SIGSTOP) past the lock's TTL while a
// migration runs: never two leaders, the new one waits for the marked
// migration, and the deposed one is fenced off by its term.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { startGuests } from '../../src/cli/lab.js';
import { K } from '../../src/collector/keys.js';
import { labRedisUrl, labRoutes } from '../../src/lab/agents.js';
import { labEnvironment } from '../../src/lab/environment.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabState } from '../../src/lab/state.js';
import { domainName, hosts, type LabHost } from '../../src/lab/topology.js';
import { listDomains } from '../../src/libvirt/virsh.js';
import { cooldownUntil, readHistory } from '../../src/manager/history.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER, Manager } from '../../src/manager/manager.js';
import { parseEnvironment } from '../../src/placement/index.js';
import { Registry } from '../../src/collector/registry.js';
import { redisPidFile } from '../../src/lab/redis.js';
import { execute } from '../../src/manager/executor.js';
import { RouteVetter, trustedRoutes } from '../../src/manager/trust.js';
import { readFile } from 'node:fs/promises';
import { sleep, waitFor } from '../../src/util/exec.js';
import { alive } from '../../src/util/process.js';
import { uniqueName } from '../helpers/names.js';

const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;

const name = uniqueName();

describe(`a manager killed mid-migration (lab ${name})`, { concurrency: 1 }, () => {
  let lab: LabState;
  let redis: Redis;
  let a1: LabHost;
  let b1: LabHost;

  before(async () => {
    // 40 Mbit/s between the sites: 128 MiB of guest memory takes about half a minute to copy.
    lab = await labUp({ name, sites: 2, hostsPerSite: 1, delayMs: 5, rateMbit: 40, periodSeconds: 5 });
    [a1, b1] = hosts(lab) as [LabHost, LabHost];
    await startGuests(lab, 2, { pattern: 'groups:2', vmRate: 10, vmSize: 256, memory: 128 }, false);
    redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
  });
  after(async () => {
    redis?.disconnect();
    await labDown(name);
  });

  it('the next leader adopts it: watches it to its end, records the outcome once, and no VM is left paused or lost', async () => {
    const vm = domainName(lab, 'vm1');
    const running = async () => (await Promise.all(hosts(lab).map(async (h) => (await listDomains(h.uri)).filter((d) => d.name === vm).map((d) => `${h.name}:${d.state}`)))).flat();
    assert.deepEqual(await running(), [`${a1.name}:running`]);

    // The first manager: `virt-cohort migrate`, killed with SIGKILL once its migration is under way.
    const first = spawn(process.execPath, [CLI, 'migrate', vm, b1.name, '--lab', name, '--cooldown', '20s'], { stdio: 'ignore' });
    try {
      await waitFor('the migration marked as running in Redis', async () => ((await redis.hexists(K.migrating, vm)) ? true : undefined), 60_000, 100);
      await waitFor('the migration job running on the source', async () => ((await running()).length === 2 ? true : undefined), 60_000, 200);
      assert.ok((await cooldownUntil(redis, vm)) > Date.now(), 'the cooldown was started before virsh');
      process.kill(first.pid!, 'SIGKILL');
      await waitFor('the first manager to die', async () => (alive(first.pid!) ? undefined : true), 5000, 50);
    } finally {
      if (first.pid && alive(first.pid)) process.kill(first.pid, 'SIGKILL');
    }
    assert.deepEqual(await readHistory(redis, 5, vm), [], 'the killed manager recorded nothing');

    // The next leader: a manager round, with the lab's routes and environment.
    const lock = new LeaderLock(redis, 10_000);
    const manager = new Manager(redis, { ...DEFAULT_MANAGER, apply: true, everyPeriods: 1, span: 1, env: parseEnvironment(labEnvironment(lab), 'lab'), ...labRoutes(lab) }, lock);
    const r = await manager.round();
    assert.match(r.note ?? '', /adopted 1 migration\(s\) a previous leader started/);
    assert.equal(r.done.length, 1);
    const rec = r.done[0]!;
    assert.equal(rec.manager, lock.id, 'recorded by the leader that adopted it');
    assert.match(rec.reason ?? '', /^adopted: started by /);
    assert.equal(await redis.hlen(K.migrating), 0, 'no migration left marked');
    const history = await readHistory(redis, 5, vm);
    assert.equal(history.length, 1, 'recorded once');
    // Wherever it ended, the VM runs on exactly one host.
    const now = await running();
    assert.equal(now.length, 1, `the VM is on one host: ${now.join(', ')}`);
    assert.ok(now[0]!.endsWith(':running'), `and running: ${now[0]}`);
    assert.equal(now[0]!.startsWith(b1.name), rec.outcome === 'ok', `${rec.outcome}: ${rec.error ?? ''}`);
  });

  it('Redis frozen past the lock TTL during a migration: never two leaders, the new leader waits for the marked migration, the old one is fenced off', async () => {
    const vm = domainName(lab, 'vm2');
    const where = async () => (await Promise.all(hosts(lab).map(async (h) => ((await listDomains(h.uri)).some((d) => d.name === vm) ? [h.name] : [])))).flat();
    const [from] = await where();
    const to = from === a1.name ? b1.name : a1.name;
    const client = () => {
      const c = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
      c.on('error', () => undefined);
      return c;
    };
    const [ra, rb] = [client(), client()];
    const TTL = 3000;
    const lockA = new LeaderLock(ra, TTL);
    const lockB = new LeaderLock(rb, TTL);
    let both = 0;
    let migratingAtOnce = 0;
    const watch = setInterval(() => {
      if (lockA.isLeader && lockB.isLeader) both++;
    }, 10);
    // Each look is awaited before the test ends: one still running when the lab goes would fail after it.
    const looks = new Set<Promise<void>>();
    const copies = setInterval(() => {
      const look = where().then(
        (on) => void (migratingAtOnce = Math.max(migratingAtOnce, on.length - 1)),
        () => undefined, // a libvirtd that did not answer this once: no copy seen, the next look counts
      );
      looks.add(look);
      void look.finally(() => looks.delete(look));
    }, 500);
    try {
      assert.equal(await lockA.tick(), true, 'A leads');
      assert.equal(await lockB.tick(), false, 'B stands by');
      const termA = lockA.term;
      const routes = trustedRoutes(await new Registry(ra).hosts(), new RouteVetter(labRoutes(lab))).routes;
      const opts = { maxPerHost: 1, maxConcurrent: 2, timeoutMs: 300_000, autoConverge: false, cooldownMs: 20_000, manager: lockA.id, term: termA, mayAct: () => lockA.fenced() };
      const moving = execute(ra, [{ vm, from: from!, to, reason: 'test: Redis frozen' }], routes, opts);
      await waitFor('the migration marked in Redis', async () => ((await redis.hexists(K.migrating, vm)) ? true : undefined), 60_000, 100);
      assert.equal(JSON.parse((await redis.hget(K.migrating, vm))!).term, termA, "the mark carries A's fencing token");

      // A's renewals stop (its loop is stuck); Redis freezes for longer than the TTL; B keeps trying.
      const pid = Number((await readFile(redisPidFile(name), 'utf8')).trim());
      process.kill(pid, 'SIGSTOP');
      try {
        const trying = (async () => {
          for (let i = 0; i < 6; i++) await Promise.all([lockB.tick(), sleep(TTL / 3)]);
        })();
        await sleep(TTL + 2000);
        assert.equal(lockA.isLeader, false, 'A stopped believing it leads while Redis was frozen');
        process.kill(pid, 'SIGCONT');
        await trying;
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await waitFor('B to lead', async () => ((await lockB.tick()) ? true : undefined), 10_000, 200);
      assert.ok(lockB.term > termA, `B's term ${lockB.term} is above A's ${termA}`);

      // B's round: the marked migration first, watched to its end; nothing new meanwhile.
      const manager = new Manager(rb, { ...DEFAULT_MANAGER, apply: true, everyPeriods: 1, span: 1, env: parseEnvironment(labEnvironment(lab), 'lab'), ...labRoutes(lab) }, lockB);
      const r = await manager.round();
      assert.match(r.note ?? '', /adopted 1 migration\(s\) a previous leader started/);
      assert.equal(r.moves.length, 0, 'no new move while a marked migration ran');
      const doneA = await moving; // A's virsh ran on: it ends too
      assert.equal(doneA.length, 1);
      assert.equal((await readHistory(redis, 10, vm)).filter((h) => h.reason?.includes('Redis frozen')).length, 1, 'the migration is recorded once, by A or by B');
      assert.equal(await redis.hlen(K.migrating), 0, 'no mark left');

      // A, deposed, tries again with its old term: fenced off before virsh.
      const late = await execute(ra, [{ vm, from: (await where())[0]!, to: from!, reason: 'test: late' }], routes, opts);
      assert.deepEqual(late, [], 'the deposed leader started nothing');
      assert.equal(await redis.hexists(K.migrating, vm), 0);
    } finally {
      clearInterval(watch);
      clearInterval(copies);
      await Promise.all(looks);
      await lockA.stop();
      await lockB.stop();
      ra.disconnect();
      rb.disconnect();
    }
    assert.equal(both, 0, 'never two leaders at once');
    assert.ok(migratingAtOnce <= 1, `at most one migration at once (saw ${migratingAtOnce})`);
  });
});
