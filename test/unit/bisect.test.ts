import { test } from 'node:test';
import assert from 'node:assert/strict';
import { seedGreedy } from '../../src/analysis/greedy.js';
import { buildGraph, type PairTraffic } from '../../src/analysis/graph.js';
import { bisectLabels } from '../../src/placement/bisect.js';
import { parseEnvironment } from '../../src/placement/env.js';
import { louvainLabels, optimise } from '../../src/placement/optimise.js';
import { packGroups } from '../../src/placement/pack.js';
import { buildProblem, type Problem } from '../../src/placement/problem.js';
import { improve } from '../../src/placement/search.js';
import { Placement, score } from '../../src/placement/state.js';
import { binaryTree, ring, twoBlocks, vmName, withNoise } from '../helpers/topologies.js';

const GiB = 1048576;

/**
 * n VMs of 1 GiB and 1 vCPU, one host per site with room for `sites[i].mem` of them and
 * `sites[i].cpu` vCPUs (default: as many as the memory); `hosts` says where a VM runs now
 * (none: not started yet), `pinned` which VMs may not move.
 */
function problem(rows: PairTraffic[], n: number, sites: { mem: number; cpu?: number }[], hosts: (number | undefined)[] = [], pinned: number[] = []): Problem {
  const names = sites.map((_, i) => `s${i}`);
  const env = parseEnvironment({
    sites: Object.fromEntries(names.map((s) => [s, {}])),
    hosts: Object.fromEntries(sites.map((s, i) => [`${names[i]}h`, { site: names[i], memoryGiB: s.mem, vcpus: s.cpu ?? s.mem }])),
    links: names.flatMap((a, i) => names.slice(i + 1).map((b) => ({ sites: [a, b], latencyMs: 10, bandwidthMbit: 1000, transferPricePerGB: 0 }))),
  });
  const vms = Array.from({ length: n }, (_, v) => ({ name: vmName(v), memoryKiB: GiB, vcpus: 1, host: hosts[v] === undefined ? undefined : `s${hosts[v]}h`, pinned: pinned.includes(v) }));
  const g = buildGraph(
    rows,
    vms.map((v) => v.name),
  );
  return buildProblem(g, vms, env, 'time', 1e12, Date.now());
}

/** Edges between VMs with different labels, and how many VMs each label has. */
function cutOf(p: Problem, labels: Int32Array): { edges: number; sizes: number[] } {
  let edges = 0;
  for (let e = 0; e < p.graph.edgeA.length; e++) if (p.graph.edgeB[e]! < p.nVm && labels[p.graph.edgeA[e]!] !== labels[p.graph.edgeB[e]!]) edges++;
  const sizes = new Array<number>(p.nSite).fill(0);
  for (const l of labels) sizes[l]!++;
  return { edges, sizes };
}

test('a binary tree of 15 over two sites of 8 is cut at one edge', () => {
  const p = problem(binaryTree(15).rows, 15, [{ mem: 8 }, { mem: 8 }]);
  const { edges, sizes } = cutOf(p, bisectLabels(p, 'bytes')!);
  assert.equal(edges, 1);
  assert.ok(
    sizes.every((s) => s <= 8),
    `${sizes}`,
  );
});

test('the same labels on every call: seeded, and the reused edge arena holds nothing over', () => {
  const big = problem(withNoise(ring(300), 0.05, 2).rows, 300, [{ mem: 160 }, { mem: 160 }]);
  const small = problem(binaryTree(63).rows, 63, [{ mem: 17 }, { mem: 17 }, { mem: 17 }, { mem: 17 }]);
  const first = [bisectLabels(big, 'bytes')!, bisectLabels(small, 'bytes')!];
  assert.deepEqual([bisectLabels(small, 'bytes')!, bisectLabels(big, 'bytes')!], first.reverse());
});

test('two blocks joined by weak links are split along the links', () => {
  const t = twoBlocks(6, 0.02);
  const p = problem(t.rows, 12, [{ mem: 7 }, { mem: 7 }]);
  const labels = bisectLabels(p, 'bytes')!;
  assert.equal(cutOf(p, labels).edges, 6); // the six weak pairs, no block edge
  assert.deepEqual([...new Set(labels.slice(0, 6))].length, 1);
  assert.deepEqual([...new Set(labels.slice(6))].length, 1);
  assert.notEqual(labels[0], labels[6]);
});

test('a binary tree of 1023 over 2 and 4 sites: the bisection wins the portfolio with METIS-like cuts', () => {
  for (const [k, cuts] of [
    [2, 1],
    [4, 3],
  ] as const) {
    const cap = Math.ceil((1023 / k) * 1.03);
    const p = problem(binaryTree(1023).rows, 1023, Array(k).fill({ mem: cap }));
    assert.equal(cutOf(p, bisectLabels(p, 'bytes')!).edges, cuts);
    const best = optimise(p, 'bytes');
    assert.equal(best.name, 'bisection');
    assert.equal(
      cutOf(
        p,
        Int32Array.from(best.placement.host, (h) => p.hostSite[h]!),
      ).edges,
      cuts,
    );
  }
});

test('capacity: memory room per site, unequal sites, vCPUs as a hard limit', () => {
  // Three sites with room for 10, 5 and 5 VMs, a ring of 20: each site gets at most its room, in one arc.
  let p = problem(ring(20).rows, 20, [{ mem: 10 }, { mem: 5 }, { mem: 5 }]);
  let c = cutOf(p, bisectLabels(p, 'bytes')!);
  assert.deepEqual(c.sizes, [10, 5, 5]);
  assert.equal(c.edges, 3);
  // Equal memory, but site 1 has only 4 vCPUs: it takes at most 4 of the 16 VMs.
  p = problem(ring(16).rows, 16, [{ mem: 20 }, { mem: 20, cpu: 4 }]);
  c = cutOf(p, bisectLabels(p, 'bytes')!);
  assert.ok(c.sizes[1]! <= 4 && c.sizes[1]! > 0, `${c.sizes}`);
  assert.equal(c.edges, 2);
});

test('pinned VMs keep their site and take its room', () => {
  // vm0 and vm1 pinned on site 0 (room 8): the other 14 of a ring of 16 fill 6 there and 8 on site 1.
  const p = problem(ring(16).rows, 16, [{ mem: 8 }, { mem: 8 }], [0, 0, 1, 1], [0, 1]);
  const labels = bisectLabels(p, 'bytes')!;
  assert.equal(labels[0], 0);
  assert.equal(labels[1], 0);
  assert.deepEqual(cutOf(p, labels).sizes, [8, 8]);
});

test('disconnected, idle and single-VM graphs, and no room at all: no crash, every VM labelled within the room', () => {
  const cases: [string, PairTraffic[], number][] = [
    ['two rings', [...ring(8).rows, ...ring(8).rows.map((r) => ({ ...r, src: vmName(Number(r.src.slice(2)) + 8), dst: vmName(Number(r.dst.slice(2)) + 8) }))], 16],
    ['idle', [], 16],
    ['half idle', ring(8).rows, 16],
    ['one VM', [], 1],
    ['no VM', [], 0],
    // Large enough to be coarsened: leaves around a hub and idle VMs only shrink by pairing with each other.
    ['star of 500', Array.from({ length: 499 }, (_, i) => ({ src: vmName(0), dst: vmName(i + 1), messages: 1, bytes: 100 })), 500],
    ['500 idle', [], 500],
  ];
  for (const [name, rows, n] of cases) {
    for (const k of [1, 2, 3, 4]) {
      const p = problem(rows, n, Array(k).fill({ mem: Math.ceil(n / k) + 1 }));
      const labels = bisectLabels(p, 'messages')!;
      const { edges, sizes } = cutOf(p, labels);
      assert.ok(
        sizes.every((s) => s <= Math.ceil(n / k) + 1),
        `${name}, k=${k}: ${sizes}`,
      );
      if (name === 'two rings' && k === 2) assert.equal(edges, 0, name);
      assert.ok(packGroups(p, labels), `${name}, k=${k}: packs`);
    }
  }
  const full = problem(ring(4).rows, 4, [{ mem: 0 }, { mem: 0 }]);
  assert.equal(bisectLabels(full, 'bytes'), null);
});

test('the planner with the bisection in its portfolio is never worse than each other start, polished', () => {
  const tops = [withNoise(ring(40), 0.05, 3), withNoise(binaryTree(63), 0.05, 4), twoBlocks(20, 0.01)];
  for (const t of tops) {
    for (const k of [2, 3, 4]) {
      const n = t.vms.length;
      const p = problem(
        t.rows,
        n,
        Array(k).fill({ mem: Math.ceil((n / k) * 1.1) }),
        Array.from({ length: n }, (_, v) => v % k),
      );
      const best = optimise(p, 'bytes').score.amortised;
      const starts = [new Placement(p, p.origin.slice()), packGroups(p, louvainLabels(p, 'bytes')), packGroups(p, seedGreedy(p.graph, { measure: 'bytes' })), packGroups(p, bisectLabels(p, 'bytes')!)];
      for (const pl of starts) {
        if (!pl) continue;
        improve(pl);
        assert.ok(best <= score(pl).amortised * (1 + 1e-12), `${t.name}, k=${k}`);
      }
    }
  }
});
