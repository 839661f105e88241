import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AddressBook, LEARNED_TTL_MS, MAX_LEARNED_PER_VM, type Owners } from '../../src/agent/addresses.js';

const claims = (o: Record<string, string[]>) => new Map(Object.entries(o).map(([vm, a]) => [vm, new Set(a)]));
const none: Owners = new Map();

describe('AddressBook: which address is which VM', () => {
  it('an address another VM holds is refused, on this host or in the cluster, unless that VM is gone', () => {
    const b = new AddressBook();
    b.observe(claims({ vm1: ['10.0.0.1'], vm2: ['10.0.0.2'] }), none, 0);
    assert.deepEqual(b.observe(claims({ vm1: ['10.0.0.2'] }), none, 1), new Map(), 'vm2 announced it first here');
    assert.equal(b.entries(2).get('10.0.0.2'), 'vm2');
    const cluster: Owners = new Map([
      ['10.0.0.9', { vm: 'vm9', live: true }],
      ['10.0.0.8', { vm: 'vm8', live: false }],
    ]);
    assert.deepEqual(b.observe(claims({ vm1: ['10.0.0.9', '10.0.0.8'] }), cluster, 3), new Map([['vm1', ['10.0.0.8']]]), 'vm9 runs elsewhere; vm8 stopped, so its address is free');
  });

  it('addresses libvirt knows win over what a guest announces', () => {
    const b = new AddressBook();
    b.observe(claims({ vm1: ['10.0.0.5'] }), none, 0);
    b.trust('vm5', ['10.0.0.5']);
    assert.equal(b.entries(1).get('10.0.0.5'), 'vm5');
    assert.deepEqual(b.of('vm1', 1), []);
    assert.deepEqual(b.observe(claims({ vm1: ['10.0.0.5'] }), none, 2), new Map());
  });

  it('a guest announcing thousands of addresses keeps at most the cap, and learned addresses expire', () => {
    const b = new AddressBook();
    const many = Array.from({ length: 10_000 }, (_, i) => `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`);
    b.observe(claims({ vm1: many }), none, 0);
    assert.equal(b.size, MAX_LEARNED_PER_VM);
    assert.equal(b.of('vm1', 0).length, MAX_LEARNED_PER_VM);
    assert.deepEqual(b.expire(LEARNED_TTL_MS), new Map(), 'not yet');
    assert.equal(b.expire(LEARNED_TTL_MS + 1).get('vm1')?.length, MAX_LEARNED_PER_VM);
    assert.equal(b.size, 0);
    assert.deepEqual(b.observe(claims({ vm1: ['10.9.9.9'] }), none, LEARNED_TTL_MS + 2), new Map([['vm1', ['10.9.9.9']]]), 'room again');
  });

  it('VMs that left the host are forgotten', () => {
    const b = new AddressBook();
    b.observe(claims({ vm1: ['10.0.0.1'], vm2: ['10.0.0.2'] }), none, 0);
    b.keepOnly(new Set(['vm2']));
    assert.deepEqual([...b.entries(1)], [['10.0.0.2', 'vm2']]);
  });
});
