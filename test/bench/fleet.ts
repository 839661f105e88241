// The fleet simulator (issue 16, part 5): many simulated agents (fleet-agents.ts) publish a
// planted-groups fleet (fleet-gen.ts) each period through the agent's own path into one Redis (and,
// once wired, the 3-shard Cluster); after each period the manager's round runs as the manager runs
// it (readCollector, then decide: groups and plan). Per period it measures:
//  - ingest: period end -> every host's report applied (in the reported set, counted by queries);
//  - Redis memory the period added, per pair;
//  - the weighted query alone, as the manager asks it (span and coefficient of its defaults);
//  - plan: decide() on the round's view (groups + plan), the function the manager calls;
//  - period end -> plan ready: ingest, the agents' trim and materialise, the round's read, decide.
// The clock is simulated (periods of 30 s one after the other, no waiting); the times are real.
// The reports are generated before each period's end (the sensors' read is measured by the sensor
// bench); from the end on, each agent spools its report (its own disk: /dev/shm here) and sends it.
//   node dist/test/bench/fleet.js [VMS...] [--periods N] [--zset-periods N] [--budget-min M] [--manager-heap-mb N] [--cluster] [--write-docs]
//   (default sizes 10000 50000, and 100000 when the machine's memory allows it; blocks `fleet` of
//   docs/measurements.md and `fleet-summary` of README.md)
import { availableParallelism, freemem, loadavg } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import type { Redis } from 'ioredis';
import { completeness } from '../../src/collector/complete.js';
import { K } from '../../src/collector/keys.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { benchArgs, maybeWriteBlock, README } from './doc.js';
import { churn, type Fleet, hostReport, PEERS, plantFleet } from './fleet-gen.js';
import { clusterTarget, type RedisTarget, type SimAgent, singleRedis, startAgents } from './fleet-agents.js';
import { ManagerThread, type RoundResult } from './fleet-round.js';
import { fitLine, type SizeResult, summaryBlock, tableBlock, targetsBlock } from './fleet-report.js';

const L = 30;
/** 2026-11-02T00:00:00Z: the simulated fleet's first period. */
const T0 = 1_793_577_600;
const VMS_PER_HOST = 50;
const SITES = 4;
const cfg = DEFAULT_MANAGER;
/** The manager's query needs `span` periods in Redis: the first round comes after the span's last. */
const SPAN = Number(cfg.span);

const { writeDocs, args } = benchArgs();
const flag = (name: string) => args.includes(name);
const option = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : undefined;
};
const MEASURED = option('--periods') ?? 3;
/** Minutes one run may take on this shared machine (the heavy lock is held throughout): a size that would overrun it is not started. */
const BUDGET_MIN = option('--budget-min') ?? 10;
const cluster = flag('--cluster');
/** The manager thread's heap limit in MiB (`--manager-heap-mb`; Node's default otherwise). */
const MANAGER_HEAP_MB = option('--manager-heap-mb');
/** The agents' agent.zsetPeriods (default: theirs, 5): `--zset-periods 0` publishes without the readable zsets. */
const ZSET_PERIODS = option('--zset-periods');
if (writeDocs && ZSET_PERIODS !== undefined) throw new Error("--write-docs writes the blocks with the agents' defaults: run --zset-periods without it");
const sizes = args.filter((a, i) => /^\d+$/.test(a) && !['--periods', '--budget-min', '--zset-periods', '--manager-heap-mb'].includes(args[i - 1] ?? '')).map(Number);
const asked = sizes.length > 0;
if (!asked) sizes.push(10_000, 50_000);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const say = (s: string) => process.stderr.write(`${s}\n`);

interface Period {
  ingestMs: number;
  flushedMs: number;
  redisCpuS: number;
  addedBytes: number;
  pairs: number;
  round?: RoundResult;
}

/** Each agent's report of the period, spooled and sent at once: the period's end is t0. */
async function ingest(agents: SimAgent[], f: Fleet, period: number): Promise<{ t0: number; ingestMs: number; flushedMs: number; pairs: number }> {
  const reports = f.hosts.map((h) => hostReport(f, h, period, L));
  const pairs = reports.reduce((n, r) => n + r.pairs.length, 0);
  const t0 = performance.now();
  await Promise.all(agents.map((a, i) => a.publish(reports[i]!)));
  const flushedMs = performance.now() - t0;
  const ingestMs = Math.max(...agents.map((a) => a.appliedAt)) - t0;
  return { t0, ingestMs, flushedMs, pairs };
}

async function runSize(vms: number, target: RedisTarget): Promise<SizeResult> {
  const g0 = performance.now();
  let heapBytes = 0;
  const f = plantFleet({ vms, vmsPerHost: VMS_PER_HOST, sites: SITES, seed: vms });
  say(`${vms} VMs: ${f.hosts.length} hosts on ${SITES} sites, ${f.groups} planted groups (${((performance.now() - g0) / 1000).toFixed(1)} s to generate)`);
  const { agents, stop } = await startAgents(target, f, ZSET_PERIODS);
  const manager = target.connect();
  const thread = new ManagerThread(target.spec, MANAGER_HEAP_MB);
  try {
    await Promise.all(agents.map((a) => a.register(f, T0 * 1000, true)));
    const periods: Period[] = [];
    let before = await target.memory();
    for (let i = 0; i < SPAN + MEASURED - 1; i++) {
      const period = T0 + i * L;
      const end = (period + L) * 1000;
      if (i) churn(f);
      await Promise.all(agents.map((a) => a.register(f, end - 1000, false))); // the heartbeats of the period
      const cpu0 = await target.cpuSeconds();
      const { t0, ingestMs, flushedMs, pairs } = await ingest(agents, f, period);
      const redisCpuS = (await target.cpuSeconds()) - cpu0;
      const p: Period = { ingestMs, flushedMs, redisCpuS, addedBytes: 0, pairs };
      const done = await completeness(manager, [period], L, 2 * L * 1000, end + 1000);
      if (done.missing.length) throw new Error(`period ${i}: ${done.missing.length} host(s) missing after every agent sent`);
      if (i >= SPAN - 1) p.round = await thread.round(end + 1000, performance.timeOrigin + t0);
      heapBytes = Math.max(heapBytes, process.memoryUsage().heapUsed + (p.round?.heap ?? 0));
      const after = await target.memory();
      p.addedBytes = after - before;
      before = after;
      periods.push(p);
      const rd = p.round;
      say(
        `  period ${i + 1}: ${pairs} pairs, ingest ${ingestMs.toFixed(0)} ms (all flushed ${flushedMs.toFixed(0)} ms, Redis CPU ${redisCpuS.toFixed(1)} s, flushes sent again after a replica wait timed out so far: ${agents.reduce((n, a) => n + a.retries, 0)}), +${(p.addedBytes / pairs).toFixed(0)} B/pair` +
          (rd
            ? `; read ${rd.readMs.toFixed(0)} ms, plan ${rd.planMs.toFixed(0)} ms (garbage collection in read and plan ${rd.gcMs.toFixed(0)} ms), end to end ${rd.endToEndMs.toFixed(0)} ms, query ${rd.queryMs.toFixed(0)} ms, ${rd.groups} groups, ${rd.moves} moves`
            : ''),
      );
    }
    const measured = periods.slice(SPAN - 1);
    const rounds = measured.map((p) => p.round!);
    const packed = await packedBytes(manager, f, T0 + (periods.length - 1) * L);
    return {
      vms,
      hosts: f.hosts.length,
      groups: f.groups,
      pairs: median(measured.map((p) => p.pairs)),
      firstIngestMs: periods[0]!.ingestMs,
      ingestMs: median(measured.map((p) => p.ingestMs)),
      redisCpuS: median(measured.map((p) => p.redisCpuS)),
      bytesPerPair: median(measured.map((p) => p.addedBytes / p.pairs)),
      packedPerPair: packed / measured.at(-1)!.pairs,
      queryMs: median(rounds.map((r) => r.queryMs)),
      readMs: median(rounds.map((r) => r.readMs)),
      planMs: median(rounds.map((r) => r.planMs)),
      endToEndMs: median(rounds.map((r) => r.endToEndMs)),
      moves: median(rounds.map((r) => r.moves)),
      planGroups: median(rounds.map((r) => r.groups)),
      redisBytes: before,
      heapBytes,
      wallMs: performance.now() - g0,
      periods: periods.length,
    };
  } finally {
    await thread.stop();
    manager.disconnect();
    await stop();
  }
}

/** MEMORY USAGE of the period's packed reports, summed. */
async function packedBytes(redis: Redis, f: Fleet, period: number): Promise<number> {
  const tx = redis.pipeline();
  for (const h of f.hosts) tx.call('MEMORY', 'USAGE', K.hostPairs(period, h.name), 'SAMPLES', '0');
  return ((await tx.exec()) ?? []).reduce((s, [, v]) => s + Number(v ?? 0), 0);
}

/**
 * Whether the machine holds `vms`: Redis' memory scaled from the largest size run (bytes over the
 * same number of periods), the bench's heap (the fleet, the round's view and plan) scaled against
 * Node's heap limit, and the run time scaled against what is left of the budget.
 */
function fits(vms: number, done: SizeResult[], elapsedMs: number): { ok: boolean; why: string } {
  const big = done.at(-1);
  if (!big) return { ok: true, why: '' };
  const scale = vms / big.vms;
  const GiB = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  const redis = big.redisBytes * scale;
  const heap = big.heapBytes * scale;
  const limit = getHeapStatistics().heap_size_limit;
  const free = freemem();
  const minutes = (big.wallMs * scale) / 60_000;
  const left = BUDGET_MIN - elapsedMs / 60_000;
  const why =
    `scaled from ${big.vms.toLocaleString('en')} VMs: Redis about ${GiB(redis)} for ${big.periods} periods (${GiB(free)} free), ` +
    `the bench's heap about ${GiB(heap)} (Node's limit ${GiB(limit)}), about ${minutes.toFixed(0)} min to run (${Math.max(0, left).toFixed(0)} min left of the ${BUDGET_MIN}-minute budget of a run on this shared 2-CPU machine)`;
  return { ok: redis + heap < 0.8 * free && heap < 0.8 * limit && minutes < left, why };
}

async function main(): Promise<void> {
  const makeTarget = cluster ? clusterTarget : singleRedis;
  say(`fleet bench: ${availableParallelism()} CPUs, ${MEASURED} measured periods after ${SPAN - 1} to fill the manager's span of ${SPAN}, ${PEERS} peers per VM`);
  const started = performance.now();
  const load0 = loadavg()[0]!;
  const done: SizeResult[] = [];
  const skipped: string[] = [];
  const all = asked ? sizes : [...sizes, 100_000];
  for (const vms of all) {
    if (!asked && vms === 100_000) {
      const f = fits(vms, done, performance.now() - started);
      say(`${vms.toLocaleString('en')} VMs: ${f.why}`);
      if (!f.ok) {
        skipped.push(`100,000 VMs not run: ${f.why}`);
        continue;
      }
    }
    const target = await makeTarget();
    try {
      done.push(await runSize(vms, target));
    } finally {
      await target.close();
    }
  }
  const name =
    (cluster ? 'the 3-shard Cluster' : 'one Redis') +
    (ZSET_PERIODS === undefined ? '' : `, agent.zsetPeriods ${ZSET_PERIODS}`) +
    (MANAGER_HEAP_MB === undefined ? '' : `, the manager's heap limit ${MANAGER_HEAP_MB} MiB`);
  const fit = fitLine(done);
  const load = `load average ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end (other jobs share the 2 CPUs)`;
  const table = tableBlock(done, name, MEASURED, SPAN, load);
  const targets = targetsBlock(done, fit);
  const block = [table, '', targets, ...(skipped.length ? ['', ...skipped] : [])].join('\n');
  process.stdout.write(`${block}\n`);
  // One Redis and the Cluster each have their blocks: fleet(-summary) and fleet-cluster(-summary).
  const id = cluster ? 'fleet-cluster' : 'fleet';
  await maybeWriteBlock(writeDocs, id, block);
  await maybeWriteBlock(writeDocs, `${id}-summary`, summaryBlock(done, name), README);
}

await main();
