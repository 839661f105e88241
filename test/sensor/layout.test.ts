import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../src/util/exec.js';
import { bpfObject, packageRoot } from '../../src/paths.js';
import { CACHED, CACHE_ENTRIES, COUNTS, Dir, KEY, LAYOUT_VERSION, MAX_FLOWS, MAX_TAPS, SLOT, STAT, decodeFlow } from '../../src/sensor/layout.js';

interface BtfType {
  kind: string;
  name: string;
  attrs: string;
  members: Record<string, { type: number; bits: number }>;
}

/** The compiled object's BTF: every type by id, with its members' types and bit offsets. */
async function btf(): Promise<Map<number, BtfType>> {
  const raw = await run('bpftool', ['btf', 'dump', 'file', bpfObject, 'format', 'raw']);
  const out = new Map<number, BtfType>();
  let current: BtfType | undefined;
  for (const line of raw.split('\n')) {
    const t = /^\[(\d+)\] (\w+) '([^']*)' ?(.*)$/.exec(line);
    if (t) {
      current = { kind: t[2]!, name: t[3]!, attrs: t[4]!, members: {} };
      out.set(Number(t[1]), current);
      continue;
    }
    const m = /^\s+'(\w+)' type_id=(\d+) bits_offset=(\d+)/.exec(line);
    if (m && current) current.members[m[1]!] = { type: Number(m[2]), bits: Number(m[3]) };
  }
  return out;
}

const attr = (t: BtfType | undefined, name: string) => Number(new RegExp(`\\b${name}=(\\d+)`).exec(t?.attrs ?? '')?.[1]);

/** Struct sizes and member byte offsets. */
function structLayout(types: Map<number, BtfType>, name: string): Record<string, number> | undefined {
  const s = [...types.values()].find((t) => t.kind === 'STRUCT' && t.name === name);
  if (!s) return undefined;
  return { size: attr(s, 'size'), ...Object.fromEntries(Object.entries(s.members).map(([k, v]) => [k, v.bits / 8])) };
}

/** A map's max_entries: libbpf's __uint(max_entries, N) is a pointer to an int array of N elements. */
function maxEntries(types: Map<number, BtfType>, map: string): number {
  const v = [...types.values()].find((t) => t.kind === 'VAR' && t.name === map);
  assert.ok(v, `map ${map} in the object's BTF`);
  const def = types.get(Number(/type_id=(\d+)/.exec(v.attrs)![1]));
  const ptr = types.get(def!.members.max_entries!.type);
  return attr(types.get(Number(/type_id=(\d+)/.exec(ptr!.attrs)![1])), 'nr_elems');
}

/** bpf/counter.h's #define VC_* numbers and its enums' members, each with its value written out. */
function header(): { defines: Record<string, number>; enums: Record<string, Record<string, number>> } {
  const h = readFileSync(join(packageRoot, 'bpf', 'counter.h'), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const defines = Object.fromEntries([...h.matchAll(/^#define (VC_\w+) (\d+)\s*$/gm)].map((m) => [m[1]!, Number(m[2])]));
  const enums: Record<string, Record<string, number>> = {};
  for (const [, name, body] of h.matchAll(/enum (\w+) \{([^}]*)\}/g)) {
    enums[name!] = {};
    for (const item of body!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean)) {
      const m = /^(\w+) = (\d+)$/.exec(item);
      assert.ok(m, `enum ${name}: '${item}' has no value written out (the test reads values, not positions)`);
      enums[name!]![m[1]!] = Number(m[2]);
    }
  }
  return { defines, enums };
}

test('the TypeScript map layouts match the C structs of bpf/counter.h, read from BTF', async () => {
  const types = await btf();
  assert.deepEqual(structLayout(types, 'vc_key'), KEY);
  assert.deepEqual(structLayout(types, 'vc_counts'), COUNTS);
  assert.deepEqual(structLayout(types, 'vc_slot'), SLOT);
  assert.deepEqual(structLayout(types, 'vc_cached'), CACHED);
  // The maps' sizes, as compiled: what the sensor opens them with.
  assert.equal(maxEntries(types, 'vc_slots'), MAX_TAPS);
  assert.equal(maxEntries(types, 'vc_counts0'), MAX_FLOWS);
  assert.equal(maxEntries(types, 'vc_counts1'), MAX_FLOWS);
  // Two generations, one word to flip them, a cache entry per generation and direction.
  assert.equal(maxEntries(types, 'vc_active'), 2);
  assert.equal(maxEntries(types, 'vc_gen'), 1);
  assert.equal(maxEntries(types, 'vc_cache'), CACHE_ENTRIES);
  assert.equal(maxEntries(types, 'vc_stats'), STAT.size);
  assert.equal(maxEntries(types, 'vc_reported'), STAT.size);
});

test('the constants and enums of bpf/counter.h are those of src/sensor/layout.ts', () => {
  const { defines, enums } = header();
  assert.deepEqual(defines, { VC_LAYOUT_VERSION: LAYOUT_VERSION, VC_MAX_TAPS: MAX_TAPS, VC_MAX_FLOWS: MAX_FLOWS });
  assert.deepEqual(Object.keys(enums).sort(), ['vc_dir', 'vc_family', 'vc_stat']);
  assert.deepEqual(enums.vc_dir, { VC_DIR_RX: Dir.Rx, VC_DIR_TX: Dir.Tx });
  assert.deepEqual(enums.vc_stat, { VC_STAT_FULL: STAT.full, VC_STAT_FULL_BYTES: STAT.fullBytes, VC_STAT_UNKNOWN_TAP: STAT.unknownTap, VC_STAT_MAX: STAT.size });
  // Directions and families as the decoder reads them from a key the program wrote.
  const key = (dir: number, family: number, ethertype: number) => {
    const k = Buffer.alloc(KEY.size);
    k.writeUInt8(dir, KEY.dir);
    k.writeUInt8(family, KEY.family);
    k.writeUInt16LE(ethertype, KEY.ethertype);
    k.fill(1, KEY.peer);
    return decodeFlow(k, Buffer.alloc(COUNTS.size));
  };
  assert.equal(key(enums.vc_dir.VC_DIR_RX!, 4, 0x0800).dir, 'rx');
  assert.equal(key(enums.vc_dir.VC_DIR_TX!, 4, 0x0800).dir, 'tx');
  assert.deepEqual(Object.keys(enums.vc_family!).sort(), ['VC_FAMILY_IPV4', 'VC_FAMILY_IPV6', 'VC_FAMILY_OTHER']);
  const f = enums.vc_family!;
  assert.deepEqual([key(0, f.VC_FAMILY_IPV4!, 0x0800).family, key(0, f.VC_FAMILY_IPV4!, 0x0800).peer], [4, '1.1.1.1']);
  assert.deepEqual([key(0, f.VC_FAMILY_IPV6!, 0x86dd).family, key(0, f.VC_FAMILY_IPV6!, 0x86dd).peer], [6, '101:101:101:101:101:101:101:101']);
  assert.deepEqual([key(0, f.VC_FAMILY_OTHER!, 0x88cc).family, key(0, f.VC_FAMILY_OTHER!, 0x88cc).peer], [0, 'ether:0x88cc']);
});
