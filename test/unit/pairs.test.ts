import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arpClaims, toPairs } from '../../src/agent/pairs.js';
import type { FlowCounts } from '../../src/sensor/layout.js';

const flow = (vm: number, dir: 'rx' | 'tx', peer: string, packets: number, extra: Partial<FlowCounts> = {}): FlowCounts => ({
  vm,
  dir,
  peer,
  family: peer.includes(':') ? (peer.startsWith('ether:') ? 0 : 6) : 4,
  ethertype: 0x0800,
  packets,
  bytes: 100 * packets,
  ...extra,
});
const names = new Map([
  [1, 'a'],
  [2, 'b'],
]);
const vmName = (id: number) => names.get(id) ?? `vm${id}`;
const sorted = (p: [string, number, number][]) => [...p].sort((x, y) => x[0].localeCompare(y[0]));

test('what a VM sent is named by the peer VM when its address is known, else by the address; sums per member', () => {
  const addrs = new Map([
    ['10.0.0.2', 'b'],
    ['fd00::2', 'b'],
  ]);
  const r = toPairs(
    [
      flow(1, 'tx', '10.0.0.2', 3),
      flow(1, 'tx', 'fd00::2', 2), // another address of b: the same member
      flow(1, 'tx', '10.0.0.9', 5), // not a VM: a file server, say
      flow(2, 'tx', 'ether:0x88cc', 1),
    ],
    vmName,
    addrs,
  );
  assert.deepEqual(sorted(r.pairs), [
    ['a>10.0.0.9', 5, 500],
    ['a>b', 5, 500],
    ['b>ether:0x88cc', 1, 100],
  ]);
  assert.deepEqual([...r.vms].sort(), ['a', 'b']);
});

test("what a VM received is kept only from peers that are not VMs: a VM peer's own host counts it as sent", () => {
  const r = toPairs([flow(1, 'rx', '10.0.0.2', 4), flow(1, 'rx', '192.0.2.7', 6), flow(1, 'rx', '192.0.2.7', 1)], vmName, new Map([['10.0.0.2', 'b']]));
  assert.deepEqual(r.pairs, [['192.0.2.7>a', 7, 700]]);
  assert.deepEqual([...r.vms], ['a'], 'a VM counts as seen even when all its flows were dropped as duplicates');
});

test('the addresses a VM announces as sender in its own ARP frames are claims, and never rename a peer by themselves', () => {
  const flows = [
    flow(1, 'tx', '10.0.0.2', 2),
    flow(2, 'tx', 'ether:0x0806', 1, { family: 0, ethertype: 0x0806, arpSender: '10.0.0.2' }),
    flow(2, 'tx', 'ether:0x0806', 1, { family: 0, ethertype: 0x0806, arpSender: '10.0.0.3' }),
    flow(2, 'rx', 'ether:0x0806', 1, { family: 0, ethertype: 0x0806, arpSender: '10.0.0.1' }), // received ARP: not b's own address
    flow(2, 'rx', '10.0.0.1', 3), // from a, whose address is not known: kept
  ];
  assert.deepEqual(
    [...arpClaims(flows, vmName)].map(([vm, s]) => [vm, [...s]]),
    [['b', ['10.0.0.2', '10.0.0.3']]],
  );
  const r = toPairs(flows, vmName, new Map());
  assert.deepEqual(sorted(r.pairs), [
    ['10.0.0.1>b', 3, 300],
    ['a>10.0.0.2', 2, 200],
    ['b>ether:0x0806', 2, 200],
    ['ether:0x0806>b', 1, 100],
  ]);
});

test('an empty reading gives nothing', () => {
  assert.deepEqual(toPairs([], vmName, new Map()), { pairs: [], vms: new Set() });
  assert.deepEqual(arpClaims([], vmName), new Map());
});
