import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph, type PairTraffic } from '../../src/analysis/graph.js';
import { seedGreedy } from '../../src/analysis/greedy.js';
import { groupsFromLabels, normalise } from '../../src/analysis/groups.js';
import { louvain, modularity } from '../../src/analysis/louvain.js';
import { refineUnderCapacity, vmCsr } from '../../src/analysis/refine.js';
import { detectGroups } from '../../src/analysis/index.js';
import { UserError } from '../../src/util/errors.js';

const t = (src: string, dst: string, messages: number, bytes = messages * 1000): PairTraffic => ({ src, dst, messages, bytes });
const vms = (n: number) => Array.from({ length: n }, (_, i) => `vm${i + 1}`);
const sets = (groups: { members: string[] }[]) => groups.map((g) => g.members.join(',')).sort();

test('graph: both directions are summed, idle VMs kept, non-VM endpoints become fixed nodes', () => {
  const g = buildGraph([t('vm1', 'vm2', 3), t('vm2', 'vm1', 2), t('vm1', '10.0.0.9', 7), t('vm2', 'vm2', 100), t('10.0.0.9', '10.0.0.8', 5)], vms(3));
  assert.equal(g.vmCount, 3);
  assert.deepEqual(g.names, ['vm1', 'vm2', 'vm3', '10.0.0.9', '10.0.0.8']);
  assert.equal(g.edgeA.length, 2, 'self traffic and endpoint-to-endpoint rows are dropped');
  assert.equal(g.edgeMessages[0], 5);
  assert.equal(g.edgeBytes[0], 5000);
  assert.equal(g.offsets[3]! - g.offsets[2]!, 0, 'vm3 is idle but present');
  assert.throws(() => buildGraph([t('vm1', 'vm2', -1)], vms(2)), UserError);
});

test('seed greedy on the cg.A.4 chain (hand-worked): 1-2 and 3-4 strong, 2-3 weak', () => {
  // Sorted: (1,2,100) forms G1 (mean 100, threshold 50); (3,4,100) forms G2 (tie -> by names);
  // (2,3,40): both grouped, different groups, 40 < 50 -> no merge. Two groups.
  const traffic = [t('vm1', 'vm2', 100), t('vm3', 'vm4', 100), t('vm2', 'vm3', 40)];
  const g = buildGraph(traffic, vms(4));
  assert.deepEqual(sets(groupsFromLabels(g, seedGreedy(g, { measure: 'messages' }), 'messages')), ['vm1,vm2', 'vm3,vm4']);
  // (2,3,60) reaches both thresholds (50): the groups merge, and with 'ignore' they do not.
  const g2 = buildGraph([t('vm1', 'vm2', 100), t('vm3', 'vm4', 100), t('vm2', 'vm3', 60)], vms(4));
  assert.deepEqual(sets(groupsFromLabels(g2, seedGreedy(g2, { measure: 'messages' }), 'messages')), ['vm1,vm2,vm3,vm4']);
  assert.equal(new Set(seedGreedy(g2, { measure: 'messages', splitPair: 'ignore' })).size, 2);
  // With factor 1 the threshold is 100: 60 no longer merges.
  assert.equal(new Set(seedGreedy(g2, { measure: 'messages', factor: 1 })).size, 2);
});

test('seed greedy: a VM below threshold starts its own group with threshold 0, the next pair joins it', () => {
  // (1,2,100) G1 thr 50; (2,3,10) 10 < 50 -> {vm3} alone, thr 0; (3,4,5): vm4 joins vm3 (5 >= 0).
  const g = buildGraph([t('vm1', 'vm2', 100), t('vm2', 'vm3', 10), t('vm3', 'vm4', 5)], vms(5));
  assert.deepEqual(sets(groupsFromLabels(g, seedGreedy(g, { measure: 'messages' }), 'messages')), ['vm1,vm2', 'vm3,vm4', 'vm5']);
});

test('seed greedy: the order of collector rows does not change the result (ties by name)', () => {
  const rows = [t('vm1', 'vm2', 10), t('vm3', 'vm4', 10), t('vm2', 'vm3', 10), t('vm4', 'vm5', 1)];
  const a = seedGreedy(buildGraph(rows, vms(5)), { measure: 'messages' });
  const b = seedGreedy(buildGraph([...rows].reverse(), vms(5)), { measure: 'messages' });
  assert.deepEqual(normalise(a), normalise(b));
});

test('seed greedy on the seed lu.A.8 shape: two groups of 4 with weak cross traffic', () => {
  const rows: PairTraffic[] = [];
  for (const base of [0, 4]) for (let i = 1; i <= 4; i++) for (let j = i + 1; j <= 4; j++) rows.push(t(`vm${base + i}`, `vm${base + j}`, 100));
  rows.push(t('vm3', 'vm5', 5), t('vm4', 'vm6', 5));
  const g = buildGraph(rows, vms(8));
  assert.deepEqual(sets(detectGroups(g, { method: 'seed', measure: 'messages' })), ['vm1,vm2,vm3,vm4', 'vm5,vm6,vm7,vm8']);
  assert.deepEqual(sets(detectGroups(g, { method: 'louvain', measure: 'messages' })), ['vm1,vm2,vm3,vm4', 'vm5,vm6,vm7,vm8']);
});

/** Planted partition: k groups of size s, dense inside, sparse noise across. */
function planted(k: number, s: number, seed: number): { rows: PairTraffic[]; truth: number[] } {
  let x = seed;
  const rnd = () => (x = (x * 1103515245 + 12345) % 2147483648) / 2147483648;
  const rows: PairTraffic[] = [];
  const n = k * s;
  const truth = Array.from({ length: n }, (_, i) => Math.floor(i / s));
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (truth[i] === truth[j] ? rnd() < 0.6 : rnd() < 0.02) rows.push(t(`vm${i + 1}`, `vm${j + 1}`, truth[i] === truth[j] ? 50 + 50 * rnd() : 5 + 10 * rnd()));
    }
  }
  return { rows, truth };
}

test('louvain recovers planted groups exactly, with modularity at least that of the truth', () => {
  const { rows, truth } = planted(6, 15, 7);
  const g = buildGraph(rows, vms(90));
  const labels = louvain(vmCsr(g, 'messages'));
  assert.deepEqual(Array.from(normalise(labels)), Array.from(normalise(Int32Array.from(truth))));
  const csr = vmCsr(g, 'messages');
  assert.ok(modularity(csr, labels) >= modularity(csr, Int32Array.from(truth)) - 1e-12);
});

test('capacity refinement splits a community larger than a host, never leaves one too big', () => {
  const rows: PairTraffic[] = [];
  for (let i = 1; i <= 10; i++) for (let j = i + 1; j <= 10; j++) rows.push(t(`vm${i}`, `vm${j}`, 10));
  const g = buildGraph(rows, vms(10));
  const demand = Array.from({ length: 10 }, () => ({ memoryKiB: 1024, vcpus: 1 }));
  const labels = refineUnderCapacity(g, 'messages', louvain(vmCsr(g, 'messages')), demand, { memoryKiB: 4096, vcpus: 8 });
  const sizes = new Map<number, number>();
  labels.forEach((l) => sizes.set(l, (sizes.get(l) ?? 0) + 1));
  assert.ok(
    [...sizes.values()].every((s) => s <= 4),
    `parts ${[...sizes.values()]}`,
  );
  assert.equal(
    [...sizes.values()].reduce((a, b) => a + b),
    10,
  );
});

test('idle and empty graphs: every VM is its own group, no crash', () => {
  const g = buildGraph([], vms(3));
  assert.equal(detectGroups(g, { method: 'seed', measure: 'bytes' }).length, 3);
  assert.equal(detectGroups(g, { method: 'louvain', measure: 'bytes' }).length, 3);
  assert.equal(detectGroups(buildGraph([], []), { method: 'louvain', measure: 'bytes' }).length, 0);
});

test('a shared file server does not glue groups together', () => {
  const rows = [t('vm1', 'vm2', 100), t('vm3', 'vm4', 100), ...vms(4).map((v) => t(v, '10.0.0.9', 80))];
  const g = buildGraph(rows, vms(4));
  assert.deepEqual(sets(detectGroups(g, { method: 'louvain', measure: 'messages' })), ['vm1,vm2', 'vm3,vm4']);
  assert.deepEqual(sets(detectGroups(g, { method: 'seed', measure: 'messages' })), ['vm1,vm2', 'vm3,vm4']);
});
