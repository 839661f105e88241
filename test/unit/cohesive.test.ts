import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph } from '../../src/analysis/graph.js';
import { cohesiveGroups, cohesiveLabels, type GroupTree } from '../../src/analysis/cohesive.js';
import { detectGroups } from '../../src/analysis/index.js';
import { keepTogetherPays } from '../../src/placement/significance.js';
import { corpus, ladder, ring, type Topology } from '../helpers/topologies.js';

/** The groups found, as sorted VM name lists, without singletons. */
function found(t: Topology): string[][] {
  const g = buildGraph(t.rows, t.vms);
  return cohesiveGroups(g, 'bytes')
    .filter((x: GroupTree) => x.nodes.length > 1)
    .map((x) => x.nodes.map((v) => g.names[v]!).sort());
}

for (const t of corpus()) {
  test(`cohesive groups: ${t.name} (expected: ${t.groups.length === 1 ? 'one group' : `${t.groups.length} groups`})`, () => {
    const free = new Set(t.free ?? []);
    const got = found(t)
      .map((grp) => grp.filter((v) => !free.has(v)))
      .filter((grp) => grp.length > 1);
    const key = (gs: string[][]) => gs.map((x) => x.sort().join(',')).sort();
    assert.deepEqual(key(got), key(t.groups.map((x) => [...x])));
  });
}

test('cohesive: bad graphs give sensible verdicts: one VM, idle VMs, self-traffic, only non-VM peers', () => {
  assert.deepEqual(
    cohesiveGroups(buildGraph([], ['a']), 'bytes').map((t) => t.nodes),
    [[0]],
  );
  const idle = cohesiveGroups(buildGraph([], ['a', 'b', 'c']), 'bytes');
  assert.equal(idle.length, 3, 'three idle VMs are three groups of one');
  const self = buildGraph(
    [
      { src: 'a', dst: 'a', messages: 50, bytes: 5e6 },
      { src: 'a', dst: 'b', messages: 1, bytes: 100 },
    ],
    ['a', 'b', 'c'],
  );
  assert.deepEqual(
    cohesiveGroups(self, 'bytes').map((t) => t.nodes.length),
    [2, 1],
  );
  const outside = buildGraph(
    [
      { src: 'a', dst: 'nfs', messages: 10, bytes: 1e6 },
      { src: 'b', dst: 'nfs', messages: 10, bytes: 1e6 },
    ],
    ['a', 'b'],
  );
  assert.equal(cohesiveGroups(outside, 'bytes').length, 2, 'a shared non-VM peer does not make a group');
});

test('cohesive: settings out of range are refused with the valid range', () => {
  const g = buildGraph(ring(4).rows, ring(4).vms);
  assert.throws(() => cohesiveGroups(g, 'bytes', { maxCut: 0 }), /--max-cut\) is 0: give a share above 0 and below 1/);
  assert.throws(() => cohesiveGroups(g, 'bytes', { maxCut: 1.5 }), /above 0 and below 1/);
  assert.throws(() => cohesiveGroups(g, 'bytes', { noise: -0.1 }), /--noise\) is -0.1: give a share from 0 up to below 1/);
  assert.throws(() => cohesiveGroups(g, 'bytes', { noise: 0.3, weak: 0.2 }), /weak-link level is 0.2: give a share from the noise level \(0.3\)/);
});

test('cohesive: every split in the tree divides its group exactly, and its share is the cut over the traffic inside', () => {
  const t = ladder(6, 0.3);
  const g = buildGraph(t.rows, t.vms);
  const [root] = cohesiveGroups(g, 'bytes', { depth: Infinity });
  assert.equal(root!.nodes.length, 12, 'rungs at 30 % keep the ladder whole');
  const walk = (x: GroupTree): number => {
    if (!x.split) return x.nodes.length === 1 ? 1 : assert.fail(`a group of ${x.nodes.length} without a split`);
    const [a, b] = x.split.parts;
    assert.deepEqual(
      [...a.nodes, ...b.nodes].sort((p, q) => p - q),
      [...x.nodes].sort((p, q) => p - q),
    );
    assert.ok(Math.abs(x.internal - (a.internal + b.internal + x.split.cut)) < 1e-6 * x.internal);
    assert.ok(Math.abs(x.split.share - x.split.cut / x.internal) < 1e-9);
    return walk(a) + walk(b);
  };
  assert.equal(walk(root!), 12, 'the tree goes down to single VMs');
});

test("cohesive: a group too big for any site is split along its cheapest split first (the planner's labels)", () => {
  // Two chains of 6 joined by rungs at 20 %: one group (rungs are strong enough), but a site holds only 6 VMs.
  const t = ladder(6, 0.2);
  const g = buildGraph(t.rows, t.vms);
  assert.equal(cohesiveGroups(g, 'bytes').length, 1);
  const { labels, split } = cohesiveLabels(g, 'bytes', (nodes) => nodes.length <= 6);
  assert.equal(split, true);
  const parts = new Map<number, string[]>();
  labels.forEach((l, v) => parts.set(l, [...(parts.get(l) ?? []), g.names[v]!]));
  assert.deepEqual([...parts.values()].map((p) => p.sort().join(',')).sort(), t.groups.map((p) => [...p].sort().join(',')).sort(), 'cut along the rungs (6 x 20 across) rather than across the chains');
});

test("significance: in the planner's terms; a job of 4 KB/s in a few large messages is no group beside one of 100 MB/s; an explicit floor replaces the rule", () => {
  const rows = [
    { src: 'a1', dst: 'a2', messages: 0.5, bytes: 2e3 },
    { src: 'a2', dst: 'a1', messages: 0.5, bytes: 2e3 },
    { src: 'b1', dst: 'b2', messages: 1e4, bytes: 5e7 },
    { src: 'b2', dst: 'b1', messages: 1e4, bytes: 5e7 },
  ];
  const g = buildGraph(rows, ['a1', 'a2', 'b1', 'b2']);
  const memory = new Map(['a1', 'a2', 'b1', 'b2'].map((v) => [v, 4 * 1048576]));
  // 20 ms and 100 Mbit/s: a1-a2 would lose 1 msg/s x 20 ms + 4 KB/s x 8 / 100 Mbit/s = 20.3 ms per second,
  // 73 s over an hour, while moving 4 GiB over that link takes 344 s.
  const env = { links: [{ sites: ['x', 'y'] as const, latencyMs: 20, bandwidthMbit: 100, transferPricePerGB: 0 }] };
  const groups = detectGroups(g, { method: 'cohesive', measure: 'bytes', significant: keepTogetherPays(env, memory, 3600) });
  assert.deepEqual(
    groups.map((x) => [x.members.join(','), x.significant]),
    [
      ['b1,b2', true],
      ['a1,a2', false],
    ],
  );
  // Over 5 hours it would pay (365 s lost > 344 s to move).
  assert.equal(
    detectGroups(g, { method: 'cohesive', measure: 'bytes', significant: keepTogetherPays(env, memory, 5 * 3600) }).every((x) => x.significant),
    true,
  );
  // Many small messages make a group worth keeping even at 4 KB/s: latency, not bytes.
  const chatty = buildGraph(
    rows.map((r) => (r.src.startsWith('a') ? { ...r, messages: 50 } : r)),
    ['a1', 'a2', 'b1', 'b2'],
  );
  assert.equal(
    detectGroups(chatty, { method: 'cohesive', measure: 'messages', significant: keepTogetherPays(env, memory, 3600) }).every((x) => x.significant),
    true,
  );
  // An explicit floor in bytes/s.
  assert.deepEqual(
    detectGroups(g, { method: 'cohesive', measure: 'bytes', significant: keepTogetherPays(env, memory, 3600, 1000) }).map((x) => x.significant),
    [true, true],
  );
});

test("detectGroups carries each group's split by name, and louvain and seed stay selectable", () => {
  const t = ring(4);
  const g = buildGraph(t.rows, t.vms);
  const [grp] = detectGroups(g, { method: 'cohesive', measure: 'bytes' });
  assert.equal(grp!.members.length, 4);
  assert.equal(grp!.split!.parts.map((p) => p.members.length).join('+'), '2+2');
  assert.equal(grp!.split!.share, 0.5, 'halving a ring of 4 cuts half its traffic');
  assert.equal(detectGroups(g, { method: 'louvain', measure: 'bytes' }).filter((x) => x.members.length > 1).length, 2, 'louvain halves the ring (why it is no longer the default)');
  assert.equal(detectGroups(g, { method: 'seed', measure: 'bytes' }).length, 1);
});
