/**
 * The typed BPF map layouts: TypeScript's view of bpf/counter.h. A test reads
 * the compiled object's BTF and fails if any size or offset here differs, so
 * the C and the decoder cannot drift apart.
 */
export const LAYOUT_VERSION = 1;
export const MAX_TAPS = 4096;
export const MAX_FLOWS = 131072;

export const KEY = { size: 24, vm: 0, dir: 4, family: 5, ethertype: 6, peer: 8 } as const;
export const COUNTS = { size: 16, packets: 0, bytes: 8 } as const;
export const TAP = { size: 8, vm: 0, flags: 4 } as const;

export const enum Dir { Rx = 0, Tx = 1 }
export const STAT = { full: 0, fullBytes: 1, unknownTap: 2, size: 8 } as const;

export interface FlowKey {
  vm: number;
  /** Seen from the VM: rx = it received, tx = it sent. */
  dir: 'rx' | 'tx';
  /** The peer's address, or for frames that are not IP, `ether:0xNNNN` (e.g. ether:0x0806 for ARP). */
  peer: string;
  family: 0 | 4 | 6;
  ethertype: number;
}

export interface FlowCounts extends FlowKey {
  packets: number;
  bytes: number;
}

export function decodeKey(buf: Buffer): FlowKey {
  const family = buf.readUInt8(KEY.family) as 0 | 4 | 6;
  const ethertype = buf.readUInt16LE(KEY.ethertype);
  const peerBytes = buf.subarray(KEY.peer, KEY.peer + 16);
  const peer = family === 4 ? ipv4(peerBytes) : family === 6 ? ipv6(peerBytes) : `ether:0x${ethertype.toString(16).padStart(4, '0')}`;
  return { vm: buf.readUInt32LE(KEY.vm), dir: buf.readUInt8(KEY.dir) === Dir.Tx ? 'tx' : 'rx', peer, family, ethertype };
}

/** Key and value of one map entry as one object: the read path decodes 100,000 of these per period. */
export function decodeFlow(key: Buffer, value: Buffer): FlowCounts {
  const family = key[KEY.family] as 0 | 4 | 6;
  const ethertype = key.readUInt16LE(KEY.ethertype);
  const p = KEY.peer;
  return {
    vm: key.readUInt32LE(KEY.vm),
    dir: key[KEY.dir] === Dir.Tx ? 'tx' : 'rx',
    peer: family === 4 ? `${key[p]}.${key[p + 1]}.${key[p + 2]}.${key[p + 3]}`
      : family === 6 ? ipv6(key.subarray(p, p + 16)) : `ether:0x${ethertype.toString(16).padStart(4, '0')}`,
    family,
    ethertype,
    packets: Number(value.readBigUInt64LE(COUNTS.packets)),
    bytes: Number(value.readBigUInt64LE(COUNTS.bytes)),
  };
}

export function decodeCounts(buf: Buffer): { packets: number; bytes: number } {
  // Numbers stay exact below 2^53: 9 PB per flow per period.
  return { packets: Number(buf.readBigUInt64LE(COUNTS.packets)), bytes: Number(buf.readBigUInt64LE(COUNTS.bytes)) };
}

export function encodeTap(vm: number): Buffer {
  const b = Buffer.alloc(TAP.size);
  b.writeUInt32LE(vm, TAP.vm);
  return b;
}

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function ipv4(b: Buffer): string {
  return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
}

/** RFC 5952 text form: lowercase, the longest run of two or more zero groups as '::'. */
export function ipv6(b: Buffer): string {
  const groups = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2));
  let best = -1, bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}
