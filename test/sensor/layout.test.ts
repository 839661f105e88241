import { test } from 'node:test';
import assert from 'node:assert/strict';
import { run } from '../../src/util/exec.js';
import { bpfObject } from '../../src/paths.js';
import { COUNTS, KEY, TAP, decodeKey, ipv6 } from '../../src/sensor/layout.js';

/** Struct sizes and member byte offsets as the compiled object's BTF has them. */
async function btfStructs(): Promise<Map<string, { size: number; members: Record<string, number> }>> {
  const raw = await run('bpftool', ['btf', 'dump', 'file', bpfObject, 'format', 'raw']);
  const out = new Map<string, { size: number; members: Record<string, number> }>();
  let current: { size: number; members: Record<string, number> } | undefined;
  for (const line of raw.split('\n')) {
    const s = /^\[\d+\] STRUCT '(\w+)' size=(\d+)/.exec(line);
    if (s) {
      current = { size: Number(s[2]), members: {} };
      out.set(s[1]!, current);
      continue;
    }
    const m = /^\s+'(\w+)' type_id=\d+ bits_offset=(\d+)/.exec(line);
    if (m && current) current.members[m[1]!] = Number(m[2]) / 8;
    else if (!line.startsWith('\t')) current = undefined;
  }
  return out;
}

test('the TypeScript map layouts match the C structs of bpf/counter.h, read from BTF', async () => {
  const btf = await btfStructs();
  const { size: keySize, ...keyFields } = KEY;
  assert.deepEqual(btf.get('vc_key'), { size: keySize, members: keyFields });
  const { size: countsSize, ...countFields } = COUNTS;
  assert.deepEqual(btf.get('vc_counts'), { size: countsSize, members: countFields });
  const { size: tapSize, ...tapFields } = TAP;
  assert.deepEqual(btf.get('vc_tap'), { size: tapSize, members: tapFields });
});

test('keys decode to VM, direction and peer text', () => {
  const k = Buffer.alloc(KEY.size);
  k.writeUInt32LE(42, KEY.vm);
  k.writeUInt8(1, KEY.dir);
  k.writeUInt8(4, KEY.family);
  k.writeUInt16LE(0x0800, KEY.ethertype);
  Buffer.from([10, 0, 0, 7]).copy(k, KEY.peer);
  assert.deepEqual(decodeKey(k), { vm: 42, dir: 'tx', peer: '10.0.0.7', family: 4, ethertype: 0x0800 });
  k.writeUInt8(0, KEY.family);
  k.writeUInt16LE(0x0806, KEY.ethertype);
  assert.equal(decodeKey(k).peer, 'ether:0x0806');
});

test('IPv6 peers print in RFC 5952 form', () => {
  const hex = (s: string) => Buffer.from(s.replace(/:/g, ''), 'hex');
  assert.equal(ipv6(hex('fd00:0077:0000:0000:0000:0000:0000:0001')), 'fd00:77::1');
  assert.equal(ipv6(hex('2001:0db8:0000:0001:0000:0000:0000:0000')), '2001:db8:0:1::');
  assert.equal(ipv6(hex('0000:0000:0000:0000:0000:0000:0000:0001')), '::1');
  assert.equal(ipv6(hex('2001:0db8:0001:0002:0003:0004:0005:0006')), '2001:db8:1:2:3:4:5:6');
});
