import capModule from 'cap';
import { UserError } from '../util/errors.js';
import { run } from '../util/exec.js';
import { logger } from '../util/log.js';
import { arpSender, peerText, type FlowCounts } from './layout.js';
import { checkTapName, type Attachment, type Reading, type Sensor } from './sensor.js';

const log = logger('sensor');
const { Cap } = capModule;
/**
 * Bytes of each frame copied to JavaScript: Ethernet, the largest IPv4 header
 * and the largest TCP header fit. Lengths come from the IP header, so what is
 * cut off is only payload (README, "Sensor"; the binding's snap length stays 64 KiB).
 */
const HEADERS = 14 + 60 + 60;
const KERNEL_BUFFER = 16 * 1024 * 1024;
const ETH = 14;

/** What libpcap costs, said wherever it is chosen (agent log, doctor); measured by test/bench/sensor.ts. */
export const PCAP_COST = 'libpcap wakes user space for every frame: it costs far more CPU per packet than eBPF ' +
  '(see docs/measurements.md, "Sensor cost") and slows the VMs\' network-heavy applications.';

interface Flow { packets: number; bytes: number }

interface Capture {
  cap: InstanceType<typeof Cap>;
  vm: number;
  /** The VM's MAC, as the first 4 and last 2 bytes: a frame from it was sent by the VM. */
  mac4: number;
  mac2: number;
  /** The tap's MTU: an IP packet larger than it is a GSO/GRO super-packet, split into segments on the wire. */
  mtu: number;
  /** IPv4 flows by (direction, peer) as one number: no string per packet. */
  v4: Map<number, Flow>;
  /** IPv6, ARP and other frames, by their FlowKey text. */
  other: Map<string, FlowCounts>;
  /** Smallest TCP MSS announced in a SYN with each peer (either direction), by peer key. */
  mss: Map<number | string, number>;
}

/**
 * The fallback backend: one libpcap capture per tap, as the seed's Jpcap sensor
 * did, for hosts where the eBPF program cannot load. Every frame crosses into
 * user space, so it costs far more CPU (PCAP_COST). The direction comes from
 * the VM's MAC address. Messages are wire packets as in eBPF: a GSO/GRO
 * super-packet counts as the segments it stands for (estimateSegments).
 * Captures open in this process's network namespace.
 */
export class PcapSensor implements Sensor {
  readonly kind = 'pcap' as const;
  /** Why `auto` fell back to this backend, when it did. */
  fallbackReason?: string;
  private captures = new Map<string, Capture>();
  private done: FlowCounts[] = [];

  static open(opts: { netns?: string } = {}): PcapSensor {
    if (opts.netns) {
      throw new UserError(`the pcap backend captures in its own network namespace: run it inside ${opts.netns} (nsenter --net=/run/netns/${opts.netns} ...)`);
    }
    return new PcapSensor();
  }

  async attach(tap: string, vm: number, mac?: string): Promise<void> {
    checkTapName(tap);
    if (!mac || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) {
      throw new UserError(`the pcap backend needs the VM's MAC address to tell its directions apart (tap ${tap}, got '${mac ?? ''}')`);
    }
    await this.detach(tap);
    const mtu = await linkMtu(tap);
    const cap = new Cap();
    const buffer = Buffer.alloc(HEADERS);
    try {
      cap.open(tap, '', KERNEL_BUFFER, buffer);
    } catch (err) {
      throw new UserError(`libpcap cannot capture on ${tap}: ${(err as Error).message}`);
    }
    cap.setMinBytes?.(0);
    const m = Buffer.from(mac.replace(/:/g, ''), 'hex');
    const c: Capture = { cap, vm, mac4: m.readUInt32BE(0), mac2: m.readUInt16BE(4), mtu, v4: new Map(), other: new Map(), mss: new Map() };
    cap.on('packet', (nbytes, truncated) => count(c, buffer, nbytes, truncated));
    this.captures.set(tap, c);
    log.info({ tap, vm, mtu }, 'capturing');
  }

  async detach(tap: string): Promise<void> {
    const c = this.captures.get(tap);
    if (!c) return;
    c.cap.close();
    // What it counted stays for the next read.
    this.done.push(...flowsOf(c));
    this.captures.delete(tap);
  }

  async attached(): Promise<Attachment[]> {
    return [...this.captures].map(([tap, c]) => ({ tap, vm: c.vm })).sort((a, b) => a.tap.localeCompare(b.tap));
  }

  /** Packets are counted on the event loop, so swapping the tables here is atomic: nothing lost or doubled. */
  async read(): Promise<Reading> {
    const flows = this.done;
    this.done = [];
    for (const c of this.captures.values()) flows.push(...flowsOf(c));
    return { flows: mergeFlows(flows), overflow: { packets: 0, bytes: 0 }, unknownTap: 0, at: Date.now() };
  }

  async close(): Promise<void> {
    for (const tap of [...this.captures.keys()]) await this.detach(tap);
  }
}

/** Empties a capture's tables into flows. */
function flowsOf(c: Capture): FlowCounts[] {
  const out: FlowCounts[] = [...c.other.values()];
  for (const [k, f] of c.v4) {
    const ip = k % 2 ** 32;
    const peer = `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
    out.push({ vm: c.vm, dir: k >= 2 ** 32 ? 'tx' : 'rx', peer, family: 4, ethertype: 0x0800, packets: f.packets, bytes: f.bytes });
  }
  c.v4 = new Map();
  c.other = new Map();
  return out;
}

/** One entry per (VM, direction, peer, ARP sender). */
function mergeFlows(flows: FlowCounts[]): FlowCounts[] {
  const by = new Map<string, FlowCounts>();
  for (const f of flows) {
    const k = `${f.vm}|${f.dir}|${f.peer}|${f.arpSender ?? ''}`;
    const seen = by.get(k);
    if (seen) {
      seen.packets += f.packets;
      seen.bytes += f.bytes;
    } else by.set(k, f);
  }
  return [...by.values()];
}

/**
 * Counts one frame (`n` bytes of it in `frame`). Lengths come from the IP
 * header, so a frame cut to HEADERS bytes is still counted whole.
 */
function count(c: Capture, frame: Buffer, n: number, truncated: boolean): void {
  if (n < ETH) return;
  const tx = frame.readUInt32BE(6) === c.mac4 && frame.readUInt16BE(10) === c.mac2;
  const ethertype = frame.readUInt16BE(12);
  if (ethertype === 0x0800 && n >= ETH + 20) {
    const ihl = (frame[ETH]! & 15) * 4;
    const ipLen = frame.readUInt16BE(ETH + 2);
    const peer = frame.readUInt32BE(tx ? ETH + 16 : ETH + 12);
    const key = (tx ? 2 ** 32 : 0) + peer;
    const { segs, bytes } = segments(c, frame, n, truncated, ETH + ihl, ipLen - ihl, frame[ETH + 9]!, ihl, peer);
    const f = c.v4.get(key);
    if (f) {
      f.packets += segs;
      f.bytes += bytes;
    } else c.v4.set(key, { packets: segs, bytes });
    return;
  }
  let family: 0 | 6 = 0;
  let segs = 1;
  let bytes = n;
  if (ethertype === 0x86dd && n >= ETH + 40) {
    family = 6;
    const peerKey = frame.toString('latin1', tx ? ETH + 24 : ETH + 8, tx ? ETH + 40 : ETH + 24);
    ({ segs, bytes } = segments(c, frame, n, truncated, ETH + 40, frame.readUInt16BE(ETH + 4), frame[ETH + 6]!, 40, peerKey));
  }
  const dir = tx ? 'tx' : 'rx';
  const peer = peerText(frame, family === 6 ? (tx ? ETH + 24 : ETH + 8) : 0, family, ethertype);
  // As in the eBPF program, an ARP frame is also keyed by its sender's IPv4 address.
  const sender = family === 0 && n >= 42 && frame[18] === 6 && frame[19] === 4 ? arpSender(frame, 28, ethertype) : undefined;
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
 * Wire packets and bytes of one IP packet seen as `n` captured bytes.
 * libpcap sees a GSO/GRO super-packet as one frame, while the wire (and the
 * eBPF sensor, from gso_segs) carries it as segments. A packet longer than the
 * tap's MTU is split into segments of `mss` payload bytes, each repeating the
 * Ethernet, IP and TCP/UDP headers. The MSS is what Linux would use: the MTU
 * less the headers (TCP options included), capped by the smallest MSS the
 * two ends announced in their SYNs when this capture saw them.
 */
export function segments(c: Pick<Capture, 'mtu' | 'mss'>, frame: Buffer, n: number, truncated: boolean,
  l4: number, l3Payload: number, proto: number, ipHdr: number, peerKey: number | string): { segs: number; bytes: number } {
  const wire = Math.max(truncated ? 0 : n, ETH + ipHdr + l3Payload);
  if (proto === 6 && n >= l4 + 20) {
    const tcpHdr = (frame[l4 + 12]! >> 4) * 4;
    if (frame[l4 + 13]! & 0x02) {
      const announced = synMss(frame, l4, Math.min(n, l4 + tcpHdr));
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
    const payload = l3Payload - 8;
    const segs = Math.ceil(payload / Math.max(1, c.mtu - ipHdr - 8));
    return { segs, bytes: wire + (segs - 1) * (ETH + ipHdr + 8) };
  }
  return { segs: 1, bytes: wire };
}

/** The MSS option (kind 2) of a SYN's TCP header, or 0. */
function synMss(frame: Buffer, l4: number, end: number): number {
  for (let i = l4 + 20; i + 1 < end;) {
    const kind = frame[i]!;
    if (kind === 0) break;
    if (kind === 1) { i++; continue; }
    const len = frame[i + 1]!;
    if (len < 2) break;
    if (kind === 2 && len === 4 && i + 3 < end) return frame.readUInt16BE(i + 2);
    i += len;
  }
  return 0;
}

async function linkMtu(tap: string): Promise<number> {
  try {
    const [link] = JSON.parse(await run('ip', ['-j', 'link', 'show', 'dev', tap])) as { mtu?: number }[];
    return link?.mtu ?? 1500;
  } catch (err) {
    throw new UserError(`no interface '${tap}' here (${(err as Error).message.split('\n').pop()}): is the VM running?`);
  }
}
