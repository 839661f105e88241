import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodePacked, encodePacked, newEpoch } from '../../src/collector/packed.js';

const pairs: [string, number, number][] = [
  ['a>b', 3, 300],
  ['b>a', 2.5, 1e15],
  ['a>10.0.0.9', 0, 0],
];

test('a packed report reads back as the ids, counts and dictionary epoch written', () => {
  const epoch = newEpoch();
  assert.match(epoch, /^[0-9a-f]{16}$/);
  const p = decodePacked(encodePacked(epoch, [7, 0, 4_000_000_000], pairs), 'test');
  assert.equal(p.epoch, epoch);
  assert.deepEqual([...p.ids], [7, 0, 4_000_000_000]);
  assert.deepEqual([...p.msgs], [3, 2.5, 0]);
  assert.deepEqual([...p.bytes], [300, 1e15, 0]);
});

test('16 bytes of header and 20 a pair; an empty report is a header', () => {
  assert.equal(encodePacked(newEpoch(), [1, 2, 3], pairs).length, 16 + 60);
  const empty = decodePacked(encodePacked('00000000000000ff', [], []), 'test');
  assert.deepEqual({ ...empty, ids: [...empty.ids] }, { epoch: '00000000000000ff', ids: [], msgs: new Float64Array(0), bytes: new Float64Array(0) });
});

test('a blob that is a slice at an odd offset of a larger buffer (as ioredis replies) still reads', () => {
  const blob = encodePacked('0123456789abcdef', [1, 2, 3], pairs);
  const big = Buffer.alloc(blob.length + 3);
  blob.copy(big, 3);
  const p = decodePacked(big.subarray(3), 'test');
  assert.deepEqual([...p.ids], [1, 2, 3]);
  assert.deepEqual([...p.bytes], [300, 1e15, 0]);
});

test('anything else is refused, naming where it came from', () => {
  const blob = encodePacked(newEpoch(), [1, 2, 3], pairs);
  assert.throws(() => decodePacked(blob.subarray(0, blob.length - 1), 'vc:period:{1}:host:X:pairs'), /vc:period:\{1\}:host:X:pairs is not a version-1 packed pair list \(75 bytes\)/);
  const v2 = Buffer.from(blob);
  v2.writeUInt32LE(2, 0);
  assert.throws(() => decodePacked(v2, 'k'), /not a version-1/);
  assert.throws(() => decodePacked(Buffer.from('OK'), 'k'), /not a version-1 packed pair list \(2 bytes\)/);
});
