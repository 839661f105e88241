// The manager's reactions to hypervisor events, measured on a lab. Not in CI
// (about 5 minutes). Run as root after setup, with nothing else heavy running:
//   node dist/test/bench/events.js [starts] [--write-docs]
// (--write-docs: docs/measurements.md block `events`, README block `events-summary`).
//
// Lab: 2 sites x 2 hosts, 5 s periods, eBPF; vm1 (a1), vm2 (b1) and vm3 (b2)
// talking, vm2 and vm3 apart by host. A manager with --apply whose rounds are
// 2 minutes apart, so that what moves before is the events' doing. Measured,
// each from the event's own time to the migration's start (history):
// - a VM started away from where a rule sends it (its `started` hook), `starts` times;
// - a host marked draining (the mark);
// - a VM started while the drain's migration runs (it must not wait for it);
// - a host whose agent is killed: from the moment its silence reaches
//   manager.evacuateSilent (20 s here) to its first VM's migration.
import { Redis } from 'ioredis';
import { configureLogging } from '../../src/util/log.js';
import { Registry } from '../../src/collector/registry.js';
import { agentPaths, labRedisUrl, labRoutes, startAgent } from '../../src/lab/agents.js';
import { labEnvironment } from '../../src/lab/environment.js';
import { labDown, labUp } from '../../src/lab/lab.js';
import type { LabState } from '../../src/lab/state.js';
import { domainName, hosts } from '../../src/lab/topology.js';
import { addVm } from '../../src/lab/vm.js';
import { readHistory, readRunning, type MigrationRecord } from '../../src/manager/history.js';
import { LeaderLock } from '../../src/manager/lock.js';
import { DEFAULT_MANAGER, Manager } from '../../src/manager/manager.js';
import { parseEnvironment } from '../../src/placement/index.js';
import { sleep, waitFor } from '../../src/util/exec.js';
import { livePid } from '../../src/util/process.js';
import { startedAt } from '../helpers/lab.js';
import { uniqueName } from '../helpers/names.js';
import { benchArgs, maybeWriteBlock, README } from './doc.js';

const { writeDocs, args } = benchArgs();
const STARTS = Number(args[0] ?? 3);
const PERIOD = 5;
const SILENT_MS = 20_000;
const name = uniqueName('e');
const log = (s: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);

// The manager's JSON log lines are not for this table: warnings and errors only.
configureLogging({ to: 'stderr', pretty: true, level: 'warn' });
let lab: LabState | undefined;
let redis: Redis | undefined;
let manager: Manager | undefined;
try {
  lab = await labUp({ name, sites: 2, hostsPerSite: 2, delayMs: 10, rateMbit: 1000, periodSeconds: PERIOD, sensor: 'ebpf' });
  const l = lab;
  const dom = (vm: string) => domainName(l, vm);
  for (const [vm, host, index] of [
    ['vm1', 'a1', 1],
    ['vm2', 'b1', 2],
    ['vm3', 'b2', 3],
  ] as const) {
    await addVm(l.name, { name: vm, host, index, pattern: 'all', cluster: 3, rate: 20, size: 256, memoryMiB: 128, wait: true });
  }
  const r = new Redis(labRedisUrl(l), { maxRetriesPerRequest: null });
  redis = r;
  r.on('error', () => undefined);
  // The started VMs: s1, s2, ... must run on b1; d1 starts during the drain of b2 and must run on b1 too.
  const starts = Array.from({ length: STARTS }, (_, i) => ({ vm: `s${i + 1}`, index: 10 + i, to: 'b1' }));
  const m = new Manager(
    r,
    {
      ...DEFAULT_MANAGER,
      apply: true,
      everyPeriods: 24,
      span: 2,
      confirmRounds: 1,
      evacuateSilentMs: SILENT_MS,
      env: parseEnvironment(labEnvironment(l), 'lab'),
      ...labRoutes(l),
      rules: [
        { name: 'replicas', apart: [dom('vm2'), dom('vm3')], scope: 'host' },
        ...starts.map((s) => ({ name: `home-${s.vm}`, vms: [dom(s.vm)], must: { host: s.to } })),
        { name: 'home-d1', vms: [dom('d1')], must: { host: 'b1' } },
      ],
      rulesFile: 'bench',
    },
    new LeaderLock(r, 10_000),
  );
  manager = m;
  m.start();
  await waitFor('the manager to lead', async () => (m.lock.isLeader ? true : undefined), 15_000);
  await sleep(2 * PERIOD * 1000);

  const hookAt = async (host: string, vm: string) => {
    const at = await startedAt(r, host, dom(vm));
    if (at === undefined) throw new Error(`no started event of ${vm} on ${host}`);
    return at;
  };
  const moved = (vm: string, since: number) =>
    waitFor(`${vm} migrated by the manager`, async () => (await readHistory(r, 50, dom(vm))).find((h) => h.manager === m.lock.id && h.at >= since && h.outcome === 'ok'), 60_000, 100);

  // 1. VMs started away from where their rule sends them.
  const startMs: number[] = [];
  for (const s of starts) {
    const from = s.vm.endsWith('1') ? 'a2' : 'a1';
    await addVm(l.name, { name: s.vm, host: from, index: s.index, pattern: 'idle', cluster: s.index, rate: 1, size: 64, memoryMiB: 128, wait: false });
    const rec = await moved(s.vm, 0);
    const ms = rec.at - (await hookAt(from, s.vm));
    startMs.push(ms);
    log(`${s.vm} started on ${from}: migration to ${rec.to} started ${ms} ms after its hook; whole move ${rec.seconds.toFixed(1)} s`);
    await sleep(2000);
  }

  // 2. A drain, and 3. a VM started while the drain's first migration runs.
  const drained = 'b2';
  const drainAt = Date.now();
  await new Registry(r).setDraining(drained, true);
  const first = await waitFor('the drain to start migrating', async () => (await readRunning(r)).find((x) => x.from === drained), 30_000, 20);
  const drainMs = first.at - drainAt;
  log(`${drained} marked draining: ${first.vm} -> ${first.to} started ${drainMs} ms later`);
  const dFrom = hosts(l).find((h) => ![first.from, first.to, 'b1'].includes(h.name))!.name;
  await addVm(l.name, { name: 'd1', host: dFrom, index: 20, pattern: 'idle', cluster: 20, rate: 1, size: 64, memoryMiB: 128, wait: false });
  const d1 = await moved('d1', drainAt);
  const duringMs = d1.at - (await hookAt(dFrom, 'd1'));
  const drainRec = await waitFor('the drain migration recorded', async () => (await readHistory(r, 50, first.vm)).find((h) => h.at === first.at), 120_000, 200);
  const overlapped = d1.at < drainRec.at + drainRec.seconds * 1000;
  log(`d1 started on ${dFrom} during the drain: migration started ${duringMs} ms after its hook; the drain's ${first.vm} still migrating then: ${overlapped}`);
  await waitFor(`${drained} empty`, async () => ((await new Registry(r).vms()).some((v) => v.host === drained && v.state === 'running') ? undefined : true), 120_000, 500);
  await new Registry(r).setDraining(drained, false);

  // 4. A host whose agent dies: its VMs leave once its silence reaches evacuateSilent.
  const victim = (await new Registry(r).vms()).find((v) => v.state === 'running' && v.name === dom('vm1'))!.host;
  const lastSeen = (await new Registry(r).hosts()).find((h) => h.host === victim)!.lastSeen;
  const pid = (await livePid(agentPaths(l, hosts(l).find((h) => h.name === victim)!).pid))!;
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');
  let evac: MigrationRecord;
  try {
    evac = await waitFor('an evacuation of the silent host', async () => (await readHistory(r, 50)).find((h) => h.from === victim && h.at > killedAt), 120_000, 100);
  } finally {
    await startAgent(l, hosts(l).find((h) => h.name === victim)!);
  }
  // From its last heartbeat read just before the kill (one may land after it: this errs long, by at most a heartbeat).
  const silentMs = evac.at - (lastSeen + SILENT_MS);
  log(
    `agent of ${victim} killed: ${evac.vm} -> ${evac.to} started ${((evac.at - killedAt) / 1000).toFixed(1)} s after the kill, ${silentMs} ms after its silence reached ${SILENT_MS / 1000} s (${evac.outcome})`,
  );

  const sorted = [...startMs].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  const table = [
    `Event reactions on a 2 x 2 lab (5 s periods, eBPF, TCG guests of 128 MiB, rounds 2 min apart, \`node dist/test/bench/events.js ${STARTS}\`); each from the event to the migration's start in history.`,
    '',
    '| event | event to migration started | target |',
    '|---|---|---|',
    `| a VM started away from where its rule sends it (${STARTS} starts) | median ${median} ms (${sorted[0]}-${sorted.at(-1)} ms) | 2 s |`,
    `| a host marked draining | ${drainMs} ms (checked every second) | |`,
    `| a VM started while the drain's migration runs | ${duringMs} ms; the drain's migration still running then: ${overlapped ? 'yes' : 'no'} | 2 s |`,
    `| a host's agent killed (manager.evacuateSilent ${SILENT_MS / 1000} s) | ${silentMs} ms after the silence reached ${SILENT_MS / 1000} s (${((evac.at - killedAt) / 1000).toFixed(1)} s after the kill); outcome ${evac.outcome} | |`,
  ].join('\n');
  process.stdout.write(`\n${table}\n`);
  await maybeWriteBlock(writeDocs, 'events', table);
  await maybeWriteBlock(
    writeDocs,
    'events-summary',
    `Event reactions on the lab (\`node dist/test/bench/events.js\`): a VM started, its hook to its migration started in ${median} ms (median of ${STARTS}; target 2 s); during a drain's migration ${duringMs} ms; a drain mark ${drainMs} ms; a host silent for manager.evacuateSilent, ${silentMs} ms after.`,
    README,
  );
  if (Math.max(...startMs, duringMs) > 2000 || !overlapped) process.exitCode = 1;
} finally {
  await manager?.stop().catch(() => undefined);
  redis?.disconnect();
  if (lab) await labDown(name).catch((err: Error) => log(`lab down: ${err.message}`));
}
