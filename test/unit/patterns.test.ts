import { test } from 'node:test';
import assert from 'node:assert/strict';
import { peersFor } from '../../src/placement/patterns.js';
import { UserError } from '../../src/util/errors.js';

const all = (pattern: string, n: number) => Array.from({ length: n }, (_, k) => peersFor(pattern, k + 1, n));

test('pairs: 1-2, 3-4, and an odd one out is alone', () => {
  assert.deepEqual(all('pairs', 5), [[2], [1], [4], [3], []]);
});

test('ring: each VM talks to its two neighbours, wrapping around', () => {
  assert.deepEqual(all('ring', 4), [
    [2, 4],
    [1, 3],
    [2, 4],
    [1, 3],
  ]);
  assert.deepEqual(all('ring', 2), [[2], [1]]);
  assert.deepEqual(all('ring', 1), [[]]);
});

test('groups:2 of 8 is the seed lu.A.8 shape: VM1-4 and VM5-8', () => {
  const p = all('groups:2', 8);
  assert.deepEqual(p[0], [2, 3, 4]);
  assert.deepEqual(p[4], [6, 7, 8]);
  assert.ok(p.slice(0, 4).every((peers) => peers.every((j) => j <= 4)));
});

test('all-to-all and idle', () => {
  assert.deepEqual(all('all', 3), [
    [2, 3],
    [1, 3],
    [1, 2],
  ]);
  assert.deepEqual(all('idle', 3), [[], [], []]);
});

test('explicit peers exclude the VM itself and duplicates', () => {
  assert.deepEqual(peersFor('peers:3,1,3,2', 2, 4), [1, 3]);
});

test('bad patterns and sizes are user errors that name the fix', () => {
  assert.throws(
    () => peersFor('star', 1, 4),
    (e: unknown) => e instanceof UserError && /unknown traffic pattern 'star'.*groups:K/.test(e.message),
  );
  assert.throws(() => peersFor('groups:9', 1, 4), UserError);
  assert.throws(() => peersFor('ring', 5, 4), /make the cluster at least 5 VMs/);
});
