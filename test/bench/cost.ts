// The manager following the environment, measured on a lab: what `virt-cohort demo --objective cost`
// does, with its figures written down. Not in CI (about 8 minutes; test/lab/cost.test.ts checks the
// same with 4 guests). Run as root after setup, with nothing else heavy running:
//   node dist/test/bench/cost.js [guests] [--write-docs]
// (--write-docs: docs/measurements.md block `cost`, README block `cost-summary`).
//
// Lab: 2 sites x 2 hosts, 20 ms and 1 Gbit/s between them, 10 s periods, eBPF; the guests (8 by
// default, 128 MiB) in two groups split across the sites. Four versions of the environment are
// written while the manager runs (src/cli/demoCost.ts): a cheaper than b; b a little cheaper (the
// saving does not pay back); b much cheaper; b's quota ending in 150 s. For each: the cost per hour
// of the placement when the change came and once settled, the migrations, the time from the change
// to the first one, and for the quota how long before its end the last VM had left.
import { Redis } from 'ioredis';
import { demoSettings } from '../../src/cli/demo.js';
import { costDemo, costDemoProblems, costTable, COST_DEMO } from '../../src/cli/demoCost.js';
import { startGuests } from '../../src/cli/lab.js';
import { labRedisUrl } from '../../src/lab/agents.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER } from '../../src/manager/manager.js';
import { configureLogging } from '../../src/util/log.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock, README } from './doc.js';

const { writeDocs, args } = benchArgs();
const GUESTS = Number(args[0] ?? 8);
const PERIOD = 10;
const name = uniqueName('c');
const log = (s: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
configureLogging({ to: { file: `/tmp/vc-bench-cost-${name}.log` } });

const lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit: 1000, periodSeconds: PERIOD, sensor: 'ebpf' });
let redis: Redis | undefined;
try {
  await startGuests(lab, GUESTS, { pattern: 'groups:2', vmRate: 50, vmSize: 256, memory: 128 }, false);
  redis = new Redis(labRedisUrl(lab), { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  const lock = new LeaderLock(redis, DEFAULT_MANAGER.lockTtlMs);
  const steps = await costDemo(lab, redis, lock, demoSettings(lab), log, (vm) => vm.replace(`vc-${name}-`, ''));
  await lock.stop();
  const problems = costDemoProblems(steps);
  const [gather, slight, cheap, quota] = steps;
  const s = (ms?: number) => (ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`);
  const table = [
    `The manager following the environment on a 2 x 2 lab (\`node dist/test/bench/cost.js ${GUESTS}\`: ${GUESTS} guests of 128 MiB in two groups, 10 s periods, 20 ms and 1 Gbit/s between the sites, rounds every period, 2 confirmation rounds, 1 h horizon, manager.quotaMargin ${COST_DEMO.quotaMarginMs / 1000} s). Money is per hour, in the environment's currency: hosting at the sites' prices per VM-hour and bytes between the sites at ${COST_DEMO.transferPerGB} per GB.`,
    '',
    '```',
    costTable(steps),
    '```',
    '',
    `- Prices a ${COST_DEMO.a} and b ${COST_DEMO.b}: the VMs gathered on a, cost ${gather?.before?.toFixed(3)} -> ${gather?.after?.toFixed(3)} per hour with ${gather?.migrations.length} migrations.`,
    `- b down to ${COST_DEMO.bSlightly}: ${slight?.migrations.length} migrations (a move costs 128 MiB at ${COST_DEMO.transferPerGB} per GB; the saving of ${(COST_DEMO.a - COST_DEMO.bSlightly).toFixed(3)} per VM-hour does not pay it back within the hour).`,
    `- b down to ${COST_DEMO.bCheap}: ${cheap?.migrations.length} migrations, the first ${s(cheap?.firstMigrationMs)} after the change (the new version wakes the manager; a move waits for its confirmation round); cost ${cheap?.before?.toFixed(3)} -> ${cheap?.after?.toFixed(3)} per hour.`,
    `- b's quota ending ${COST_DEMO.quotaMs / 1000} s after it was set: ${quota?.migrations.length} migrations, the first ${s(quota?.firstMigrationMs)} after the change, the last VM off b ${s(quota?.spareMs)} before the end.`,
    `- Verdict: ${problems.length ? `NOT AS EXPECTED: ${problems.join('; ')}` : 'each change followed as it should be'}.`,
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  await maybeWriteBlock(writeDocs, 'cost', table);
  await maybeWriteBlock(
    writeDocs,
    'cost-summary',
    `Measured on the lab (\`node dist/test/bench/cost.js\`, ${GUESTS} guests): cost ${gather?.before?.toFixed(3)} -> ${gather?.after?.toFixed(3)} per hour gathering on the cheaper site; no migration when b's saving did not pay back; b made much cheaper, the first migration ${s(cheap?.firstMigrationMs)} after the change and the cost ${cheap?.before?.toFixed(3)} -> ${cheap?.after?.toFixed(3)} per hour; b's quota ending in ${COST_DEMO.quotaMs / 1000} s, the last VM off b ${s(quota?.spareMs)} before its end.`,
    README,
  );
  if (problems.length) process.exitCode = 1;
} finally {
  redis?.disconnect();
  await labDown(name).catch((err: Error) => log(`lab down: ${err.message}`));
}
