/**
 * Our planner's partitions against METIS's, as an outside anchor. Each graph of the topology
 * corpus (test/helpers/topologies.ts; the structures without noise, plus a few with it) is cut
 * into k = 2 and 4 parts (k ≤ n/2) of equal capacity, ⌈n/k × 1.03⌉ VMs each (3 % imbalance):
 * - METIS: `gpmetis -ufactor=30 FILE k` on the undirected graph, edge weight = both directions'
 *   bytes/s scaled to integers ≥ 1;
 * - ours: `optimise` (objective time, measure bytes) on k sites of one host each, the host's memory
 *   holding exactly that many 1 GiB VMs, identical zero-latency links, prices 0, from a random
 *   initial placement, unlimited horizon (moves cost nothing).
 * Both cuts are the bytes/s between VMs in different parts, from the original weights.
 * METIS is only the bench's: the product does not use it. Needs `gpmetis` (apt-get install metis).
 * Run: node dist/test/bench/metis.js [--write-docs]
 * (--write-docs: also into docs/measurements.md, block `metis`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseEnvironment, type Environment } from '../../src/placement/env.js';
import { optimise } from '../../src/placement/optimise.js';
import { corpus, type Topology } from '../helpers/topologies.js';
import { packageRoot } from '../../src/paths.js';
import { benchArgs, maybeWriteBlock } from './doc.js';
import { problemFor, randomStart } from './problems.js';

const { writeDocs } = benchArgs();
const UFACTOR = 30; // METIS's load imbalance in thousandths: 1.03
const WITHIN = 0.05; // the target: ours ≤ METIS + 5 %
/** The noisy variants in the table (the rest of the corpus's "+ noise" entries are left out). */
const NOISY = ['ring 1000', '2-D stencil 32x32 (wrap)', '3-D stencil 10x10x10', 'hypercube 512', 'two blocks of 100, linked at 0.5 %', 'master and 8 farms of 16', '10 independent rings of 100'];

/** The undirected graph: one edge per pair, both directions' bytes/s summed. */
interface Graph {
  n: number;
  a: number[];
  b: number[];
  w: number[];
}

function undirected(t: Topology): Graph {
  const index = new Map(t.vms.map((v, i) => [v, i]));
  const n = t.vms.length;
  const id = new Map<number, number>();
  const g: Graph = { n, a: [], b: [], w: [] };
  for (const r of t.rows) {
    const s = index.get(r.src);
    const d = index.get(r.dst);
    if (s === undefined || d === undefined) throw new Error(`${t.name}: row ${r.src} -> ${r.dst} names a VM not in the topology`);
    if (s === d) continue;
    const key = Math.min(s, d) * n + Math.max(s, d);
    let e = id.get(key);
    if (e === undefined) {
      id.set(key, (e = g.a.length));
      g.a.push(Math.min(s, d));
      g.b.push(Math.max(s, d));
      g.w.push(0);
    }
    g.w[e]! += r.bytes;
  }
  return g;
}

/** Bytes/s on the edges whose ends are in different parts. */
function cut(g: Graph, part: ArrayLike<number>): number {
  let c = 0;
  for (let e = 0; e < g.a.length; e++) if (part[g.a[e]!] !== part[g.b[e]!]) c += g.w[e]!;
  return c;
}

const largest = (part: ArrayLike<number>, k: number) => {
  const size = new Array<number>(k).fill(0);
  for (let i = 0; i < part.length; i++) size[part[i]!]!++;
  return Math.max(...size);
};

/** The graph in METIS's format: 1-based adjacency lists, integer edge weights ≥ 1 (fmt 001). */
function metisText(g: Graph): string {
  const maxW = Math.max(0, ...g.w);
  // Largest edge 100,000, unless the weighted degrees' total would pass METIS's 32-bit integers.
  const total = g.w.reduce((s, x) => s + x, 0);
  const scale = maxW > 0 ? Math.min(1e5 / maxW, 2 ** 29 / (2 * total)) : 1;
  const adj: string[][] = Array.from({ length: g.n }, () => []);
  for (let e = 0; e < g.a.length; e++) {
    const w = Math.max(1, Math.round(g.w[e]! * scale));
    adj[g.a[e]!]!.push(`${g.b[e]! + 1} ${w}`);
    adj[g.b[e]!]!.push(`${g.a[e]! + 1} ${w}`);
  }
  return `${g.n} ${g.a.length} 001\n${adj.map((l) => l.join(' ')).join('\n')}\n`;
}

function metisParts(g: Graph, k: number, dir: string, name: string): Int32Array {
  const file = join(dir, `${name.replace(/[^a-z0-9]+/gi, '_')}.graph`);
  writeFileSync(file, metisText(g));
  const run = spawnSync('gpmetis', [`-ufactor=${UFACTOR}`, file, String(k)], { encoding: 'utf8' });
  if (run.error || run.status !== 0) throw new Error(`gpmetis on ${name}, k=${k}: ${run.error?.message ?? `exit ${run.status}`}\n${run.stdout}${run.stderr}`);
  const lines = readFileSync(`${file}.part.${k}`, 'utf8').trim().split('\n');
  if (lines.length !== g.n) throw new Error(`gpmetis on ${name}, k=${k}: ${lines.length} parts for ${g.n} vertices`);
  return Int32Array.from(lines, Number);
}

/** k sites of one host each, room for exactly `cap` 1 GiB VMs per host, identical free links. */
function environment(k: number, cap: number, n: number): Environment {
  const names = 'abcdefgh'.slice(0, k).split('');
  const sites: Record<string, object> = {};
  const hosts: Record<string, object> = {};
  for (const s of names) {
    sites[s] = {};
    hosts[`${s}1`] = { site: s, vcpus: n, memoryGiB: cap };
  }
  const links = [];
  for (let i = 0; i < k; i++) for (let j = i + 1; j < k; j++) links.push({ sites: [names[i], names[j]], latencyMs: 0, bandwidthMbit: 1000, transferPricePerGB: 0 });
  return parseEnvironment({ sites, hosts, links });
}

interface Row {
  graph: string;
  n: number;
  k: number;
  metis: number;
  ours: number;
  start: string;
  largestMetis: number;
  largestOurs: number;
  cap: number;
  ms: number;
}

function measure(t: Topology, k: number, dir: string, seed: number): Row {
  const g = undirected(t);
  const n = t.vms.length;
  const cap = Math.ceil((n / k) * (1 + UFACTOR / 1000));
  const metis = metisParts(g, k, dir, `${t.name} k${k}`);
  const env = environment(k, cap, n);
  const p = problemFor(t.rows, env, randomStart(n, env, seed), 1e12);
  const t0 = performance.now();
  const best = optimise(p, 'bytes');
  const ms = performance.now() - t0;
  const site = Int32Array.from(best.placement.host, (h) => p.hostSite[h]!);
  const ours = cut(g, site);
  // The planner's own count must agree with ours (no endpoints, so every inter-site byte is a cut edge).
  if (Math.abs(ours - best.score.interSiteBytes) > 1e-6 * Math.max(1, ours)) throw new Error(`${t.name}, k=${k}: cut ${ours} but the planner counts ${best.score.interSiteBytes} inter-site bytes/s`);
  return { graph: t.name, n, k, metis: cut(g, metis), ours, start: best.name, largestMetis: largest(metis, k), largestOurs: largest(site, k), cap, ms };
}

const ratio = (r: Row) => (r.metis > 0 ? r.ours / r.metis : r.ours > 0 ? Infinity : 1);
const ok = (r: Row) => r.ours <= r.metis * (1 + WITHIN) + 1e-9;
/** METIS bounds its parts by 1.03 × n/k but may break that on small graphs: such a cut is no anchor. */
const metisFits = (r: Row) => r.largestMetis <= r.cap;
const ratioText = (r: Row) => `${Number.isFinite(ratio(r)) ? ratio(r).toFixed(2) : '∞'}${!metisFits(r) ? ' (METIS over capacity)' : ok(r) ? '' : ' ✗'}`;
const bytes = (x: number) => (x === 0 ? '0' : x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`);

function table(rows: Row[]): string {
  const out = ['| graph | VMs | k | METIS cut B/s | our cut B/s | ours / METIS | winning start | largest part METIS / ours (cap) | ours ms |', '|---|---:|---:|---:|---:|---:|---|---:|---:|'];
  for (const r of rows) {
    out.push(`| ${r.graph} | ${r.n} | ${r.k} | ${bytes(r.metis)} | ${bytes(r.ours)} | ${ratioText(r)} | ${r.start} | ${r.largestMetis} / ${r.largestOurs} (${r.cap}) | ${r.ms.toFixed(0)} |`);
  }
  return out.join('\n');
}

function graphs(): Topology[] {
  const all = corpus(true);
  const plain = all.filter((t) => !t.name.endsWith(' + noise'));
  const noisy = all.filter((t) => t.name.endsWith(' + noise') && NOISY.includes(t.name.slice(0, -' + noise'.length)));
  if (noisy.length !== NOISY.length) throw new Error(`noisy variants: found ${noisy.length} of ${NOISY.length} (${NOISY.join('; ')}): a corpus name changed`);
  return [...plain, ...noisy];
}

async function main(): Promise<void> {
  if (spawnSync('gpmetis', ['-help']).error) {
    console.error('gpmetis not found: apt-get install metis (the bench only needs it; the product does not)');
    process.exit(1);
  }
  const dir = mkdtempSync(join(tmpdir(), 'metis-bench-'));
  const rows: Row[] = [];
  const t0 = performance.now();
  try {
    let seed = 1;
    for (const t of graphs()) for (const k of [2, 4]) if (k <= t.vms.length / 2) rows.push(measure(t, k, dir, seed++));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const fair = rows.filter(metisFits);
  const worst = fair.reduce((a, b) => (ratio(b) > ratio(a) ? b : a));
  const over = rows.filter((r) => !metisFits(r));
  const overText = over.length > 0 ? `; not counted, METIS's largest part above the capacity: ${over.map((r) => `${r.graph} k=${r.k}`).join('; ')}` : '';
  const block = `${table(rows)}\n\nours ≤ METIS + ${100 * WITHIN} %: ${fair.filter(ok).length} of ${fair.length} instances; worst ratio ${ratioText(worst)} (${worst.graph}, k=${worst.k})${overText}`;
  console.log(`### Edge cut: our planner against METIS (gpmetis -ufactor=${UFACTOR}), k equal parts of ⌈n/k × 1.03⌉ VMs\n`);
  console.log(block);
  console.error(`${rows.length} instances in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await maybeWriteBlock(writeDocs, 'metis', block);
  // The README's short form: the large structures (500 VMs or more, without noise), and the totals.
  const large = rows.filter((r) => r.n >= 500 && !r.graph.endsWith(' + noise'));
  const summary = `${table(large)}\n\nOn all ${fair.length} instances (4 to 1,024 VMs, k = 2 and 4, some with noise): ours ≤ METIS + ${100 * WITHIN} % on ${fair.filter(ok).length}; worst ratio ${ratioText(worst)} (${worst.graph}, k=${worst.k}).`;
  await maybeWriteBlock(writeDocs, 'metis-summary', summary, join(packageRoot, 'README.md'));
}

await main();
