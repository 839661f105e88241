// Collector benchmarks on a private local Redis, side by side with the numbers measured before the packed
// reports (HEAD 0a59b75: per-pair sorted sets written in the report's transaction, queries read the zsets):
//  - publish one period of 10,000 VMs x 50 peers (500k pair counts) (target <= 2 s), and Redis memory;
//  - a weighted query over 120 periods for 1,000 VMs (target <= 0.5 s).
//   node dist/test/bench/collector.js [--write-docs]   (--write-docs: also into docs/measurements.md, block `collector`)
import { Redis } from 'ioredis';
import type { Report } from '../../src/collector/report.js';
import { Registry } from '../../src/collector/registry.js';
import { Store } from '../../src/collector/store.js';
import { query } from '../../src/collector/query.js';
import { K } from '../../src/collector/keys.js';
import { TestRedis } from '../helpers/redis.js';
import { benchArgs, maybeWriteBlock } from './doc.js';

const PERIOD = 30;
const { writeDocs } = benchArgs();

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
async function keyMemory(r: Redis, ...keys: string[]): Promise<number> {
  let sum = 0;
  for (const k of keys) sum += Number((await r.call('MEMORY', 'USAGE', k, 'SAMPLES', '0')) ?? 0);
  return sum;
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

/** Before: measured on this machine at HEAD 0a59b75 (the caller's numbers). */
const BEFORE = { publish: '3.7 s (zsets included)', merge: '12.8 s', query: '5.3 s', memory: '209 MiB' };

interface Publish {
  queryable: number;
  zsets: number;
}

async function publish(store: Store, r: Report): Promise<Publish> {
  const t0 = process.hrtime.bigint();
  await store.apply(r);
  const queryable = ms(t0);
  await store.materialise({ host: r.host, period: r.period });
  return { queryable, zsets: ms(t0) };
}

async function main(): Promise<void> {
  const server = await TestRedis.start();
  const redis = new Redis(server.url);
  try {
    const rows: [string, string, string, string][] = [];
    const row = (what: string, before: string, after: string, target = '') => rows.push([what, before, after, target]);
    const fmt = (p: Publish) => `queryable after ${p.queryable.toFixed(0)} ms; sorted sets ready after ${p.zsets.toFixed(0)} ms`;
    const med = (ps: Publish[]): Publish => ({ queryable: median(ps.map((p) => p.queryable)), zsets: median(ps.map((p) => p.zsets)) });

    // 1. One period, one host, 500k pairs: into an empty Redis (the pair dictionary learns all 500k members),
    //    then as a steady agent does (its members known: the next periods).
    const cold: Publish[] = [];
    const steady: Publish[] = [];
    let mem = 0;
    let parts = { blob: 0, zsets: 0, dict: 0 };
    const p0 = 1_800_000_000;
    for (let i = 0; i < 3; i++) {
      await redis.flushall();
      const store = new Store(redis);
      const before = await usedMemory(redis);
      cold.push(await publish(store, report('h1', p0, 10_000, 50)));
      mem = (await usedMemory(redis)) - before;
      parts = {
        blob: await keyMemory(redis, K.hostPairs(p0, 'h1')),
        zsets: await keyMemory(redis, K.hostMsgs(p0, 'h1'), K.hostBytes(p0, 'h1')),
        dict: await keyMemory(redis, K.pairIds, K.pairNames),
      };
      steady.push(await publish(store, report('h1', p0 + (i + 1) * PERIOD, 10_000, 50)));
    }
    const store = new Store(redis);
    const warm = await publish(store, report('h2', p0 + 10 * PERIOD, 10_000, 50, 5000)); // fills h2's cache
    const second = report('h2', p0 + PERIOD, 10_000, 50, 5000); // half its members are h1's too
    const merge = await publish(store, second);
    let t0 = process.hrtime.bigint();
    const again = await store.apply(second);
    const replay = ms(t0);
    void warm;
    row('publish 10,000 VMs x 50 peers (500k pairs), one host, steady agent (members known), median of 3', BEFORE.publish, fmt(med(steady)), '<= 2000 ms');
    row('the same into an empty Redis (the dictionary learns 500k members), median of 3', BEFORE.publish, fmt(med(cold)), '');
    row(
      'Redis memory for that period',
      BEFORE.memory,
      `${MiB(mem)}: packed report ${MiB(parts.blob)}, msgs+bytes zsets ${MiB(parts.zsets)}, pair dictionary ${MiB(parts.dict)} (kept across periods)`,
      '',
    );
    row("a second host's 500k pairs merged into the same period", BEFORE.merge, fmt(merge), '');
    row(`the same report re-sent (applied: ${again})`, '', `${replay.toFixed(0)} ms`, 'counts once');

    // 2. 120 periods of 1,000 VMs x 10 peers, from 4 hosts; one weighted query over all of them.
    await redis.flushall();
    const now = Date.now();
    const newest = Math.floor(now / 1000 / PERIOD) * PERIOD - PERIOD;
    const hosts = ['h1', 'h2', 'h3', 'h4'];
    for (const h of hosts) await new Registry(redis).registerHost(h, { site: 's', uri: 'x', cpus: 8, memoryKiB: 1, freeMemoryKiB: 1, vms: 250, sensor: 'ebpf', periodSeconds: PERIOD }, now);
    for (let p = 0; p < 120; p++) {
      for (const [i, h] of hosts.entries()) await store.apply(report(h, newest - p * PERIOD, 250, 10, i * 250));
    }
    const times: number[] = [];
    let pairs = 0;
    const fresh = new Redis(server.url); // a new connection: nothing cached, as a CLI's `stats` does
    t0 = process.hrtime.bigint();
    const first = await query(fresh, { type: 'weighted', coefficient: 2, span: 120, maxWaitMs: 0, approx: false, now });
    const firstMs = ms(t0);
    fresh.disconnect();
    if (first.status !== 'ok') throw new Error(`query answered ${first.status}: ${JSON.stringify(first).slice(0, 300)}`);
    for (let i = 0; i < 5; i++) {
      t0 = process.hrtime.bigint();
      const a = await query(redis, { type: 'weighted', coefficient: 2, span: 120, maxWaitMs: 0, approx: false, now });
      times.push(ms(t0));
      if (a.status !== 'ok') throw new Error(`query answered ${a.status}: ${JSON.stringify(a).slice(0, 300)}`);
      pairs = a.type === 'detail' ? 0 : a.pairs.length;
    }
    row(`weighted query, 120 periods x 1,000 VMs x 10 peers (1.2M counts), ${pairs} pairs out, median of 5`, BEFORE.query, `${median(times).toFixed(0)} ms`, '<= 500 ms');
    row('the same, first query on a new connection (pair names not yet cached)', '', `${firstMs.toFixed(0)} ms`, '<= 500 ms');
    row('Redis memory for those 120 periods', '', MiB(await usedMemory(redis)), '');

    const block = ['| measurement | before | now | target |', '|---|---|---|---|', ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
    process.stdout.write(`${block}\n`);
    await maybeWriteBlock(writeDocs, 'collector', block);
  } finally {
    redis.disconnect();
    await server.close();
  }
}

await main();
