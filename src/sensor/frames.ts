/** The libpcap backend's counting: one frame read from a capture ring into its tap's tables, a GSO/GRO super-packet as its wire segments. */

import { arpSender, peerText, type FlowCounts } from './layout.js';

const ETH = 14;

interface Flow {
  packets: number;
  bytes: number;
}

export interface Capture {
  handle: object;
  tap: string;
  vm: number;
  /** Frames the ring had no room for, as last reported: each is a loss, logged. */
  dropped: number;
  /** The VM's MAC, as the first 4 and last 2 bytes: a frame from it was sent by the VM. */
  mac4: number;
  mac2: number;
  /** The tap's MTU: an IP packet larger than it is a GSO/GRO super-packet, split into segments on the wire. */
  mtu: number;
  /** The tap's kernel index: a tap deleted and created again under the same name (a VM that left and came back) is a new one. */
  ifindex: number;
  mac: string;
  /** IPv4 flows by (direction, peer) as one number: no string per packet. */
  v4: Map<number, Flow>;
  /** IPv6, ARP and other frames, by their FlowKey text. */
  other: Map<string, FlowCounts>;
  /** Smallest TCP MSS announced in a SYN with each peer (either direction), by peer key. */
  mss: Map<number | string, number>;
}

/** A capture's tables as flows, emptied unless `keep`. */
export function flowsOf(c: Capture, keep = false): FlowCounts[] {
  const out: FlowCounts[] = [...c.other.values()].map((f) => ({ ...f }));
  for (const [k, f] of c.v4) {
    const ip = k % 2 ** 32;
    const peer = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
    out.push({ vm: c.vm, dir: k >= 2 ** 32 ? 'tx' : 'rx', peer, family: 4, ethertype: 0x0800, packets: f.packets, bytes: f.bytes });
  }
  if (!keep) {
    c.v4 = new Map();
    c.other = new Map();
  }
  return out;
}

/**
 * Counts one frame: `caplen` bytes of it at `at` in `buf`, `wire` its length
 * on the tap (a GSO/GRO super-packet's whole length).
 */
export function count(c: Capture, buf: Buffer, at: number, caplen: number, wire: number): void {
  if (caplen < ETH) return;
  const tx = buf.readUInt32BE(at + 6) === c.mac4 && buf.readUInt16BE(at + 10) === c.mac2;
  const ethertype = buf.readUInt16BE(at + 12);
  const l3 = at + ETH;
  if (ethertype === 0x0800 && caplen >= ETH + 20) {
    const ihl = (buf[l3]! & 15) * 4;
    const peer = buf.readUInt32BE(tx ? l3 + 16 : l3 + 12);
    const key = (tx ? 2 ** 32 : 0) + peer;
    const { segs, bytes } = segments(c, buf, at + caplen, wire, l3 + ihl, buf.readUInt16BE(l3 + 2) - ihl, buf[l3 + 9]!, ihl, peer);
    const f = c.v4.get(key);
    if (f) {
      f.packets += segs;
      f.bytes += bytes;
    } else c.v4.set(key, { packets: segs, bytes });
    return;
  }
  let family: 0 | 6 = 0;
  let segs = 1;
  let bytes = wire;
  const peerAt = tx ? l3 + 24 : l3 + 8;
  if (ethertype === 0x86dd && caplen >= ETH + 40) {
    family = 6;
    const peerKey = buf.toString('latin1', peerAt, peerAt + 16);
    ({ segs, bytes } = segments(c, buf, at + caplen, wire, l3 + 40, buf.readUInt16BE(l3 + 4), buf[l3 + 6]!, 40, peerKey));
  }
  const dir = tx ? 'tx' : 'rx';
  const peer = peerText(buf, peerAt, family, ethertype);
  // As in the eBPF program, an ARP frame is also keyed by its sender's IPv4 address.
  const sender = family === 0 && caplen >= 42 && buf[l3 + 4] === 6 && buf[l3 + 5] === 4 ? arpSender(buf, l3 + 14, ethertype) : undefined;
  const key = `${dir}|${peer}|${sender ?? ''}`;
  const f = c.other.get(key);
  if (f) {
    f.packets += segs;
    f.bytes += bytes;
  } else {
    const flow: FlowCounts = { vm: c.vm, dir, peer, family, ethertype, packets: segs, bytes };
    if (sender) flow.arpSender = sender;
    c.other.set(key, flow);
  }
}

/**
 * Wire packets and bytes of one IP packet of `wire` bytes (its headers in
 * `buf` up to `end`). libpcap sees a GSO/GRO super-packet as one frame, while
 * the wire (and the eBPF sensor, from gso_segs) carries it as segments. A
 * packet longer than the tap's MTU is split into segments of `mss` payload
 * bytes, each repeating the Ethernet, IP and TCP/UDP headers. The MSS is what
 * Linux uses: the MTU less the headers (TCP options included), capped by the
 * smallest MSS the two ends announced in their SYNs, when this capture saw them.
 */
export function segments(
  c: Pick<Capture, 'mtu' | 'mss'>,
  buf: Buffer,
  end: number,
  wire: number,
  l4: number,
  l3Payload: number,
  proto: number,
  ipHdr: number,
  peerKey: number | string,
): { segs: number; bytes: number } {
  if (proto === 6 && end >= l4 + 20) {
    const tcpHdr = (buf[l4 + 12]! >> 4) * 4;
    if (buf[l4 + 13]! & 0x02) {
      const announced = synMss(buf, l4, Math.min(end, l4 + tcpHdr));
      if (announced) c.mss.set(peerKey, Math.min(announced, c.mss.get(peerKey) ?? announced));
    }
    const payload = l3Payload - tcpHdr;
    if (ipHdr + l3Payload <= c.mtu || payload <= 0) return { segs: 1, bytes: wire };
    const byMtu = c.mtu - ipHdr - tcpHdr;
    const syn = c.mss.get(peerKey);
    const mss = Math.max(1, syn ? Math.min(byMtu, syn - (tcpHdr - 20)) : byMtu);
    const segs = Math.ceil(payload / mss);
    return { segs, bytes: wire + (segs - 1) * (ETH + ipHdr + tcpHdr) };
  }
  if (proto === 17 && ipHdr + l3Payload > c.mtu) {
    const segs = Math.ceil((l3Payload - 8) / Math.max(1, c.mtu - ipHdr - 8));
    return { segs, bytes: wire + (segs - 1) * (ETH + ipHdr + 8) };
  }
  return { segs: 1, bytes: wire };
}

/** The MSS option (kind 2) of a SYN's TCP header, or 0. */
function synMss(frame: Buffer, l4: number, end: number): number {
  for (let i = l4 + 20; i + 1 < end; ) {
    const kind = frame[i]!;
    if (kind === 0) break;
    if (kind === 1) {
      i++;
      continue;
    }
    const len = frame[i + 1]!;
    if (len < 2) break;
    if (kind === 2 && len === 4 && i + 3 < end) return frame.readUInt16BE(i + 2);
    i += len;
  }
  return 0;
}
