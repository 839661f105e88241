/**
 * The fleet bench's manager (test/bench/fleet.ts): its round after each period, in a worker thread of
 * its own, as the manager daemon runs it in a process of its own. A worker has its own V8 heap and
 * garbage collector, so the round's collections scan the manager's heap (its view, its plan), not
 * the simulated fleet's and its 1,000 agents' spools beside it: in the bench's own thread, at 50,000
 * VMs, those made the round's read and plan pay for garbage that was not theirs.
 *
 * It connects as the manager does (connectDaemon, with the Cluster's or Sentinel's settings), reads
 * as the manager's round does (readCollector), decides (decide), then times the weighted query alone.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import type { Redis } from 'ioredis';
import { query } from '../../src/collector/query.js';
import { connectDaemon } from '../../src/config/redis.js';
import type { RedisAuth } from '../../src/config/schema.js';
import { DEFAULT_MANAGER } from '../../src/manager/config.js';
import { decide } from '../../src/manager/decide.js';
import { DEFAULT_BANDWIDTH_MBIT, DEFAULT_LATENCY_MS, readCollector, rulesOf } from '../../src/placement/fromCollector.js';

/** How the manager reaches Redis: what connectDaemon takes. */
export interface RedisSpec {
  url: string;
  auth?: RedisAuth;
}

export interface RoundResult {
  readMs: number;
  planMs: number;
  /** From the period's end (t0) to the plan ready. */
  endToEndMs: number;
  queryMs: number;
  groups: number;
  moves: number;
  pairsRead: number;
  /** The manager's heap with the view and the decision still held (bytes). */
  heap: number;
  /** Garbage collection in the manager's thread during the read and decide (PerformanceObserver 'gc' entries). */
  gcMs: number;
}

/** Wall-clock milliseconds that mean the same in every thread (performance.now() starts at each thread's own origin). */
export const wallMs = () => performance.timeOrigin + performance.now();

const cfg = DEFAULT_MANAGER;

/** The thread's collections so far (ms), from a 'gc' observer. */
let gcTotal = 0;

async function round(redis: Redis, now: number, t0: number): Promise<RoundResult> {
  const gc0 = gcTotal;
  const r0 = performance.now();
  const view = await readCollector(redis, {
    query: { type: 'weighted', span: cfg.span, coefficient: cfg.coefficient, maxWaitMs: cfg.maxWaitMs, approx: true },
    defaults: { latencyMs: DEFAULT_LATENCY_MS, bandwidthMbit: DEFAULT_BANDWIDTH_MBIT, cpuOvercommit: cfg.cpuOvercommit, reserveMemoryMiB: cfg.reserveMemory },
    now,
  });
  if (view.answer.status !== 'ok') throw new Error(`the round's query was handed back: ${view.answer.reason}`);
  if (view.answer.approximate) throw new Error(`the round's answer estimated ${view.answer.estimated.length} host-period(s): ingest was not complete`);
  const r1 = performance.now();
  const d = decide({
    view,
    settings: cfg,
    streak: new Map(),
    cooldowns: new Map(),
    closed: new Map(),
    now,
    rules: rulesOf(view, { rules: cfg.rules ?? [], exclude: cfg.exclude }).rules,
  });
  const r2 = performance.now();
  const done = wallMs();
  await new Promise((resolve) => setImmediate(resolve)); // the observer is told of the round's last collections
  const gcMs = gcTotal - gc0;
  const heap = process.memoryUsage().heapUsed; // the view and the decision still held
  // The weighted query alone, as the round asked it (now that it has run once, its answer is the same).
  const q0 = performance.now();
  const q = await query(redis, { type: 'weighted', span: cfg.span, coefficient: cfg.coefficient, now });
  const queryMs = performance.now() - q0;
  if (q.status !== 'ok') throw new Error('the weighted query was handed back');
  return { readMs: r1 - r0, planMs: r2 - r1, endToEndMs: done - t0, queryMs, groups: d.groups.length, moves: d.plan?.moves.length ?? 0, pairsRead: view.traffic.length, heap, gcMs };
}

/** The manager's thread, started once per size; `round` asks it for one round and waits for the answer. */
export class ManagerThread {
  private readonly worker: Worker;
  private waiting?: { resolve: (r: RoundResult) => void; reject: (e: Error) => void };

  /** `heapMb`: the thread's old-generation limit (Node's default when undefined), as `--max-old-space-size` sets a daemon's. */
  constructor(spec: RedisSpec, heapMb?: number) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: spec, ...(heapMb && { resourceLimits: { maxOldGenerationSizeMb: heapMb } }) });
    this.worker.on('message', (m: { result?: RoundResult; error?: string }) => {
      const w = this.waiting;
      this.waiting = undefined;
      if (m.error !== undefined) w?.reject(new Error(`the manager's round: ${m.error}`));
      else w?.resolve(m.result!);
    });
    this.worker.on('error', (err) => this.waiting?.reject(err));
    this.worker.on('exit', (code) => this.waiting?.reject(new Error(`the manager's thread exited (${code})`)));
  }

  /** `now`: the simulated clock; `t0`: the period's end, as wallMs(). */
  round(now: number, t0: number): Promise<RoundResult> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.worker.postMessage({ now, t0 });
    });
  }

  async stop(): Promise<void> {
    this.worker.postMessage({ stop: true });
    await this.worker.terminate();
  }
}

if (!isMainThread && parentPort) {
  const port = parentPort;
  const spec = workerData as RedisSpec;
  const redis = connectDaemon(spec.url, spec.auth);
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcTotal += e.duration;
  }).observe({ entryTypes: ['gc'] });
  port.on('message', (m: { now?: number; t0?: number; stop?: boolean }) => {
    if (m.stop) {
      redis.disconnect();
      return;
    }
    round(redis, m.now!, m.t0!).then(
      (result) => port.postMessage({ result }),
      (err: Error) => port.postMessage({ error: err.stack ?? err.message }),
    );
  });
}
