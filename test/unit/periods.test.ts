import { test } from 'node:test';
import assert from 'node:assert/strict';
import { attribute, splitFlows } from '../../src/agent/periods.js';
import type { FlowCounts } from '../../src/sensor/layout.js';

const L = 30;
const B = 1_800_000_000_000; // a boundary (ms), a multiple of 30 s

test('a read just after its boundary is the period it closes, whole', () => {
  const a = attribute({ from: B - 30_000 + 3, to: B + 4 }, undefined, L);
  assert.deepEqual(
    a.shares.map((s) => [s.period, s.fraction]),
    [[B / 1000 - 30, 1]],
  );
  assert.equal(a.carry, 0);
});

test('a read held up over a boundary is split by time over the periods it covers; the part after a late boundary is carried', () => {
  // 75 s since the read before, taken 15 s after the second boundary.
  const a = attribute({ from: B - 60_000, to: B + 15_000 }, undefined, L);
  assert.deepEqual(
    a.shares.map((s) => [s.period, s.fraction]),
    [
      [B / 1000 - 60, 0.4],
      [B / 1000 - 30, 0.4],
    ],
  );
  assert.equal(a.carry, 0.2);
});

test('periods already reported (the clock went back) are folded into the next one, never reported twice', () => {
  const a = attribute({ from: B - 60_000, to: B + 2 }, B / 1000 - 60, L);
  assert.deepEqual(a.folded, [B / 1000 - 60]);
  assert.deepEqual(
    a.shares.map((s) => s.period),
    [B / 1000 - 30],
  );
  assert.equal(a.carry.toFixed(3), '0.500');
  // No boundary at all in the span (stepped back to before it): everything is carried.
  assert.deepEqual(attribute({ from: B + 1000, to: B + 20_000 }, B / 1000, L), { shares: [], carry: 1, folded: [] });
});

test('splitting flows keeps every packet and byte: the parts add up to the whole', () => {
  const flows: FlowCounts[] = [
    { vm: 1, dir: 'tx', peer: '10.0.0.2', family: 4, ethertype: 0x800, packets: 7, bytes: 1001 },
    { vm: 1, dir: 'rx', peer: '10.0.0.2', family: 4, ethertype: 0x800, packets: 1, bytes: 60 },
  ];
  const parts = splitFlows(flows, [0.4, 0.4, 0.2]);
  for (const [i, f] of flows.entries()) {
    const packets = parts.flatMap((p) => p.filter((x) => x.dir === f.dir)).reduce((a, x) => a + x.packets, 0);
    const bytes = parts.flatMap((p) => p.filter((x) => x.dir === f.dir)).reduce((a, x) => a + x.bytes, 0);
    assert.deepEqual([packets, bytes], [f.packets, f.bytes], `flow ${i}`);
  }
  assert.deepEqual(
    parts[0]!.map((x) => x.packets),
    [3, 1],
    'remainders go to the largest shares, first first',
  );
  // Same-sized packets: each part holds exactly its packets' bytes.
  const even = splitFlows([{ vm: 1, dir: 'tx', peer: '10.0.0.3', family: 4, ethertype: 0x800, packets: 59, bytes: 59 * 298 }], [0.37, 0.41, 0.22]);
  for (const p of even) for (const f of p) assert.equal(f.bytes, f.packets * 298, `${f.packets} packets of 298 bytes`);
});
