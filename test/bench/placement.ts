/**
 * Placement quality and speed, side by side: the VMs' initial (random) placement, the seed's
 * greedy groups packed onto sites, Louvain groups refined under capacity and packed, our planner
 * (best of its five starts + local search), and the exact optimum by exhaustive search (≤ 12 VMs).
 * Objective: time, all inter-site links alike, so it ranks placements by inter-site traffic.
 * Quality runs use an unlimited horizon (migration cost negligible, any number of moves);
 * the timing rows run the real planMoves round (horizon 1 h, 5 moves) from the collector rows,
 * graph building included, twice (the first run pays for JIT compilation).
 * Run: node dist/test/bench/placement.js [--quick] [--speed] [--runs N] [--write-docs]
 * (--speed: only the timing rows; --runs: timed rounds per scenario after the first, median shown;
 * --write-docs: also into docs/measurements.md, blocks `placement-quality` and `placement-speed`).
 */
import { buildGraph, type PairTraffic } from '../../src/analysis/graph.js';
import { seedGreedy } from '../../src/analysis/greedy.js';
import { exactOptimum } from '../../src/placement/exact.js';
import { louvainLabels, optimise } from '../../src/placement/optimise.js';
import { packGroups } from '../../src/placement/pack.js';
import { parseEnvironment, type Environment } from '../../src/placement/env.js';
import { planMoves } from '../../src/placement/plan.js';
import { Placement, score, type Score } from '../../src/placement/state.js';
import { benchArgs, maybeWriteBlock } from './doc.js';
import { problemFor, randomStart, rng, vmName } from './problems.js';

const quick = process.argv.includes('--quick');
const speedOnly = process.argv.includes('--speed');
const runsArg = process.argv.indexOf('--runs');
const runs = runsArg >= 0 ? Math.max(1, Number(process.argv[runsArg + 1]) || 1) : 1;
const { writeDocs } = benchArgs();
// A --quick table lacks the 10,000-VM rows: it would silently shrink the document's.
if (writeDocs && quick) throw new Error('--write-docs with --quick would drop the 10,000-VM rows from docs/measurements.md: run without --quick');

interface Scenario {
  name: string;
  n: number;
  rows: PairTraffic[];
  endpoints?: string[];
}

const both = (rows: PairTraffic[], a: string, b: string, msgs: number, bytes: number) => {
  rows.push({ src: a, dst: b, messages: msgs / 2, bytes: bytes / 2 }, { src: b, dst: a, messages: msgs / 2, bytes: bytes / 2 });
};

function planted(n: number, size: number, density: number, noiseEdges: number, seed: number): Scenario {
  const r = rng(seed);
  const rows: PairTraffic[] = [];
  for (let g0 = 0; g0 < n; g0 += size) {
    const end = Math.min(n, g0 + size);
    for (let i = g0; i < end; i++) for (let j = i + 1; j < end; j++) if (r() < density) both(rows, vmName(i), vmName(j), 50 + 50 * r(), 5e5 * (1 + r()));
  }
  for (let k = 0; k < noiseEdges; k++) {
    const i = Math.floor(r() * n);
    const j = Math.floor(r() * n);
    if (i !== j) both(rows, vmName(i), vmName(j), 5 * r(), 5e4 * r());
  }
  return { name: `planted groups of ${size} + noise`, n, rows };
}

function ring(n: number): Scenario {
  const rows: PairTraffic[] = [];
  for (let i = 0; i < n && n > 1; i++) if (n > 2 || i === 0) both(rows, vmName(i), vmName((i + 1) % n), 100, 1e6);
  return { name: 'ring', n, rows };
}

function stencil(n: number): Scenario {
  const w = Math.ceil(Math.sqrt(n));
  const rows: PairTraffic[] = [];
  for (let i = 0; i < n; i++) {
    if ((i + 1) % w !== 0 && i + 1 < n) both(rows, vmName(i), vmName(i + 1), 100, 1e6);
    if (i + w < n) both(rows, vmName(i), vmName(i + w), 100, 1e6);
  }
  return { name: '2-D stencil', n, rows };
}

function pairs(n: number): Scenario {
  const rows: PairTraffic[] = [];
  for (let i = 0; i + 1 < n; i += 2) both(rows, vmName(i), vmName(i + 1), 100, 1e6);
  return { name: 'pairs', n, rows };
}

function all(n: number): Scenario {
  const rows: PairTraffic[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) both(rows, vmName(i), vmName(j), 10, 1e5);
  return { name: 'all-to-all', n, rows };
}

function idle(n: number): Scenario {
  return { name: 'idle', n, rows: [] };
}

function fileServer(n: number, seed: number): Scenario {
  const s = planted(n, 4, 1, 0, seed);
  for (let i = 0; i < n; i++) both(s.rows, vmName(i), '10.0.9.5', 30, 3e5);
  return { name: 'groups of 4 sharing a file server', n, rows: s.rows, endpoints: ['10.0.9.5'] };
}

/** Sites of identical hosts, about 25 % spare memory overall, 1 GiB / 1 vCPU VMs. */
function environment(n: number): Environment {
  const S = n <= 12 ? 2 : 4;
  const perSite = n <= 12 ? 2 : Math.max(2, Math.ceil(n / (S * 16)));
  const slots = Math.max(2, Math.ceil((1.25 * n) / (S * perSite)));
  const sites: Record<string, object> = {};
  const hosts: Record<string, object> = {};
  const names = 'abcdefgh'.slice(0, S).split('');
  for (const s of names) {
    sites[s] = {};
    for (let h = 1; h <= perSite; h++) hosts[`${s}${h}`] = { site: s, vcpus: slots, memoryGiB: slots };
  }
  const links = [];
  for (let i = 0; i < S; i++) for (let j = i + 1; j < S; j++) links.push({ sites: [names[i], names[j]], latencyMs: 10, bandwidthMbit: 1000, transferPricePerGB: 0.02 });
  return parseEnvironment({ sites, hosts, links, endpoints: { '10.0.9.5': 'a' } });
}

interface Row {
  scenario: string;
  n: number;
  edges: number;
  initial: Score;
  greedy: Score | null;
  louvain: Score | null;
  ours: Score;
  exact: Score | null;
  ms: number;
  total: number;
}

function measure(s: Scenario, seed: number): Row {
  const env = environment(s.n);
  const vms = randomStart(s.n, env, seed);
  const p = problemFor(s.rows, env, vms, 1e12);
  const initial = score(new Placement(p, p.origin.slice()));
  const packed = (labels: Int32Array) => {
    const pl = packGroups(p, labels);
    return pl ? score(pl) : null;
  };
  const greedy = packed(seedGreedy(p.graph, { measure: 'bytes' }));
  const louv = packed(louvainLabels(p, 'bytes'));
  const t0 = performance.now();
  const ours = optimise(p, 'bytes').score;
  const ms = performance.now() - t0;
  const exact = s.n <= 12 ? exactOptimum(p).score : null;
  let total = 0;
  for (let e = 0; e < p.graph.edgeA.length; e++) total += p.graph.edgeBytes[e]!;
  return { scenario: s.name, n: s.n, edges: p.graph.edgeA.length, initial, greedy, louvain: louv, ours, exact, ms, total };
}

const pct = (x: number, total: number) => (total > 0 ? `${((100 * x) / total).toFixed(1)}%` : '0');
const cell = (sc: Score | null, total: number) => (sc ? `${pct(sc.interSiteBytes, total)} / ${sc.moves}` : 'n/a');

function qualityTable(rows: Row[]): string {
  const out = [
    '| scenario | VMs | edges | initial | seed greedy | Louvain+capacity | ours | exact optimum | ours vs optimum | ours vs greedy | ours ms |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const ratio = (a: Score | null, b: Score | null) => (!a || !b ? 'n/a' : b.rate === 0 ? (a.rate === 0 ? '=' : `+${a.rate.toPrecision(2)}`) : `${((100 * (a.rate - b.rate)) / b.rate).toFixed(1)}%`);
    out.push(
      `| ${r.scenario} | ${r.n} | ${r.edges} | ${cell(r.initial, r.total)} | ${cell(r.greedy, r.total)} | ${cell(r.louvain, r.total)} | ${cell(r.ours, r.total)} | ${cell(r.exact, r.total)} | ${ratio(r.ours, r.exact)} | ${ratio(r.ours, r.greedy)} | ${r.ms.toFixed(1)} |`,
    );
  }
  return out.join('\n');
}

function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  const sizes = quick ? [4, 8, 12, 100, 1000] : [4, 8, 12, 100, 1000, 10000];
  for (const n of sizes) {
    out.push(planted(n, n <= 12 ? 4 : 8, 0.7, Math.ceil(n / 2), n), ring(n), stencil(n), pairs(n), idle(n), fileServer(n, n + 1));
    if (n <= 1000) out.push(all(n));
  }
  return out;
}

async function main(): Promise<void> {
  if (!speedOnly) await maybeWriteBlock(writeDocs, 'placement-quality', quality());
  await maybeWriteBlock(writeDocs, 'placement-speed', speed());
}

/** Prints the quality table; returns its block for the document (the table and the summary line). */
function quality(): string {
  const rows = scenarios().map((s, i) => measure(s, 1000 + i));
  console.log('### Quality: inter-site traffic (share of all bytes) / moves from the initial placement (each move migrates 1 GiB)\n');
  const worse = rows.filter((r) => r.greedy && r.ours.rate > r.greedy.rate * (1 + 1e-9) + 1e-12);
  const far = rows.filter((r) => r.exact && r.ours.rate > r.exact.rate * 1.02 + 1e-12);
  const block = `${qualityTable(rows)}\n\nworse than seed greedy: ${worse.length}; more than 2 % above the optimum (≤ 12 VMs): ${far.length}`;
  console.log(block);
  return block;
}

/** Prints the speed table; returns it for the document. */
function speed(): string {
  console.log('\n### Speed: one planning round from collector rows (horizon 1 h, at most 5 moves)\n');
  const later = runs > 1 ? `median of ${runs} later runs` : '2nd run';
  const lines = [`| scenario | VMs | edges | collector rows | build graph ms | whole round ms, 1st run (cold JIT) | whole round ms, ${later} | moves |`, '|---|---:|---:|---:|---:|---:|---:|---:|'];
  for (const l of lines) console.log(l);
  const big = quick ? [planted(1000, 100, 0.9, 5000, 7)] : [planted(10000, 100, 0.9, 55000, 7), planted(10000, 20, 0.5, 400000, 8), stencil(10000)];
  for (const s of big) {
    const env = environment(s.n);
    const vms = randomStart(s.n, env, 99);
    const t0 = performance.now();
    const g = buildGraph(
      s.rows,
      vms.map((v) => v.name),
    );
    const t1 = performance.now();
    const times: number[] = [];
    let moves = 0;
    for (let k = 0; k <= runs; k++) {
      const a = performance.now();
      moves = planMoves(s.rows, vms, env, { objective: 'time' }).moves.length;
      times.push(performance.now() - a);
    }
    const later = times.slice(1).sort((x, y) => x - y);
    const median = later[Math.floor(later.length / 2)]!;
    const line = `| ${s.name} | ${s.n} | ${g.edgeA.length} | ${s.rows.length} | ${(t1 - t0).toFixed(0)} | ${times[0]!.toFixed(0)} | ${median.toFixed(0)} | ${moves} |`;
    lines.push(line);
    console.log(line);
  }
  return lines.join('\n');
}

await main();
