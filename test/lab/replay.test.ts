import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { demoSettings } from '../../src/cli/demo.js';
import { startGuests } from '../../src/cli/lab.js';
import { labRedisUrl } from '../../src/lab/agents.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabState } from '../../src/lab/state.js';
import type { Decision } from '../../src/manager/decide.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { Manager, type Round } from '../../src/manager/manager.js';
import { readTrace } from '../../src/replay/read.js';
import { replay } from '../../src/replay/replay.js';
import { run, sleep } from '../../src/util/exec.js';
import { msToNextBoundary } from '../../src/util/period.js';
import { labSensors } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';

// The same code as live: the demo's lab and manager (2 sites x 2 hosts, 8 guests
// in two groups spread over the sites, a round every period over 2 periods,
// migrations applied), three live rounds; then `virt-cohort record` from the
// period the first round read, and a replay of that trace with the manager's
// settings: its first two decisions are exactly the live rounds' plans, and its
// second round orders exactly the moves the live manager made.
const PERIOD = 5;
const CLI = new URL('../../src/cli/main.js', import.meta.url).pathname;
/** Set to a path to keep the recorded trace there (how test/fixtures/lab-demo.trace.gz was made). */
const KEEP = process.env.VIRT_COHORT_KEEP_TRACE;

describe(`replay of a live lab (${labSensors()[0]})`, { concurrency: 1 }, () => {
  const name = uniqueName();
  let lab: LabState;
  let redis: Redis;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vc-replay-'));
    lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit: 1000, periodSeconds: PERIOD, sensor: labSensors()[0]! });
    await startGuests(lab, 8, { pattern: 'groups:2', vmRate: 50, vmSize: 256, memory: 128 }, false);
    redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
    redis.on('error', () => undefined);
  });
  after(async () => {
    redis?.disconnect();
    await labDown(name);
    await rm(dir, { recursive: true, force: true });
  });

  it("replays the first rounds into exactly the live manager's plans and moves", async () => {
    const settings = demoSettings(lab);
    const lock = new LeaderLock(redis, 10_000);
    const manager = new Manager(redis, settings, lock);
    // Two full periods of traffic before the first round, as the demo.
    await sleep(msToNextBoundary(Date.now(), PERIOD) + 2 * PERIOD * 1000);
    const live: Round[] = [];
    try {
      while (live.filter((r) => r.plan).length < 3) {
        await sleep(msToNextBoundary(Date.now(), PERIOD) + settings.settleMs);
        live.push(await manager.round());
        assert.ok(live.length < 8, `three rounds with a plan within 8: ${live.map((r) => r.note).join(' | ')}`);
      }
    } finally {
      await lock.stop();
    }
    const planned = live.filter((r) => r.plan);
    assert.ok(planned[1]!.moves.length > 0 && planned[1]!.done.length > 0, `the second round moved VMs: ${JSON.stringify(planned[1]!.skipped)}`);
    const answer = planned[0]!.view!.answer;
    assert.equal(answer.status, 'ok');
    const firstRead = answer.periods[0]! * 1000;
    const roundAt = (r: Round) => (r.view!.answer.periods.at(-1)! + PERIOD) as number;

    const file = join(dir, 'lab.trace.gz');
    await run(process.execPath, [CLI, 'record', '--lab', name, '--no-config', '--from', new Date(firstRead).toISOString(), '--out', file]);
    if (KEEP) await copyFile(file, KEEP);
    const tr = await readTrace(file);
    assert.equal(tr.periods[0]!.start * 1000, firstRead, 'the trace starts with the first period the first round read');
    assert.ok(tr.migrations.length >= planned[1]!.done.length, 'the live migrations are in the trace');

    const decisions = new Map<number, Decision>();
    replay(tr, settings, { onDecision: (t, d) => decisions.set(t, d) });
    for (const [k, r] of planned.slice(0, 2).entries()) {
      const d = decisions.get(roundAt(r));
      assert.ok(d, `the replay decided at the time of live round ${k + 1} (${roundAt(r)}; it decided at ${[...decisions.keys()].join(', ')})`);
      assert.deepEqual(d.plan, r.plan, `round ${k + 1}: the replay's plan is the live one`);
    }
    assert.deepEqual(decisions.get(roundAt(planned[1]!))!.orders, planned[1]!.moves, 'the replay orders the moves the live manager made');
  });
});
