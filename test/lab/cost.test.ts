import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { demoSettings } from '../../src/cli/demo.js';
import { costDemo, costDemoProblems, COST_DEMO, type CostStep } from '../../src/cli/demoCost.js';
import { startGuests } from '../../src/cli/lab.js';
import { labRedisUrl } from '../../src/lab/agents.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabState } from '../../src/lab/state.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER } from '../../src/manager/manager.js';
import { labSensors } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';

// `virt-cohort demo --objective cost` on a real lab (2 sites x 2 hosts, 5 s periods, 4 guests in two
// groups split across the sites), its manager the real one started as the daemon starts: the
// environment is changed four times while it runs, as `env set` changes it.
const sensor = labSensors()[0]!;

describe(`the manager follows prices and a quota (${sensor}) on a lab`, { concurrency: 1 }, () => {
  const name = uniqueName();
  let lab: LabState;
  let redis: Redis;
  let steps: CostStep[] = [];
  const said: string[] = [];

  before(async () => {
    lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit: 1000, periodSeconds: 5, sensor });
    await startGuests(lab, 4, { pattern: 'groups:2', vmRate: 50, vmSize: 256, memory: 128 }, false);
    redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
    const lock = new LeaderLock(redis, DEFAULT_MANAGER.lockTtlMs);
    try {
      steps = await costDemo(
        lab,
        redis,
        lock,
        demoSettings(lab),
        (l) => said.push(l),
        (vm) => vm.replace(`vc-${name}-`, ''),
      );
    } finally {
      await lock.stop();
    }
  });

  after(async () => {
    redis?.disconnect();
    await labDown(name).catch(() => undefined);
  });

  it('gathers on the cheaper site, stays when a saving does not pay back, goes when it does, and leaves before a quota ends', () => {
    const transcript = `\n${said.join('\n')}`;
    assert.deepEqual(costDemoProblems(steps), [], transcript);
    const [gather, slight, cheap, quota] = steps as [CostStep, CostStep, CostStep, CostStep];
    assert.deepEqual(slight.migrations, [], 'b a little cheaper: nothing moves');
    assert.ok(cheap.after! < cheap.before!, `b much cheaper: the cost falls (${cheap.before} -> ${cheap.after})${transcript}`);
    assert.ok(gather.after! <= gather.before!, `gathering on a costs less (${gather.before} -> ${gather.after})`);
    // Every migration was decided under the version that asked for it, and says so in the history.
    for (const s of [cheap, quota]) for (const d of s.migrations) assert.equal(d.envVersion, s.version, `${d.vm} ${d.from} -> ${d.to}`);
    // The change wakes the manager: its first migration follows within the confirmation rounds (5 s each), not a restart.
    assert.ok(cheap.firstMigrationMs! < 30_000, `first migration ${cheap.firstMigrationMs} ms after the change`);
    // The quota: every VM of b left before its end, and none went before the evacuation's start was due.
    assert.ok(quota.spareMs! > 0, `the last VM left ${quota.spareMs} ms before the end${transcript}`);
    assert.ok(quota.migrations.every((d) => d.from.startsWith('b') && d.to.startsWith('a') && d.at < quota.quotaEnd!));
    assert.ok(quota.quotaEnd! - quota.at <= COST_DEMO.quotaMs + 1000);
  });
});
