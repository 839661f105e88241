import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pairMember, splitPair } from '../../src/collector/keys.js';
import { resolveMember } from '../../src/collector/resolve.js';
import { table } from '../../src/cli/table.js';
import { ODD_NAMES } from '../helpers/names.js';

test('pair members keep any two names apart, whatever they hold', () => {
  for (const a of ODD_NAMES) {
    for (const b of [...ODD_NAMES, '10.0.0.7', 'fe80::1']) {
      assert.deepEqual(splitPair(pairMember(a, b)), [a, b], `${a} / ${b}`);
      assert.equal(pairMember(a, b).split('>').length, 2, 'exactly one separator');
    }
  }
});

test('members of ordinary names are written as before (old reports read the same)', () => {
  assert.equal(pairMember('vm1', '10.0.0.7'), 'vm1>10.0.0.7');
  assert.deepEqual(splitPair('vm1>ether:0x0806'), ['vm1', 'ether:0x0806']);
});

test('a member resolves addresses to names with odd characters', () => {
  const r = resolveMember(
    pairMember('10.0.0.1', '10.0.0.2'),
    new Map([
      ['10.0.0.1', 'a>b'],
      ['10.0.0.2', '{j} x'],
    ]),
  );
  assert.deepEqual(r, { src: 'a>b', dst: '{j} x', received: true, renamed: true });
});

test('tables print control characters in names as \\xNN, other characters as they are', () => {
  const out = table(['VM'], [['evil\u001b[2Jname'], ['ünï {x}>y']]);
  assert.ok(!out.includes('\u001b'));
  assert.match(out, /evil\\x1b\[2Jname/);
  assert.match(out, /ünï \{x\}>y/);
});
