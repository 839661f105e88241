import { test } from 'node:test';
import assert from 'node:assert/strict';
import { policyOf } from '../../src/libvirt/client.js';
import { DomainXmlError, MAX_DOMAIN_XML, readDomainXml } from '../../src/libvirt/domxml.js';
import { manyElements, UUID, WITH_METADATA_NIC } from '../helpers/domxml.js';

test('only /domain/devices/interface is a NIC: one in metadata or in a comment is not', () => {
  const d = readDomainXml(WITH_METADATA_NIC);
  assert.equal(d.uuid, UUID);
  assert.deepEqual(d.interfaces, [{ mac: '52:54:00:65:00:01', tap: 'vnet7', addresses: ['10.1.200.1'] }]);
  assert.deepEqual(policyOf(d), { pinned: true, optOut: false });
});

test("the policy counts only in virt-cohort's namespace, with the prefix declared where libvirt puts it", () => {
  const doc = (meta: string) => readDomainXml(`<domain><metadata xmlns:x="http://virt-cohort.org/xmlns/libvirt/1">${meta}</metadata></domain>`);
  assert.deepEqual(policyOf(doc('<x:policy count="no"/>')), { pinned: true, optOut: true });
  assert.deepEqual(policyOf(doc('<y:policy xmlns:y="http://other.example/" move="never"/>')), { pinned: false, optOut: false });
  assert.deepEqual(policyOf(doc('<policy xmlns="http://virt-cohort.org/xmlns/libvirt/1" move=\'never\'/>')), { pinned: true, optOut: false });
  assert.deepEqual(
    policyOf(readDomainXml('<domain><devices><x:policy xmlns:x="http://virt-cohort.org/xmlns/libvirt/1" move="never"/></devices></domain>')),
    { pinned: false, optOut: false },
    "outside <metadata> it is nobody's policy",
  );
});

test('a DTD, a cut-off document, mismatched tags and oversized input are refused, not guessed at', () => {
  const dtd = '<!DOCTYPE domain [<!ENTITY x "y">]><domain><devices><interface><mac address="52:54:00:00:00:01"/></interface></devices></domain>';
  for (const bad of [dtd, '<domain><devices><interface>', '<domain></devices>', `<domain>${' '.repeat(MAX_DOMAIN_XML)}</domain>`, '<domain a=b/>']) {
    assert.throws(() => readDomainXml(bad), DomainXmlError, bad.slice(0, 40));
  }
});

test('entities: the predefined five and character references only', () => {
  const d = readDomainXml(`<domain><metadata><vc:policy xmlns:vc="http&#58;//virt-cohort.org/xmlns/libvirt/1" move="nev&#x65;r" note="&amp;&lt;&unknown;"/></metadata></domain>`);
  assert.equal(d.policy?.get('move'), 'never');
  assert.equal(d.policy?.get('note'), '&<&unknown;');
});

/** Best of three, in ms. */
function time(xml: string): number {
  let best = Infinity;
  for (let k = 0; k < 3; k++) {
    const t = process.hrtime.bigint();
    readDomainXml(xml);
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e6);
  }
  return best;
}

test('time is linear in the input: 4,000 elements in a few ms, and 16 times the elements takes far less than 256 times as long', () => {
  assert.deepEqual(readDomainXml(manyElements(4000)).interfaces, []);
  const small = time(manyElements(4000));
  assert.ok(small < 50, `4,000 elements took ${small.toFixed(1)} ms`);
  const big = time(manyElements(64_000));
  assert.ok(big < 40 * Math.max(small, 0.5), `64,000 elements took ${big.toFixed(1)} ms, 4,000 ${small.toFixed(1)} ms: not linear`);
  // Unclosed <interface> tags, the old expression's worst case, end in an error as fast.
  const t = process.hrtime.bigint();
  assert.throws(() => readDomainXml(`<domain><devices>${'<interface>'.repeat(100_000)}`), DomainXmlError);
  assert.ok(Number(process.hrtime.bigint() - t) / 1e6 < 500);
});
