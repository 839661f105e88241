// Collector benchmarks on a private local Redis:
//  - publish one period of 10,000 VMs x 50 peers (500k pair counts) (target <= 2 s), and Redis memory;
//  - a weighted query over 120 periods for 1,000 VMs (target <= 0.5 s).
//   node dist/test/bench/collector.js
import { Redis } from 'ioredis';
import type { Report } from '../../src/collector/report.js';
import { Store } from '../../src/collector/store.js';
import { query } from '../../src/collector/query.js';
import { K } from '../../src/collector/keys.js';
import { TestRedis } from '../helpers/redis.js';

const PERIOD = 30;

function report(host: string, period: number, vms: number, peers: number, offset = 0): Report {
  const pairs: [string, number, number][] = [];
  for (let v = 0; v < vms; v++) {
    for (let k = 1; k <= peers; k++) {
      const msgs = 1 + ((v * 31 + k * 17) % 1000);
      pairs.push([`vm${v + offset}>vm${(v + k * 7) % vms}`, msgs, msgs * 300]);
    }
  }
  return { v: 1, host, site: 's', period, length: PERIOD, from: period * 1000, to: (period + PERIOD) * 1000, pairs, overflow: { packets: 0, bytes: 0 }, unknownTap: 0, vms: [] };
}

async function usedMemory(r: Redis): Promise<number> {
  const info = await r.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const server = await TestRedis.start();
  const redis = new Redis(server.url);
  const store = new Store(redis);
  try {
    // 1. One period, one host, 500k pairs; then the same period from a second host (the merge path).
    const runs: number[] = [];
    let mem = 0;
    for (let i = 0; i < 3; i++) {
      await redis.flushall();
      const before = await usedMemory(redis);
      const r = report('h1', 1_800_000_000 + i * PERIOD, 10_000, 50);
      const t0 = process.hrtime.bigint();
      await store.apply(r);
      runs.push(ms(t0));
      mem = (await usedMemory(redis)) - before;
    }
    const second = report('h2', 1_800_000_000 + 2 * PERIOD, 10_000, 50, 5000);
    let t0 = process.hrtime.bigint();
    await store.apply(second);
    const merge = ms(t0);
    t0 = process.hrtime.bigint();
    const again = await store.apply(second);
    const replay = ms(t0);
    process.stdout.write('| measurement | result | target |\n|---|---|---|\n');
    process.stdout.write(`| publish 10,000 VMs x 50 peers (500k pairs), one host | ${median(runs).toFixed(0)} ms (median of 3) | <= 2000 ms |\n`);
    process.stdout.write(`| Redis memory for that period (pairs in the period set and the host's own set) | ${(mem / 2 ** 20).toFixed(0)} MiB | |\n`);
    process.stdout.write(`| a second host's 500k pairs merged into the same period | ${merge.toFixed(0)} ms | |\n`);
    process.stdout.write(`| the same report re-sent (applied: ${again}) | ${replay.toFixed(0)} ms | counts once |\n`);

    // 2. 120 periods of 1,000 VMs x 10 peers, from 4 hosts; one weighted query over all of them.
    await redis.flushall();
    const now = Date.now();
    const newest = Math.floor(now / 1000 / PERIOD) * PERIOD - PERIOD;
    const hosts = ['h1', 'h2', 'h3', 'h4'];
    for (const h of hosts) await store.registerHost(h, { site: 's', uri: 'x', cpus: 8, memoryKiB: 1, freeMemoryKiB: 1, vms: 250, sensor: 'ebpf', periodSeconds: PERIOD }, now);
    for (let p = 0; p < 120; p++) {
      for (const [i, h] of hosts.entries()) {
        const r = report(h, newest - p * PERIOD, 250, 10, i * 250);
        await store.apply(r);
      }
    }
    const times: number[] = [];
    let pairs = 0;
    for (let i = 0; i < 5; i++) {
      t0 = process.hrtime.bigint();
      const a = await query(redis, { type: 'weighted', coefficient: 2, span: 120, maxWaitMs: 0, approx: false, now });
      times.push(ms(t0));
      if (a.status !== 'ok') throw new Error(`query answered ${a.status}: ${JSON.stringify(a).slice(0, 300)}`);
      pairs = a.type === 'detail' ? 0 : a.pairs.length;
    }
    process.stdout.write(`| weighted query, 120 periods x 1,000 VMs x 10 peers (1.2M counts), ${pairs} pairs out | ${median(times).toFixed(0)} ms (median of 5) | <= 500 ms |\n`);
    process.stdout.write(`| Redis memory for those 120 periods | ${((await usedMemory(redis)) / 2 ** 20).toFixed(0)} MiB | |\n`);
    void K;
  } finally {
    redis.disconnect();
    await server.close();
  }
}

await main();
