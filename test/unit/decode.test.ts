import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CACHED, COUNTS, Dir, KEY, SLOT, decodeCached, decodeFlow, encodeSlot, ipv6, u32 } from '../../src/sensor/layout.js';

/** A map entry as counter.bpf.c writes it. */
function entry(k: { vm: number; dir: Dir; family: number; ethertype: number; peer: number[] }, packets: bigint, bytes: bigint): [Buffer, Buffer] {
  const key = Buffer.alloc(KEY.size);
  key.writeUInt32LE(k.vm, KEY.vm);
  key.writeUInt8(k.dir, KEY.dir);
  key.writeUInt8(k.family, KEY.family);
  key.writeUInt16LE(k.ethertype, KEY.ethertype);
  Buffer.from(k.peer).copy(key, KEY.peer);
  const value = Buffer.alloc(COUNTS.size);
  value.writeBigUInt64LE(packets, COUNTS.packets);
  value.writeBigUInt64LE(bytes, COUNTS.bytes);
  return [key, value];
}

test('an IPv4 flow decodes to VM, direction, peer and exact counts', () => {
  assert.deepEqual(decodeFlow(...entry({ vm: 42, dir: Dir.Tx, family: 4, ethertype: 0x0800, peer: [10, 0, 0, 7] }, 3n, 2n ** 50n)), {
    vm: 42,
    dir: 'tx',
    peer: '10.0.0.7',
    family: 4,
    ethertype: 0x0800,
    packets: 3,
    bytes: 2 ** 50,
  });
  assert.equal(decodeFlow(...entry({ vm: 4_000_000_000, dir: Dir.Rx, family: 4, ethertype: 0x0800, peer: [192, 0, 2, 1] }, 1n, 64n)).dir, 'rx');
});

test('an IPv6 peer prints in RFC 5952 form', () => {
  const peer = [...Buffer.from('fd000077000000000000000000000001', 'hex')];
  const f = decodeFlow(...entry({ vm: 1, dir: Dir.Rx, family: 6, ethertype: 0x86dd, peer }, 1n, 100n));
  assert.deepEqual([f.family, f.peer, f.arpSender], [6, 'fd00:77::1', undefined]);
});

test('frames that are not IP are named by ethertype; ARP keeps the sender address it announced', () => {
  const arp = decodeFlow(...entry({ vm: 1, dir: Dir.Tx, family: 0, ethertype: 0x0806, peer: [10, 77, 0, 100] }, 1n, 42n));
  assert.deepEqual([arp.peer, arp.arpSender], ['ether:0x0806', '10.77.0.100']);
  const probe = decodeFlow(...entry({ vm: 1, dir: Dir.Tx, family: 0, ethertype: 0x0806, peer: [0, 0, 0, 0] }, 1n, 42n));
  assert.deepEqual([probe.peer, 'arpSender' in probe], ['ether:0x0806', false], 'an ARP probe (sender 0.0.0.0) announces nothing');
  const lldp = decodeFlow(...entry({ vm: 1, dir: Dir.Tx, family: 0, ethertype: 0x88cc, peer: [1, 2, 3, 4] }, 1n, 60n));
  assert.deepEqual([lldp.peer, 'arpSender' in lldp], ['ether:0x88cc', false]);
});

test('a per-CPU value is the sum of the counters of every CPU, exact past 32 bits, aligned or not', () => {
  const [key] = entry({ vm: 3, dir: Dir.Tx, family: 4, ethertype: 0x0800, peer: [10, 0, 0, 1] }, 0n, 0n);
  const perCpu = [
    [5n, 0xffff_ffffn],
    [0n, 0n],
    [2n ** 40n + 7n, 2n ** 35n],
  ];
  const value = Buffer.alloc(COUNTS.size * perCpu.length);
  perCpu.forEach(([p, b], i) => {
    value.writeBigUInt64LE(p!, i * COUNTS.size + COUNTS.packets);
    value.writeBigUInt64LE(b!, i * COUNTS.size + COUNTS.bytes);
  });
  const want = { packets: Number(2n ** 40n + 12n), bytes: Number(0xffff_ffffn + 2n ** 35n) };
  assert.deepEqual((({ packets, bytes }) => ({ packets, bytes }))(decodeFlow(key, value)), want);
  // The same bytes at an odd offset: no typed-array view there, the same sums.
  const odd = Buffer.alloc(value.length + 1).subarray(1);
  value.copy(odd);
  assert.deepEqual((({ packets, bytes }) => ({ packets, bytes }))(decodeFlow(key, odd)), want);
});

test("a cache entry holds each CPU's own last flow: decoded per CPU, the empty ones left out", () => {
  const a = entry({ vm: 5, dir: Dir.Tx, family: 4, ethertype: 0x0800, peer: [10, 0, 0, 1] }, 7n, 700n);
  const b = entry({ vm: 6, dir: Dir.Tx, family: 6, ethertype: 0x86dd, peer: [...Buffer.from('fd000077000000000000000000000001', 'hex')] }, 2n ** 40n, 3n);
  // Three CPUs: A, nothing, B.
  const value = Buffer.alloc(3 * CACHED.size);
  a[0].copy(value, 0 * CACHED.size + CACHED.key);
  a[1].copy(value, 0 * CACHED.size + CACHED.counts);
  b[0].copy(value, 2 * CACHED.size + CACHED.key);
  b[1].copy(value, 2 * CACHED.size + CACHED.counts);
  assert.deepEqual(decodeCached(value), [decodeFlow(...a), decodeFlow(...b)]);
  assert.deepEqual(decodeCached(Buffer.alloc(2 * CACHED.size)), []);
});

test('IPv6 text: the longest run of two or more zero groups becomes ::', () => {
  const hex = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');
  assert.equal(ipv6(hex('2001:0db8:0000:0001:0000:0000:0000:0000')), '2001:db8:0:1::');
  assert.equal(ipv6(hex('0000:0000:0000:0000:0000:0000:0000:0001')), '::1');
  assert.equal(ipv6(hex('2001:0db8:0001:0002:0003:0004:0005:0006')), '2001:db8:1:2:3:4:5:6');
  assert.equal(ipv6(hex('2001:0000:0000:0001:0000:0000:0000:0002')), '2001:0:0:1::2');
});

test('what the sensor writes into the maps: a slot (VM, ifindex) and u32 keys, little-endian', () => {
  assert.deepEqual(encodeSlot(7, 0x0102), Buffer.from([7, 0, 0, 0, 2, 1, 0, 0]));
  assert.equal(encodeSlot(7, 1).length, SLOT.size);
  assert.deepEqual(u32(0x01020304), Buffer.from([4, 3, 2, 1]));
});
