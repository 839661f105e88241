/**
 * What each group method reports on the communication structures of parallel
 * and multi-tier applications (the corpus of test/helpers/topologies.ts, 4 to
 * about 1,000 VMs, each also under noise), against the verdict an operator
 * expects: one group for rings, tori, hypercubes, all-to-all...; separate
 * groups for weakly linked blocks, ladders cut along weak rungs, farms sharing
 * a master, independent jobs.
 *
 * Per method: the groups of two or more it found, whether they are the
 * expected ones (the `free` VMs of a topology may go anywhere), the share of
 * the traffic inside its groups, and for cohesive the cost of its largest
 * group's cheapest split (share of that group's traffic).
 * Run: node dist/test/bench/groups.js [--write-docs] (block `groups` of docs/measurements.md).
 */
import { detectGroups, GROUP_METHODS, type Group, type GroupMethod } from '../../src/analysis/index.js';
import { buildGraph } from '../../src/analysis/graph.js';
import { corpus, type Topology } from '../helpers/topologies.js';
import { README, benchArgs, maybeWriteBlock } from './doc.js';

const { writeDocs } = benchArgs();

interface Cell {
  groups: number;
  right: boolean;
  inside: number;
  splitCost?: number;
  ms: number;
}

function run(t: Topology, method: GroupMethod): Cell {
  const g = buildGraph(t.rows, t.vms);
  const start = performance.now();
  const found = detectGroups(g, { method, measure: 'bytes' });
  const ms = performance.now() - start;
  const many = found.filter((x) => x.members.length > 1);
  const free = new Set(t.free ?? []);
  const key = (gs: string[][]) =>
    gs
      .map((x) => x.filter((v) => !free.has(v)))
      .filter((x) => x.length > 1)
      .map((x) => [...x].sort().join(','))
      .sort()
      .join(' | ');
  const total = found.reduce((s, x) => s + x.internal, 0) + found.reduce((s, x) => s + x.external, 0) / 2;
  const inside = many.reduce((s, x) => s + x.internal, 0);
  const largest = many.reduce<Group | undefined>((a, x) => (!a || x.members.length > a.members.length ? x : a), undefined);
  return { groups: many.length, right: key(many.map((x) => x.members)) === key(t.groups), inside: total > 0 ? inside / total : 0, ...(largest?.split && { splitCost: largest.split.share }), ms };
}

const pct = (x: number) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)} %`;
const methods = [...GROUP_METHODS];
const rows: string[] = [];
const score = new Map<GroupMethod, number>(methods.map((m) => [m, 0]));
let total = 0;
const topologies = corpus(true);
for (const t of topologies) {
  const cells = methods.map((m) => run(t, m));
  cells.forEach((c, i) => {
    if (c.right) score.set(methods[i]!, score.get(methods[i]!)! + 1);
  });
  total++;
  const expected = t.groups.length === 1 ? 'one group' : `${t.groups.length} groups`;
  const cohesive = cells[0]!;
  rows.push(
    `| ${t.name} | ${t.vms.length} | ${expected} | ${cells.map((c) => `${c.right ? '✓' : '✗'} ${c.groups} (${pct(c.inside)})`).join(' | ')} | ${cohesive.splitCost === undefined ? '-' : pct(cohesive.splitCost)} | ${cohesive.ms.toFixed(0)} |`,
  );
}
// Random pairs of blocks: 4 VMs each, all pairs inside at 50-150 % of a base rate, 1-4 random
// pairs across at 5-25 %. Expected: the two blocks. Where cohesive keeps them whole, a VM on the
// cut keeps less than 90 % of its traffic on its side (the criterion at work, not noise).
const RANDOM = 500;
let seed = 7;
const rnd = () => {
  seed ^= seed << 13;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  return (seed >>> 0) / 4294967296;
};
const randomRight = new Map<GroupMethod, number>(methods.map((m) => [m, 0]));
for (let k = 0; k < RANDOM; k++) {
  const rows: Topology['rows'] = [];
  const vm = (i: number) => `vm${i}`;
  const edge = (a: number, b: number, m: number) => rows.push({ src: vm(a), dst: vm(b), messages: m / 2, bytes: m * 2048 }, { src: vm(b), dst: vm(a), messages: m / 2, bytes: m * 2048 });
  for (const base of [0, 4]) for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) edge(base + i, base + j, 100 * (0.5 + rnd()));
  const links = 1 + Math.floor(rnd() * 4);
  for (let l = 0; l < links; l++) edge(Math.floor(rnd() * 4), 4 + Math.floor(rnd() * 4), 100 * (0.05 + 0.2 * rnd()));
  const t: Topology = { name: 'random blocks', vms: Array.from({ length: 8 }, (_, i) => vm(i)), rows, groups: [0, 4].map((b) => [0, 1, 2, 3].map((i) => vm(b + i))) };
  for (const m of methods) if (run(t, m).right) randomRight.set(m, randomRight.get(m)! + 1);
}

const table = [
  `| topology | VMs | expected | ${methods.map((m) => `${m}: right? groups (traffic inside)`).join(' | ')} | cohesive: split cost of the largest group | cohesive ms |`,
  `|---|---:|---|${methods.map(() => '---').join('|')}|---:|---:|`,
  ...rows,
  '',
  `Right verdicts: ${methods.map((m) => `${m} ${score.get(m)}/${total}`).join(', ')}.`,
  '',
  `Random pairs of blocks of 4 (inside 50-150 %, 1-4 pairs across at 5-25 %), ${RANDOM} graphs, the two blocks found: ${methods.map((m) => `${m} ${randomRight.get(m)}`).join(', ')}.`,
].join('\n');
process.stdout.write(`${table}\n`);
await maybeWriteBlock(writeDocs, 'groups', table);
// The README's short form: the large structures without noise, and the totals.
const summary = [
  `| topology | VMs | expected | ${methods.join(' | ')} | split cost |`,
  `|---|---:|---|${methods.map(() => ':---:').join('|')}|---:|`,
  ...rows.filter((r) => !r.includes('+ noise') && Number(r.split('|')[2]) >= 100),
  '',
  `Right verdicts over all ${total} structures (small and large, with and without noise): ${methods.map((m) => `${m} ${score.get(m)}`).join(', ')}; ${RANDOM} random pairs of blocks of 4 with 1-4 weak pairs across, the two blocks found: ${methods.map((m) => `${m} ${randomRight.get(m)}`).join(', ')}.`,
]
  .join('\n')
  .replace(/ \(\d+ %\)/g, '')
  .replace(/ \| \d+ \|$/gm, ' |');
await maybeWriteBlock(writeDocs, 'groups-summary', summary, README);
