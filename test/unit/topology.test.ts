import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkShape, domainName, hosts, validateName, vmMac, type LabSettings } from '../../src/lab/topology.js';
import { labDir } from '../../src/lab/state.js';
import { UserError } from '../../src/util/errors.js';

const lab: LabSettings = { name: 'lab', index: 101, sites: 2, hostsPerSite: 2, delayMs: 20, rateMbit: 100, redisPort: 16401 };

test('hosts are named by site letter and carry distinct management and data addresses', () => {
  const h = hosts(lab);
  assert.deepEqual(
    h.map((x) => x.name),
    ['a1', 'a2', 'b1', 'b2'],
  );
  assert.deepEqual(
    h.map((x) => x.uri),
    // TLS only, with the lab's client certificates (src/lab/pki.ts).
    [1, 2, 3, 4].map((k) => `qemu+tls://10.101.0.${k}/system?pkipath=${labDir('lab')}/pki/client`),
  );
  assert.deepEqual(
    h.map((x) => x.dataIp),
    ['10.101.1.1', '10.101.1.2', '10.101.2.3', '10.101.2.4'],
  );
  assert.equal(new Set(h.map((x) => x.netns)).size, 4);
});

test('every root-namespace interface name fits the kernel limit of 15 characters', () => {
  const big: LabSettings = { ...lab, name: 'abcdef', sites: 8, hostsPerSite: 9 };
  for (const h of hosts(big)) assert.ok(h.mgmtVeth.length <= 15, h.mgmtVeth);
});

test('names carry the lab prefix; MACs carry lab and VM index', () => {
  assert.equal(domainName(lab, 'vm1'), 'vc-lab-vm1');
  assert.equal(vmMac(lab, 1), '52:54:00:65:00:01');
  assert.notEqual(vmMac({ ...lab, index: 102 }, 1), vmMac(lab, 1));
});

test('bad lab names and shapes are rejected with the fix', () => {
  assert.throws(() => validateName('Lab'), UserError);
  assert.throws(() => validateName('toolong7'), /1 to 6/);
  assert.throws(() => checkShape(0, 2), /--sites/);
  assert.throws(() => checkShape(2, 10), /--hosts-per-site/);
});
