import { test } from 'node:test';
import assert from 'node:assert/strict';
import { arpClaims, FOLDED, MAX_PEERS_PER_VM, toPairs } from '../../src/agent/pairs.js';
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
  assert.deepEqual(toPairs([], vmName, new Map()), { pairs: [], vms: new Set(), folded: 0 });
  assert.deepEqual(arpClaims([], vmName), new Map());
});

test('100,000 random peers in a period: each VM keeps its heaviest peers that are not VMs, the rest summed into its * peer; every packet and byte still counted', () => {
  let seed = 7;
  const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const flows: FlowCounts[] = [];
  for (let i = 0; i < 100_000; i++) {
    const peer = `10.${Math.floor(i / 65536) + 100}.${(i >> 8) & 255}.${i & 255}`;
    flows.push({ ...flow(1, i % 2 ? 'tx' : 'rx', peer, 1 + Math.floor(rand() * 5)), bytes: 64 + i }); // heavier as i grows
  }
  flows.push(flow(1, 'tx', '10.0.0.2', 50), flow(2, 'tx', '10.0.0.9', 4)); // to VM b, and b to one address
  const addrs = new Map([['10.0.0.2', 'b']]);
  const r = toPairs(flows, vmName, addrs);
  const total = (pairs: [string, number, number][]) => pairs.reduce((s, p) => [s[0] + p[1], s[1] + p[2]], [0, 0]);
  const sent = flows.filter((f) => !(f.dir === 'rx' && addrs.has(f.peer))).reduce((s, f) => [s[0] + f.packets, s[1] + f.bytes], [0, 0]);
  assert.deepEqual(total(r.pairs), sent, 'nothing lost, nothing doubled');
  assert.equal(r.folded, 100_000 - 2 * MAX_PEERS_PER_VM);
  assert.equal(r.pairs.length, 2 * MAX_PEERS_PER_VM + 2 + 2, "a's kept peers each way, its two * peers, a>b and b's one peer");
  assert.ok(
    r.pairs.some(([m]) => m === 'a>b'),
    'a pair between VMs is never folded',
  );
  assert.ok(
    r.pairs.some(([m]) => m === 'b>10.0.0.9'),
    "b's few peers stay as they are",
  );
  const tx = r.pairs.filter(([m]) => m.startsWith('a>10.'));
  assert.equal(tx.length, MAX_PEERS_PER_VM);
  const lightestKept = Math.min(...tx.map((p) => p[2]));
  const foldTx = r.pairs.find(([m]) => m === `a>${FOLDED}`)!;
  assert.ok(foldTx[1] > 0 && lightestKept >= 64 + 100_000 - 2 * MAX_PEERS_PER_VM, 'the heaviest are kept, the lightest folded');
  assert.ok(
    r.pairs.some(([m]) => m === `${FOLDED}>a`),
    'received from the folded peers too',
  );
  assert.deepEqual(toPairs(flows, vmName, addrs), r, 'the same reading folds the same way');
});
