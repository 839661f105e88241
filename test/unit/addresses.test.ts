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

  describe('addresses carried over from the directory when a VM arrives', () => {
    it('count at once, for the VM and as a holder: no other VM of the host may claim them', () => {
      const b = new AddressBook();
      assert.deepEqual(b.carry('web', ['fd00::1', '10.0.0.1'], 0), ['10.0.0.1', 'fd00::1']);
      assert.deepEqual(b.of('web', 1), ['10.0.0.1', 'fd00::1']);
      assert.equal(b.entries(1).get('10.0.0.1'), 'web');
      assert.deepEqual(b.observe(claims({ vm2: ['10.0.0.1'] }), none, 2), new Map(), "web's on this host");
      assert.deepEqual(b.of('web', 3), ['10.0.0.1', 'fd00::1']);
    });

    it('are not taken from a VM of this host that holds them, nor beyond the cap', () => {
      const b = new AddressBook();
      b.observe(claims({ vm2: ['10.0.0.2'] }), none, 0);
      b.trust('vm3', ['10.0.0.3']);
      assert.deepEqual(b.carry('web', ['10.0.0.1', '10.0.0.2', '10.0.0.3'], 1), ['10.0.0.1']);
      assert.deepEqual([b.of('vm2', 2), b.of('vm3', 2)], [['10.0.0.2'], ['10.0.0.3']]);
      const many = Array.from({ length: 50 }, (_, i) => `10.1.0.${i}`);
      assert.equal(b.carry('big', many, 3).length, MAX_LEARNED_PER_VM);
      assert.deepEqual(b.observe(claims({ big: ['10.1.0.0', '10.1.0.49'] }), none, 4), new Map([['big', ['10.1.0.0']]]), 'carried and learned share the cap');
    });

    it('stay until the VM shows a different one of the same family (ARP or libvirt); then they leave the directory', () => {
      const b = new AddressBook();
      b.carry('web', ['10.0.0.1', '10.0.0.2', 'fd00::1'], 0);
      b.observe(claims({ web: ['10.0.0.1'] }), none, 1);
      b.trust('web', ['10.0.0.2']);
      assert.deepEqual(b.of('web', 2), ['10.0.0.1', '10.0.0.2', 'fd00::1'], 'what the directory knew: nothing different');
      assert.deepEqual(b.expire(3), new Map());
      b.observe(claims({ web: ['10.0.0.9'] }), none, 4);
      assert.deepEqual(b.of('web', 5), ['10.0.0.1', '10.0.0.2', '10.0.0.9', 'fd00::1'], 'announced (now learned) and trusted ones stay; IPv6 is not in ARP');
      assert.deepEqual(b.expire(6), new Map(), 'libvirt still lists 10.0.0.2: it stays in vc:{vc}:addr');
      b.trust('web', ['fd00::9']);
      assert.deepEqual(b.of('web', 7), ['10.0.0.1', '10.0.0.9', 'fd00::9'], 'libvirt knows another IPv6 address now: fd00::1 goes, and no longer lists 10.0.0.2');
      assert.deepEqual(b.expire(8), new Map([['web', ['10.0.0.2', 'fd00::1']]]), 'to drop from vc:{vc}:addr');
      assert.deepEqual(b.expire(9), new Map());
    });

    it('a different address the VM shows replaces carried ones it did not announce again', () => {
      const b = new AddressBook();
      b.carry('web', ['10.0.0.1', '10.0.0.2'], 0);
      b.observe(claims({ web: ['10.0.0.7'] }), none, 1);
      assert.deepEqual(b.of('web', 2), ['10.0.0.7']);
      assert.deepEqual(b.expire(3), new Map([['web', ['10.0.0.1', '10.0.0.2']]]));
      const c = new AddressBook();
      c.carry('web', ['10.0.0.1'], 0);
      assert.deepEqual(c.observe(claims({ web: ['10.0.0.1'], vm2: ['10.0.0.7'] }), none, 1).get('web'), ['10.0.0.1'], 'another VM announcing changes nothing of it');
      c.observe(claims({ web: ['10.0.0.5'] }), new Map([['10.0.0.5', { vm: 'db', live: true }]]), 2);
      assert.deepEqual(c.of('web', 3), ['10.0.0.1'], "a refused claim (another live VM's address) is not a different address of its own");
    });

    it('are not carried in a family where the VM already shows another address (learned before the directory could be read)', () => {
      const b = new AddressBook();
      b.observe(claims({ web: ['10.0.0.7'] }), none, 0);
      assert.deepEqual(b.carry('web', ['10.0.0.1', 'fd00::1'], 1), ['fd00::1']);
      assert.deepEqual(b.carry('web', ['10.0.0.7', '10.0.0.1'], 2), ['10.0.0.1'], 'the directory knew 10.0.0.7: nothing different');
    });

    it('expire after the TTL unless announced again, and are forgotten when the VM leaves', () => {
      const b = new AddressBook();
      b.carry('web', ['10.0.0.1', '10.0.0.2'], 0);
      b.observe(claims({ web: ['10.0.0.2'] }), none, 1000);
      assert.equal(b.size, 2);
      assert.deepEqual(b.expire(LEARNED_TTL_MS), new Map(), 'not yet');
      assert.deepEqual(b.expire(LEARNED_TTL_MS + 1), new Map([['web', ['10.0.0.1']]]));
      assert.deepEqual(b.of('web', LEARNED_TTL_MS + 1), ['10.0.0.2'], 'announced since: learned, on its own clock');
      b.carry('vm2', ['10.0.0.3'], 0);
      b.keepOnly(new Set(['web']));
      assert.deepEqual([b.of('vm2', 1), b.size], [[], 1]);
    });
  });
});
