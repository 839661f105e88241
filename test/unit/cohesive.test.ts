import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildGraph } from '../../src/analysis/graph.js';
import { cohesiveGroups, type GroupTree } from '../../src/analysis/cohesive.js';
import { corpus, type Topology } from '../helpers/topologies.js';

/** The groups found, as sorted VM name lists, without singletons. */
function found(t: Topology): string[][] {
  const g = buildGraph(t.rows, t.vms);
  return cohesiveGroups(g, 'bytes')
    .filter((x: GroupTree) => x.nodes.length > 1)
    .map((x) => x.nodes.map((v) => g.names[v]!).sort());
}

for (const t of corpus(process.env.QUICK !== '1')) {
  test(`cohesive groups: ${t.name}`, () => {
    const free = new Set(t.free ?? []);
    const got = found(t)
      .map((grp) => grp.filter((v) => !free.has(v)))
      .filter((grp) => grp.length > 1);
    const key = (gs: string[][]) => gs.map((x) => x.sort().join(',')).sort();
    assert.deepEqual(key(got), key(t.groups.map((x) => [...x])));
  });
}
