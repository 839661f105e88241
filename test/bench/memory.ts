// Redis memory per pair-period at 120 periods of retention (issue 16, part 4; target: at most 40 bytes), on a
// private redis-server: a fleet of VMS VMs on HOSTS hosts, each VM with PEERS peers (VMs and addresses outside,
// both directions, a few replaced each period), published through the real Store (apply, trim, materialise) as
// the agents do, for more periods than the retention keeps, so that the pair dictionary has been pruned once and
// is in its steady state (the current dictionary and the retired one's names). Then side by side, in one run:
//  - before: the readable zsets of every period kept (agent.zsetPeriods >= the retention);
//  - after: the zsets of the newest ZSET_PERIODS only (the default, 5), trimmed by the same Store.trim the agents call;
//  - and the newest FEWER only, to show what the default costs against the 40-byte target;
// and the three queries' answers before and after, which must be identical (they read the packed reports).
//   node dist/test/bench/memory.js [--write-docs]   (docs/measurements.md block `memory`, README block `memory-summary`)
import { isDeepStrictEqual } from 'node:util';
import { Redis } from 'ioredis';
import { K } from '../../src/collector/keys.js';
import { query, type QueryResult } from '../../src/collector/query.js';
import { Registry } from '../../src/collector/registry.js';
import type { Report } from '../../src/collector/report.js';
import { Store, ZSET_PERIODS } from '../../src/collector/store.js';
import { sleep } from '../../src/util/exec.js';
import { TestRedis } from '../helpers/redis.js';
import { benchArgs, maybeWriteBlock, README } from './doc.js';

const L = 30;
const VMS = 4000;
const HOSTS = 80;
const PEERS = 20; // per VM: 17 VMs it sends to, 2 addresses outside it sends to, 1 it receives from
const RETENTION = 120;
const PUBLISHED = 130; // more than the retention: the dictionary is pruned at period 121
const CHURN = 0.01; // each period, each peer of each VM is replaced with this probability
const FEWER = 2; // a smaller agent.zsetPeriods, measured beside the default
const { writeDocs } = benchArgs();

/** mulberry32: the same fleet every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(16);
const vmName = (v: number) => `vm-${String(v).padStart(5, '0')}`;
const outside = () => `198.51.${Math.floor(rand() * 256)}.${Math.floor(rand() * 256)}`;

/** Peer slots of each VM: 0..16 a VM it sends to, 17..18 an address it sends to, 19 an address it receives from. */
const slots: string[][] = Array.from({ length: VMS }, (_, v) =>
  Array.from({ length: PEERS }, (_, k) => {
    if (k < 17) return `${vmName(v)}>${vmName(Math.floor(rand() * VMS))}`;
    return k < 19 ? `${vmName(v)}>${outside()}` : `${outside()}>${vmName(v)}`;
  }),
);

function churn(): void {
  for (const [v, s] of slots.entries()) {
    for (let k = 0; k < PEERS; k++) {
      if (rand() >= CHURN) continue;
      s[k] = k < 17 ? `${vmName(v)}>${vmName(Math.floor(rand() * VMS))}` : k < 19 ? `${vmName(v)}>${outside()}` : `${outside()}>${vmName(v)}`;
    }
  }
}

function report(h: number, period: number): Report {
  const per = VMS / HOSTS;
  const pairs = new Map<string, [string, number, number]>();
  for (let v = h * per; v < (h + 1) * per; v++) {
    for (const m of slots[v]!) {
      const msgs = 1 + Math.floor(rand() * 5000);
      pairs.set(m, [m, msgs, msgs * (64 + Math.floor(rand() * 1437))]);
    }
  }
  return { v: 1, host: `h${h}`, site: 's', period, length: L, from: period * 1000, to: (period + L) * 1000, pairs: [...pairs.values()], overflow: { packets: 0, bytes: 0 }, unknownTap: 0, vms: [] };
}

async function usedMemory(r: Redis): Promise<number> {
  // UNLINK frees large values on a background thread: wait until it has.
  for (let i = 0; i < 600; i++) {
    const info = await r.info('memory');
    if (Number(/lazyfree_pending_objects:(\d+)/.exec(info)?.[1] ?? 0) === 0) return Number(/used_memory:(\d+)/.exec(info)![1]);
    await sleep(100);
  }
  throw new Error('Redis still frees objects after a minute');
}

/** Exact MEMORY USAGE (SAMPLES 0) of the keys, summed. */
async function keyMemory(r: Redis, keys: string[]): Promise<number> {
  let sum = 0;
  for (let i = 0; i < keys.length; i += 1000) {
    const tx = r.pipeline();
    for (const k of keys.slice(i, i + 1000)) tx.call('MEMORY', 'USAGE', k, 'SAMPLES', '0');
    for (const [err, v] of (await tx.exec())!) {
      if (err) throw err;
      sum += Number(v ?? 0);
    }
  }
  return sum;
}

interface Parts {
  total: number;
  packed: number;
  zsets: number;
  dictionary: number;
  other: number;
}

async function measure(r: Redis, baseline: number, periods: number[]): Promise<Parts> {
  const total = (await usedMemory(r)) - baseline;
  const hosts = Array.from({ length: HOSTS }, (_, h) => `h${h}`);
  const packed = await keyMemory(
    r,
    periods.flatMap((p) => hosts.map((h) => K.hostPairs(p, h))),
  );
  const zsets = await keyMemory(
    r,
    periods.flatMap((p) => hosts.flatMap((h) => [K.hostMsgs(p, h), K.hostBytes(p, h)])),
  );
  const retired = Object.keys(await r.hgetall(K.pairDict))
    .filter((f) => f.startsWith('retired:'))
    .map((f) => K.retiredNames(f.slice(8)));
  const dictionary = await keyMemory(r, [K.pairDict, K.pairNames, K.pairIds, ...retired]);
  return { total, packed, zsets, dictionary, other: total - packed - zsets - dictionary };
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const MiB = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function answers(r: Redis, now: number): Promise<{ out: QueryResult[]; took: number[] }> {
  const out: QueryResult[] = [];
  const took: number[] = [];
  for (const [type, span] of [
    ['weighted', RETENTION],
    ['mean', RETENTION],
    ['detail', 10],
  ] as const) {
    const t0 = process.hrtime.bigint();
    const a = await query(r, { type, span, now, coefficient: 2 });
    took.push(ms(t0));
    if (a.status !== 'ok') throw new Error(`${type} answered ${a.status}: ${JSON.stringify(a).slice(0, 300)}`);
    out.push(a);
  }
  return { out, took };
}

async function main(): Promise<void> {
  const server = await TestRedis.start();
  const redis = new Redis(server.url);
  try {
    // The empty server, with the collector's scripts loaded (they stay across FLUSHALL).
    const now = Date.now();
    const newest = Math.floor(now / 1000 / L) * L - L;
    const warm = new Store(redis);
    await warm.apply(report(0, newest - 1000 * L));
    await redis.flushall();
    const baseline = await usedMemory(redis);

    const registry = new Registry(redis);
    for (let h = 0; h < HOSTS; h++) {
      await registry.registerHost(`h${h}`, { site: 's', uri: 'x', cpus: 64, memoryKiB: 1, freeMemoryKiB: 1, vms: VMS / HOSTS, sensor: 'ebpf', periodSeconds: L }, now - 86_400_000);
      await registry.registerHost(`h${h}`, { site: 's', uri: 'x', cpus: 64, memoryKiB: 1, freeMemoryKiB: 1, vms: VMS / HOSTS, sensor: 'ebpf', periodSeconds: L }, now + 3_600_000);
    }
    await redis.hset(K.settings, 'periodSeconds', L);

    // One Store per agent (each caches its own members), all keeping every period's zsets: "before".
    const stores = Array.from({ length: HOSTS }, () => new Store(redis, { zsetPeriods: PUBLISHED }));
    const periods = Array.from({ length: PUBLISHED }, (_, i) => newest - (PUBLISHED - 1 - i) * L);
    const publishMs: number[] = [];
    let pairsIn = new Map<number, number>();
    const t00 = process.hrtime.bigint();
    for (const [i, p] of periods.entries()) {
      if (i) churn();
      const t0 = process.hrtime.bigint();
      let n = 0;
      for (let h = 0; h < HOSTS; h++) {
        const r = report(h, p);
        n += r.pairs.length;
        await stores[h]!.apply(r);
      }
      publishMs.push(ms(t0));
      pairsIn.set(p, n);
      await stores[0]!.trim(RETENTION); // every agent trims after its send; one does it all here
      for (let h = 0; h < HOSTS; h++) await stores[h]!.materialise({ host: `h${h}` });
      if (i % 10 === 9) process.stderr.write(`published ${i + 1} periods (${(ms(t00) / 1000).toFixed(0)} s)\n`);
    }
    const kept = (await redis.zrange(K.periods, '0', '-1')).map(Number);
    if (kept.length !== RETENTION) throw new Error(`retention kept ${kept.length} periods, not ${RETENTION}`);
    pairsIn = new Map(kept.map((p) => [p, pairsIn.get(p)!]));
    const pairPeriods = [...pairsIn.values()].reduce((a, b) => a + b, 0);
    const epochs = Object.keys(await redis.hgetall(K.pairDict)).filter((f) => f.startsWith('retired:')).length;

    const before = await measure(redis, baseline, kept);
    const qBefore = await answers(redis, now);

    // "After": the default, the zsets of the newest ZSET_PERIODS periods, trimmed as an agent's Store does; then FEWER.
    const t0 = process.hrtime.bigint();
    await new Store(redis, { zsetPeriods: ZSET_PERIODS }).trim(RETENTION);
    const trimMs = ms(t0);
    const after = await measure(redis, baseline, kept);
    const qAfter = await answers(redis, now);
    const same = qBefore.out.every((a, i) => isDeepStrictEqual(a, qAfter.out[i]));
    const zsetsLeft = async () => (await Promise.all(kept.map((p) => redis.exists(K.hostMsgs(p, 'h0'))))).filter((x) => x === 1).length;
    const leftAfter = await zsetsLeft();
    await new Store(redis, { zsetPeriods: FEWER }).trim(RETENTION);
    const fewer = await measure(redis, baseline, kept);
    const leftFewer = await zsetsLeft();

    const per = (b: number) => `${(b / pairPeriods).toFixed(1)} B`;
    const cell = (x: Parts, k: keyof Parts) => `${MiB(x[k])} (${per(x[k])})`;
    const verdict = after.total / pairPeriods <= 40 ? 'met' : 'not met';
    const rows = [
      `| measurement | before: zsets of every period kept | after: zsets of the newest ${ZSET_PERIODS} (agent.zsetPeriods, default) | zsets of the newest ${FEWER} | target |`,
      '|---|---|---|---|---|',
      `| Redis used_memory less the empty server's, per pair-period kept | ${cell(before, 'total')} | **${cell(after, 'total')}** | ${cell(fewer, 'total')} | ≤ 40 B: ${verdict} with the default${fewer.total / pairPeriods <= 40 ? `, met with ${FEWER}` : ''} |`,
      `| packed reports (${kept.length} periods × ${HOSTS} hosts) | ${cell(before, 'packed')} | ${cell(after, 'packed')} | ${cell(fewer, 'packed')} | |`,
      `| readable zsets vc:period:{P}:host:H:msgs, :bytes | ${cell(before, 'zsets')}, ${kept.length} periods | ${cell(after, 'zsets')}, ${leftAfter} periods | ${cell(fewer, 'zsets')}, ${leftFewer} periods | |`,
      `| pair dictionary (current: index and names; ${epochs} retired: names) | ${cell(before, 'dictionary')} | ${cell(after, 'dictionary')} | ${cell(fewer, 'dictionary')} | |`,
      `| the rest (what MEMORY USAGE leaves out of the above, keyspace, reported sets, meta, registry) | ${cell(before, 'other')} | ${cell(after, 'other')} | ${cell(fewer, 'other')} | |`,
      `| weighted / mean over ${RETENTION} periods, detail over 10 | ${qBefore.took.map((t) => t.toFixed(0)).join(' / ')} ms | ${qAfter.took.map((t) => t.toFixed(0)).join(' / ')} ms; answers identical: ${same ? 'yes' : 'NO'} | | identical |`,
      `| the trim that deleted the older zsets | | ${trimMs.toFixed(0)} ms | | |`,
      `| publish one period (${HOSTS} hosts, ${Math.round(pairPeriods / kept.length).toLocaleString('en')} pairs), median | ${median(publishMs).toFixed(0)} ms, zsets written | | | |`,
    ];
    const block = [
      `${VMS.toLocaleString('en')} VMs on ${HOSTS} hosts, ${PEERS} peers each (${CHURN * 100} % replaced each period), ${PUBLISHED} periods published, ${RETENTION} kept: ` +
        `${pairPeriods.toLocaleString('en')} pair-periods; the pair dictionary pruned once (steady state: the current one and the retired one's names).`,
      '',
      ...rows,
    ].join('\n');
    process.stdout.write(`${block}\n`);
    await maybeWriteBlock(writeDocs, 'memory', block);
    await maybeWriteBlock(
      writeDocs,
      'memory-summary',
      `Redis memory at ${RETENTION} periods of retention (\`node dist/test/bench/memory.js\`, ${VMS.toLocaleString('en')} VMs × ${PEERS} peers): ` +
        `**${per(after.total)} per pair-period kept** with the readable zsets of the newest ${ZSET_PERIODS} periods (target 40 B: ${verdict}), ` +
        `against ${per(before.total)} with the zsets of every period and ${per(fewer.total)} with those of the newest ${FEWER}; ` +
        `packed reports ${per(after.packed)}, zsets ${per(after.zsets)}, pair dictionary ${per(after.dictionary)}. ` +
        `The queries answer the same either way.`,
      README,
    );
    if (!same) process.exitCode = 1;
  } finally {
    redis.disconnect();
    await server.close();
  }
}

await main();
